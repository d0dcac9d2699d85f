"""Dagster definitions, one folder per stage; loaded by ``load_from_defs_folder``."""

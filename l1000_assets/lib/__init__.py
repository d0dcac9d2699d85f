"""Dagster-aware shared pieces: resources, configs, metadata helpers."""

"""Embeddings of the lake and their aggregates.

``vectors`` (embedding columns in Arrow/Parquet), ``aggregates`` (profile, signature and
perturbagen embeddings), ``modz`` (MODZ and the z-score signatures).
"""

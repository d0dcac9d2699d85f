"""Pure computation for l1000_assets. Nothing in this package imports dagster.

Modules: ``gctx`` (HDF5 GCTX streaming read/write), ``compat`` (cmapPy on numpy 2 /
pandas 3), ``metadata`` (GEO/CMap info tables), ``synthetic`` (the embedded synthetic
release), ``metrics`` (rank-quantile retrieval metrics), ``atomic`` (atomic writes),
``sources`` (known releases, canonical schema), ``download`` (resumable HTTP),
``ingest`` (release -> landmark Parquet lake), ``catalog`` (the DuckDB catalog).
"""

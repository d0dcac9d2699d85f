"""The landmark-profile lake: one Parquet file per (cell line, release).

``schema`` (the constants and Arrow schemas every later stage imports), ``ingest`` (release
matrix -> lake files, streamed), ``parquet_pages`` (the fast page writer of the landmark
column, the default), ``parquet_arrow`` (pyarrow's writer with its best settings, the
fallback), ``read`` (the lake's read API).
"""

"""The DuckDB catalog over the lake: ``build`` (views, tables and macros from ``sql/``)."""

-- The catalog's own guide: every user-facing table, view and macro with its comment (the
-- internal schema left out). It reads DuckDB's catalog when queried, so it lists the objects
-- of every sql/ file.

CREATE OR REPLACE VIEW catalog_guide AS
SELECT 'macro' AS kind, function_name AS name,
       function_name || '(' || array_to_string(parameters, ', ') || ')' AS usage, comment
FROM duckdb_functions()
WHERE database_name = current_database() AND schema_name = 'main'
  AND function_type IN ('macro', 'table_macro')
UNION ALL
SELECT 'table', table_name, table_name, comment
FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary
  AND table_name <> 'catalog_info'
UNION ALL
SELECT 'view', view_name, view_name, comment
FROM duckdb_views()
WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal
ORDER BY kind, name;

COMMENT ON VIEW catalog_guide IS 'What this catalog offers: every table, view and macro a user queries, with its description (SELECT * FROM catalog_guide).';

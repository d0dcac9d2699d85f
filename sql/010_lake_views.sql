-- Views over the Parquet lake. The lake directory placeholder (the word lake in double
-- braces) is replaced by the session variable lake_dir when set (connect_read_only sets it
-- from where the catalog file is), else the lake the catalog was built over, as a quoted SQL
-- string literal: DuckDB cannot take prepared parameters in CREATE VIEW. A view whose files
-- do not exist yet is skipped by the catalog.

CREATE OR REPLACE VIEW profiles AS
SELECT * REPLACE (landmarks::FLOAT[978] AS landmarks)
FROM read_parquet({{lake}} || '/landmark_profiles/cell_id=*/*.parquet', union_by_name = true);

CREATE OR REPLACE VIEW instances AS
SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/instances.parquet', union_by_name = true);

CREATE OR REPLACE VIEW perturbagens AS
SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/perturbagens.parquet', union_by_name = true);

CREATE OR REPLACE VIEW cell_lines AS
SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/cell_lines.parquet', union_by_name = true);

-- One row per gene and release; landmark_index is the position in every landmarks vector.
CREATE OR REPLACE VIEW genes AS
SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/genes.parquet', hive_partitioning = true);

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

COMMENT ON VIEW profiles IS 'Every non-control level-4 profile of the lake: metadata and the 978 landmark z-scores (landmarks FLOAT[978], in the order of genes.landmark_index).';
COMMENT ON VIEW instances IS 'Every profile of every release (controls included), canonical metadata.';
COMMENT ON VIEW perturbagens IS 'Perturbagens as each release describes them (pert_id, pert_iname, pert_type, moa, target, release); perturbagen_annotations has one row per perturbagen.';
COMMENT ON VIEW cell_lines IS 'Cell lines of each release: primary site, subtype.';
COMMENT ON VIEW genes IS 'Genes of each release: Entrez id, symbol, title, is_landmark, landmark_index (position in every landmarks vector).';

-- Embeddings as typed tables: profile, signature and perturbagen embeddings copied from the
-- lake's Parquet with the embedding column cast to FLOAT[d] (Parquet gives back FLOAT[]),
-- so array_inner_product works; the vectors are L2-normalized, so the inner product is the
-- cosine similarity. d is read from the files (the model card's embedding_dim): the cast is
-- built as text inside query(), the only place DuckDB takes a type computed at run time.
-- A table whose files do not exist yet is skipped by the catalog and created empty below,
-- so the macros in 030 always bind. Signature and perturbagen rows carry the perturbagen's
-- MOA and target, joined here once rather than at every query. The MODZ z-score
-- signatures (978 floats each) stay a view over the lake.

SET VARIABLE lake_dir = {{lake}};

-- An annotation is unknown when blank or the CMap missing-value code -666.
CREATE OR REPLACE MACRO known_annotation(x) AS
    CASE WHEN trim(x) IN ('', '-666', 'NA', 'nan') THEN NULL ELSE trim(x) END;

-- One row per perturbagen: name, type, MOA and target (the first known value over the
-- releases' perturbagen tables; a table without some of these columns reads as unknown).
CREATE OR REPLACE TABLE perturbagen_annotations AS
WITH perts AS (
    SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/perturbagens.parquet',
                               union_by_name = true)
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS pert_id, NULL::VARCHAR AS pert_iname, NULL::VARCHAR AS pert_type,
           NULL::VARCHAR AS moa, NULL::VARCHAR AS target
    WHERE false)
SELECT pert_id,
       any_value(known_annotation(perts.pert_iname)) AS pert_iname,
       any_value(known_annotation(perts.pert_type)) AS pert_type,
       any_value(known_annotation(perts.moa)) AS moa,
       any_value(known_annotation(perts.target)) AS target
FROM perts
GROUP BY pert_id;

CREATE TABLE IF NOT EXISTS perturbagen_annotations (
    pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, moa VARCHAR, target VARCHAR);

-- Embeddings are stored uncompressed: a nearest-neighbour query reads every vector, and
-- decompressing floats (ALP) costs more than reading them (measured: benchmarks/query.py).
-- Rows are sorted by cell line (all-cell-line rows first), so a scope filter skips the row
-- groups of other cell lines.
PRAGMA force_compression = 'uncompressed';

SET VARIABLE profile_embedding_dim = (
    SELECT max(len(embedding))
    FROM read_parquet({{lake}} || '/embeddings/profiles/cell_id=*/embeddings.parquet',
                      hive_partitioning = false));

CREATE OR REPLACE TABLE profile_embeddings AS
FROM query('SELECT * REPLACE (embedding::FLOAT['
           || coalesce(getvariable('profile_embedding_dim'), 32) || '] AS embedding)
           FROM read_parquet(getvariable(''lake_dir'') || ''/embeddings/profiles/cell_id=*/embeddings.parquet'',
                             hive_partitioning = false, union_by_name = true)');

CREATE TABLE IF NOT EXISTS profile_embeddings (
    inst_id VARCHAR, pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR,
    pert_dose DOUBLE, pert_dose_unit VARCHAR, pert_time DOUBLE, pert_time_unit VARCHAR,
    release VARCHAR, embedding FLOAT[32]);

SET VARIABLE signature_embedding_dim = (
    SELECT max(len(embedding)) FROM read_parquet({{lake}} || '/embeddings/signatures.parquet'));

-- One row per signature (perturbagen x cell line x dose x time): the re-normalized mean of
-- its profile embeddings; n_replicates profiles.
CREATE OR REPLACE TABLE signature_embeddings AS
FROM query('SELECT s.* REPLACE (s.embedding::FLOAT['
           || coalesce(getvariable('signature_embedding_dim'), 32) || '] AS embedding),
                  a.moa, a.target
           FROM read_parquet(getvariable(''lake_dir'') || ''/embeddings/signatures.parquet'') s
           LEFT JOIN perturbagen_annotations a ON a.pert_id = s.pert_id
           ORDER BY s.cell_id, s.sig_id');

CREATE TABLE IF NOT EXISTS signature_embeddings (
    sig_id VARCHAR, pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR,
    pert_dose DOUBLE, pert_dose_unit VARCHAR, pert_time DOUBLE, pert_time_unit VARCHAR,
    n_replicates BIGINT, embedding FLOAT[32], moa VARCHAR, target VARCHAR);

SET VARIABLE perturbagen_embedding_dim = (
    SELECT max(len(embedding)) FROM read_parquet({{lake}} || '/embeddings/perturbagens.parquet'));

-- One row per perturbagen and cell line, and one per perturbagen over all cell lines
-- (cell_id NULL): the re-normalized mean of its profile embeddings.
CREATE OR REPLACE TABLE perturbagen_embeddings AS
FROM query('SELECT e.* REPLACE (e.embedding::FLOAT['
           || coalesce(getvariable('perturbagen_embedding_dim'), 32) || '] AS embedding),
                  a.moa, a.target
           FROM read_parquet(getvariable(''lake_dir'') || ''/embeddings/perturbagens.parquet'') e
           LEFT JOIN perturbagen_annotations a ON a.pert_id = e.pert_id
           ORDER BY e.cell_id NULLS FIRST, e.pert_id');

CREATE TABLE IF NOT EXISTS perturbagen_embeddings (
    pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR,
    n_profiles BIGINT, n_signatures BIGINT, n_cell_lines BIGINT, embedding FLOAT[32],
    moa VARCHAR, target VARCHAR);

PRAGMA force_compression = 'auto';

-- One row per perturbagen and MOA (CMap separates several MOAs with '|').
CREATE OR REPLACE VIEW perturbagen_moas AS
SELECT DISTINCT pert_id, trim(m) AS moa
FROM perturbagen_annotations, unnest(string_split(moa, '|')) AS u(m)
WHERE moa IS NOT NULL AND trim(m) <> '';

-- MODZ-collapsed level-4 z-scores (level 5), the z-score baseline, with the same sig_id
-- as signature_embeddings.
CREATE OR REPLACE VIEW zscore_signatures AS
SELECT * REPLACE (signature::FLOAT[978] AS signature)
FROM read_parquet({{lake}} || '/zscore_signatures/cell_id=*/signatures.parquet',
                  hive_partitioning = false, union_by_name = true);

CREATE TABLE IF NOT EXISTS zscore_signatures (
    sig_id VARCHAR, pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR,
    pert_dose DOUBLE, pert_dose_unit VARCHAR, pert_time DOUBLE, pert_time_unit VARCHAR,
    n_replicates BIGINT, signature FLOAT[978]);

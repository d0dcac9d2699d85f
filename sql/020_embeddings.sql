-- Conventions of the catalog's SQL; every file in sql/ follows them.
--
-- * Users query the main schema: tables, views and table macros. Helpers live in the schema
--   internal (internal.known_annotation, internal.hypergeometric_sf, unit parsing, name
--   checks): not an interface, they may change.
-- * Everything a user reads has a COMMENT ON: tables, views, their columns, macros. The view
--   catalog_guide lists the user-facing objects with their comments.
-- * Names match in any case. A perturbagen is resolved by resolve_perturbagen(name) (pert_id
--   or pert_iname), a cell line by internal.cell_line(in_cell), a type by
--   internal.pert_type(of_type, shrna); an unknown name is an error (error()) that names it
--   and the closest known ones, never a silently empty result.
-- * Filters have the same names everywhere, all optional: k (hits kept), in_cell (a cell
--   line; NULL: over all cell lines), of_type (a pert_type), at_dose and at_time (a number, or
--   text with a unit: 10, '10uM', '10 µM', '10 um', '10000 nM'; 24, '24h', '24 hr', '1 day'),
--   shrna ('gene', the default: shRNAs collapsed to their gene as CMap's consensus gene
--   signature, pert_type trt_sh.cgs; 'hairpin': each shRNA).
-- * Macros that rank return, in this order: the query's columns (query_...), rank (1 = most
--   similar), similarity, the hit's own id for signatures (sig_id), pert_id, pert_iname,
--   pert_type, cell_id, then for signatures pert_dose, pert_dose_unit, pert_time,
--   pert_time_unit, n_replicates, then moa and target.
-- * Values come in as bound parameters (?), never pasted into SQL text. The one text
--   substitution is the lake directory placeholder (the word lake in double braces), a path
--   the build supplies.
--
-- This file: the helpers, then the embeddings as typed tables: profile, signature and
-- perturbagen embeddings copied from the lake's Parquet with the embedding column cast to
-- FLOAT[d] (Parquet gives back FLOAT[]), so array_inner_product works; the vectors are
-- L2-normalized, so the inner product is the cosine similarity. d is read from the files (the
-- model card's embedding_dim): the cast is built as text inside query(), the only place
-- DuckDB takes a type computed at run time. A table whose files do not exist yet is skipped
-- by the catalog and created empty below, so the macros in 030 always bind. Signature and
-- perturbagen rows carry the perturbagen's MOA and target, joined here once rather than at
-- every query. The MODZ z-score signatures (978 floats each) stay a view over the lake; their
-- per-perturbagen means (perturbagen_zscores) are summed by the build in numpy
-- (core/catalog/zscores.py) and handed in as the relation lake_perturbagen_zscores.

SET VARIABLE lake_dir = {{lake}};

CREATE SCHEMA IF NOT EXISTS internal;

-- An annotation is unknown when blank or the CMap missing-value code -666.
CREATE OR REPLACE MACRO internal.known_annotation(x) AS
    CASE WHEN trim(x) IN ('', '-666', 'NA', 'nan') THEN NULL ELSE trim(x) END;

-- The pert_id of a gene's consensus signature over its shRNAs (CMap's trt_sh.cgs).
CREATE OR REPLACE MACRO internal.cgs_id(gene) AS 'CGS-' || gene;

-- Element-wise sum of a list of equal-length vectors.
CREATE OR REPLACE MACRO internal.vector_sum(vectors) AS
    list_reduce(vectors, lambda a, b: list_transform(list_zip(a, b), lambda p: p[1] + p[2]));

-- A number and a unit written together: its number ('10uM' -> 10), and its unit in lower
-- case with the micro sign (either code point) written u ('10 µM' -> 'um').
CREATE OR REPLACE MACRO internal.quantity_value(q) AS
    TRY_CAST(regexp_extract(trim(q::VARCHAR), '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?')
             AS DOUBLE);

CREATE OR REPLACE MACRO internal.unit_key(unit) AS
    replace(replace(lower(trim(coalesce(unit, ''))), 'µ', 'u'), 'μ', 'u');

CREATE OR REPLACE MACRO internal.quantity_unit(q) AS
    internal.unit_key(regexp_replace(trim(q::VARCHAR),
                                     '^[-+]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][-+]?[0-9]+)?', ''));

-- Molar units in mol/L, time units in hours (NULL: another unit).
CREATE OR REPLACE MACRO internal.molar(unit) AS
    CASE internal.unit_key(unit)
        WHEN 'm' THEN 1.0 WHEN 'mm' THEN 1e-3 WHEN 'um' THEN 1e-6 WHEN 'nm' THEN 1e-9
        WHEN 'pm' THEN 1e-12 END;

CREATE OR REPLACE MACRO internal.hours(unit) AS
    CASE WHEN internal.unit_key(unit) IN ('h', 'hr', 'hrs', 'hour', 'hours') THEN 1.0
         WHEN internal.unit_key(unit) IN ('min', 'mins', 'minute', 'minutes') THEN 1.0 / 60
         WHEN internal.unit_key(unit) IN ('d', 'day', 'days') THEN 24.0 END;

-- Two doses or times are the same within 1% (1.11 and 1.111 uM; no two levels are that close).
CREATE OR REPLACE MACRO internal.same_number(a, b) AS
    abs(a - b) <= 0.01 * greatest(abs(a), abs(b));

-- Whether a dose or time q (a number, or text with a unit; NULL: any) is value in unit:
-- molar units and time units are converted, other units compared as written (any case);
-- a number without a unit compares the numbers. Text that is not a number is an error.
CREATE OR REPLACE MACRO internal.quantity_matches(q, value, unit, what) AS
    q IS NULL
    OR CASE
        WHEN trim(q::VARCHAR) = '' THEN value IS NULL
        WHEN internal.quantity_value(q) IS NULL THEN
            error(what || ' ' || q::VARCHAR || ': not a number with an optional unit '
                  || '(e.g. 10, ''10uM'', ''10 µM'', ''24h'')')
        WHEN internal.quantity_unit(q) = '' THEN internal.same_number(internal.quantity_value(q), value)
        WHEN what = 'at_dose' AND internal.molar(internal.quantity_unit(q)) IS NOT NULL THEN
            internal.same_number(internal.quantity_value(q) * internal.molar(internal.quantity_unit(q)),
                                 value * internal.molar(unit))
        WHEN what = 'at_time' AND internal.hours(internal.quantity_unit(q)) IS NOT NULL THEN
            internal.same_number(internal.quantity_value(q) * internal.hours(internal.quantity_unit(q)),
                                 value * internal.hours(unit))
        ELSE internal.quantity_unit(q) = internal.unit_key(unit)
             AND internal.same_number(internal.quantity_value(q), value)
    END;

-- One row per perturbagen: name, type, MOA and target (the first known value over the
-- releases' perturbagen tables; a table without some of these columns reads as unknown), and
-- one row per gene with shRNAs: its consensus gene signature (pert_type trt_sh.cgs).
CREATE OR REPLACE TABLE perturbagen_annotations AS
WITH perts AS (
    SELECT * FROM read_parquet({{lake}} || '/metadata/release=*/perturbagens.parquet',
                               union_by_name = true)
    UNION ALL BY NAME
    SELECT NULL::VARCHAR AS pert_id, NULL::VARCHAR AS pert_iname, NULL::VARCHAR AS pert_type,
           NULL::VARCHAR AS moa, NULL::VARCHAR AS target
    WHERE false),
known AS (
    SELECT pert_id,
           any_value(internal.known_annotation(perts.pert_iname)) AS pert_iname,
           any_value(internal.known_annotation(perts.pert_type)) AS pert_type,
           any_value(internal.known_annotation(perts.moa)) AS moa,
           any_value(internal.known_annotation(perts.target)) AS target
    FROM perts
    GROUP BY pert_id)
SELECT * FROM known
UNION ALL
SELECT internal.cgs_id(pert_iname), pert_iname, 'trt_sh.cgs', NULL, any_value(target)
FROM known WHERE pert_type = 'trt_sh' AND pert_iname IS NOT NULL
GROUP BY pert_iname
ORDER BY pert_id;

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
-- (cell_id NULL): the re-normalized mean of its profile embeddings. The lake's rows first
-- (typed), then each shRNA gene's consensus rows are added (below).
CREATE OR REPLACE TABLE perturbagen_embeddings AS
FROM query('SELECT e.* REPLACE (e.embedding::FLOAT['
           || coalesce(getvariable('perturbagen_embedding_dim'), 32) || '] AS embedding),
                  a.moa, a.target
           FROM read_parquet(getvariable(''lake_dir'') || ''/embeddings/perturbagens.parquet'') e
           LEFT JOIN perturbagen_annotations a ON a.pert_id = e.pert_id');

CREATE TABLE IF NOT EXISTS perturbagen_embeddings (
    pert_id VARCHAR, pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR,
    n_profiles BIGINT, n_signatures BIGINT, n_cell_lines BIGINT, embedding FLOAT[32],
    moa VARCHAR, target VARCHAR);

-- The consensus gene signature of each gene's shRNAs (CMap's trt_sh.cgs), per cell line and
-- over all cell lines: the re-normalized mean of its hairpins' embeddings, which cancels the
-- hairpins' own seed effects. Written with the lake's rows into one table sorted by scope.
CREATE OR REPLACE TEMP TABLE perturbagen_embeddings_staged AS FROM perturbagen_embeddings;

INSERT INTO perturbagen_embeddings_staged BY NAME
WITH hairpins AS (
    SELECT * FROM perturbagen_embeddings WHERE pert_type = 'trt_sh' AND pert_iname IS NOT NULL),
cell_lines AS (
    SELECT pert_iname, count(DISTINCT cell_id) AS n_cell_lines
    FROM hairpins WHERE cell_id IS NOT NULL GROUP BY pert_iname),
genes AS (
    SELECT internal.cgs_id(h.pert_iname) AS pert_id, h.pert_iname, 'trt_sh.cgs' AS pert_type,
           h.cell_id, sum(h.n_profiles)::BIGINT AS n_profiles,
           sum(h.n_signatures)::BIGINT AS n_signatures,
           CASE WHEN h.cell_id IS NULL THEN any_value(c.n_cell_lines) ELSE 1 END AS n_cell_lines,
           internal.vector_sum(list(h.embedding::FLOAT[])) AS total,
           NULL::VARCHAR AS moa, any_value(h.target) AS target
    FROM hairpins h LEFT JOIN cell_lines c USING (pert_iname)
    GROUP BY h.pert_iname, h.cell_id)
SELECT * EXCLUDE (total),
       list_transform(total, lambda x: x / sqrt(list_inner_product(total, total))) AS embedding
FROM genes;

CREATE OR REPLACE TABLE perturbagen_embeddings AS
FROM perturbagen_embeddings_staged ORDER BY cell_id NULLS FIRST, pert_id;

DROP TABLE perturbagen_embeddings_staged;

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

-- The perturbagen-level z-score baseline: each perturbagen's mean MODZ signature per cell
-- line and over all cell lines (cell_id NULL), and each shRNA gene's (trt_sh.cgs: the mean
-- of its hairpins' signatures), with MOA and target.
CREATE OR REPLACE TABLE perturbagen_zscores AS
WITH lake AS (
    SELECT pert_id, pert_iname, pert_type, cell_id, n_signatures, zscores::FLOAT[978] AS zscores
    FROM lake_perturbagen_zscores),
genes AS (
    SELECT internal.cgs_id(pert_iname) AS pert_id, pert_iname, 'trt_sh.cgs' AS pert_type,
           cell_id, sum(n_signatures)::BIGINT AS n_signatures,
           internal.vector_sum(list(list_transform(zscores::FLOAT[],
                                                   lambda x: x * n_signatures))) AS total
    FROM lake WHERE pert_type = 'trt_sh' AND pert_iname IS NOT NULL
    GROUP BY pert_iname, cell_id),
everything AS (
    SELECT * FROM lake
    UNION ALL BY NAME
    SELECT * EXCLUDE (total),
           list_transform(total, lambda x: x / n_signatures)::FLOAT[978] AS zscores
    FROM genes)
SELECT z.*, a.moa, a.target
FROM everything z LEFT JOIN perturbagen_annotations a USING (pert_id)
ORDER BY z.cell_id NULLS FIRST, z.pert_id;

-- What a user reads, described where they look (duckdb_tables(), duckdb_columns(),
-- duckdb_functions(), catalog_guide).
COMMENT ON TABLE perturbagen_annotations IS 'One row per perturbagen: pert_iname, pert_type, MOA and target (first known value over the releases; -666 and blanks are NULL), and one row per gene with shRNAs, its consensus gene signature (pert_type trt_sh.cgs, pert_id CGS-<gene>).';
COMMENT ON COLUMN perturbagen_annotations.pert_id IS 'Perturbagen id (BRD-... compounds, TRCN... shRNAs, CGS-<gene> consensus gene signatures).';
COMMENT ON COLUMN perturbagen_annotations.pert_iname IS 'Perturbagen name: the compound name, or the gene symbol of a genetic perturbagen.';
COMMENT ON COLUMN perturbagen_annotations.pert_type IS 'trt_cp compound, trt_sh shRNA, trt_sh.cgs shRNAs of one gene collapsed, trt_oe cDNA over-expression.';
COMMENT ON COLUMN perturbagen_annotations.moa IS 'Mechanism of action; several are separated by |.';
COMMENT ON COLUMN perturbagen_annotations.target IS 'Target gene(s); several are separated by |.';

COMMENT ON TABLE profile_embeddings IS 'Every lake profile (level-4 landmark z-scores) embedded by the served model: unit vectors, so array_inner_product is the cosine similarity.';
COMMENT ON COLUMN profile_embeddings.inst_id IS 'Profile (instance) id of the release.';
COMMENT ON COLUMN profile_embeddings.embedding IS 'Unit-length embedding (FLOAT[d]).';

COMMENT ON TABLE signature_embeddings IS 'One row per signature (perturbagen x cell line x dose x time): the re-normalized mean of its replicate profile embeddings, with MOA and target. Find sig_ids with find_signatures(pert).';
COMMENT ON COLUMN signature_embeddings.sig_id IS 'cell:pert_id:dose unit:time unit, e.g. A549:BRD-K12345:10µM:24h.';
COMMENT ON COLUMN signature_embeddings.pert_dose IS 'Dose, in pert_dose_unit.';
COMMENT ON COLUMN signature_embeddings.pert_dose_unit IS 'Dose unit as the release writes it (µM, µL, %).';
COMMENT ON COLUMN signature_embeddings.pert_time IS 'Time after treatment, in pert_time_unit.';
COMMENT ON COLUMN signature_embeddings.pert_time_unit IS 'Time unit (h).';
COMMENT ON COLUMN signature_embeddings.n_replicates IS 'Replicate profiles averaged.';
COMMENT ON COLUMN signature_embeddings.embedding IS 'Unit-length embedding (FLOAT[d]).';

COMMENT ON TABLE perturbagen_embeddings IS 'One row per perturbagen and cell line, and one per perturbagen over all cell lines (cell_id NULL): the re-normalized mean of its profile embeddings; shRNAs also collapsed per gene (pert_type trt_sh.cgs).';
COMMENT ON COLUMN perturbagen_embeddings.cell_id IS 'Cell line; NULL: over all cell lines.';
COMMENT ON COLUMN perturbagen_embeddings.n_profiles IS 'Profiles averaged.';
COMMENT ON COLUMN perturbagen_embeddings.n_signatures IS 'Signatures (cell line x dose x time) among them.';
COMMENT ON COLUMN perturbagen_embeddings.n_cell_lines IS 'Cell lines among them.';
COMMENT ON COLUMN perturbagen_embeddings.embedding IS 'Unit-length embedding (FLOAT[d]).';

COMMENT ON VIEW zscore_signatures IS 'MODZ-collapsed level-4 z-scores (CMap level 5) per signature, the z-score baseline, with the sig_id of signature_embeddings (a view over the lake).';
COMMENT ON VIEW perturbagen_moas IS 'One row per perturbagen and MOA (a perturbagen with several MOAs has several rows).';
COMMENT ON TABLE perturbagen_zscores IS 'The perturbagen-level z-score baseline: the mean MODZ z-score signature of each perturbagen per cell line and over all cell lines (cell_id NULL), and of each gene''s shRNAs (trt_sh.cgs).';
COMMENT ON COLUMN perturbagen_zscores.n_signatures IS 'MODZ signatures averaged.';
COMMENT ON COLUMN perturbagen_zscores.zscores IS 'Mean landmark z-scores (FLOAT[978], in the order of genes.landmark_index).';

COMMENT ON COLUMN profile_embeddings.pert_id IS 'Perturbagen id (see perturbagen_annotations).';
COMMENT ON COLUMN profile_embeddings.pert_iname IS 'Perturbagen name (compound, or gene symbol of a genetic perturbagen).';
COMMENT ON COLUMN profile_embeddings.pert_type IS 'trt_cp, trt_sh, trt_sh.cgs or trt_oe.';
COMMENT ON COLUMN profile_embeddings.cell_id IS 'Cell line.';
COMMENT ON COLUMN profile_embeddings.pert_dose IS 'Dose, in pert_dose_unit.';
COMMENT ON COLUMN profile_embeddings.pert_dose_unit IS 'Dose unit.';
COMMENT ON COLUMN profile_embeddings.pert_time IS 'Time after treatment, in pert_time_unit.';
COMMENT ON COLUMN profile_embeddings.pert_time_unit IS 'Time unit.';
COMMENT ON COLUMN profile_embeddings.release IS 'The release the profile comes from.';
COMMENT ON COLUMN signature_embeddings.pert_id IS 'Perturbagen id (see perturbagen_annotations).';
COMMENT ON COLUMN signature_embeddings.pert_iname IS 'Perturbagen name (compound, or gene symbol of a genetic perturbagen).';
COMMENT ON COLUMN signature_embeddings.pert_type IS 'trt_cp, trt_sh, trt_sh.cgs or trt_oe.';
COMMENT ON COLUMN signature_embeddings.moa IS 'Mechanism of action, where known.';
COMMENT ON COLUMN signature_embeddings.target IS 'Target gene(s), where known.';
COMMENT ON COLUMN signature_embeddings.cell_id IS 'Cell line.';
COMMENT ON COLUMN perturbagen_embeddings.pert_id IS 'Perturbagen id (see perturbagen_annotations).';
COMMENT ON COLUMN perturbagen_embeddings.pert_iname IS 'Perturbagen name (compound, or gene symbol of a genetic perturbagen).';
COMMENT ON COLUMN perturbagen_embeddings.pert_type IS 'trt_cp, trt_sh, trt_sh.cgs or trt_oe.';
COMMENT ON COLUMN perturbagen_embeddings.moa IS 'Mechanism of action, where known.';
COMMENT ON COLUMN perturbagen_embeddings.target IS 'Target gene(s), where known.';
COMMENT ON COLUMN perturbagen_zscores.pert_id IS 'Perturbagen id (see perturbagen_annotations).';
COMMENT ON COLUMN perturbagen_zscores.pert_iname IS 'Perturbagen name (compound, or gene symbol of a genetic perturbagen).';
COMMENT ON COLUMN perturbagen_zscores.pert_type IS 'trt_cp, trt_sh, trt_sh.cgs or trt_oe.';
COMMENT ON COLUMN perturbagen_zscores.moa IS 'Mechanism of action, where known.';
COMMENT ON COLUMN perturbagen_zscores.target IS 'Target gene(s), where known.';
COMMENT ON COLUMN perturbagen_zscores.cell_id IS 'Cell line; NULL: over all cell lines.';

COMMENT ON MACRO internal.known_annotation IS 'Internal: NULL for blanks and CMap''s -666.';
COMMENT ON MACRO internal.cgs_id IS 'Internal: the pert_id of a gene''s consensus shRNA signature.';
COMMENT ON MACRO internal.vector_sum IS 'Internal: element-wise sum of a list of vectors.';
COMMENT ON MACRO internal.quantity_value IS 'Internal: the number of a dose or time written with a unit.';
COMMENT ON MACRO internal.quantity_unit IS 'Internal: the unit of a dose or time, lower case, micro sign as u.';
COMMENT ON MACRO internal.unit_key IS 'Internal: a unit in lower case, micro sign as u.';
COMMENT ON MACRO internal.molar IS 'Internal: a molar unit in mol/L.';
COMMENT ON MACRO internal.hours IS 'Internal: a time unit in hours.';
COMMENT ON MACRO internal.same_number IS 'Internal: equal within 1%.';
COMMENT ON MACRO internal.quantity_matches IS 'Internal: whether a dose or time filter (number or text with a unit) matches a value and unit.';

-- Read-across queries. Call the macros with bound parameters, e.g. from Python
--   con.execute("SELECT * FROM similar_perturbagens(?, k := ?)", ["BRD-K12345", 10])
-- Filters (all optional): in_cell (a cell line; default: over all cell lines), of_type (a
-- pert_type such as trt_cp, trt_sh, trt_oe), at_dose and at_time (signatures only, the
-- numbers of pert_dose and pert_time). Results carry rank (1 = most similar), similarity
-- (cosine), the perturbagen's name and type, and its MOA and target where known.

-- Top k perturbagens nearest to a vector: vec must be FLOAT[d], the embedding width
-- (cast a bound list: nearest_to(?::FLOAT[32], k := 10)).
CREATE OR REPLACE MACRO nearest_to(vec, k := 20, in_cell := NULL, of_type := NULL) AS TABLE
WITH hits AS (
    SELECT e.pert_id, e.pert_iname, e.pert_type, e.cell_id, e.moa, e.target,
           array_inner_product(e.embedding, vec) AS similarity
    FROM perturbagen_embeddings e
    WHERE e.cell_id IS NOT DISTINCT FROM in_cell
      AND (of_type IS NULL OR e.pert_type = of_type)
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY similarity DESC, pert_id) AS rank, similarity,
       pert_id, pert_iname, pert_type, cell_id, moa, target
FROM hits
ORDER BY rank;

-- Top k perturbagens most like a perturbagen (its pert_id, or its pert_iname: one result
-- set per matching pert_id, told apart by query_pert_id). The query itself is left out.
CREATE OR REPLACE MACRO similar_perturbagens(pert, k := 20, in_cell := NULL, of_type := NULL)
AS TABLE
WITH queries AS (
    SELECT pert_id AS query_pert_id, embedding AS query_vec
    FROM perturbagen_embeddings
    WHERE (pert_id = pert OR pert_iname = pert) AND cell_id IS NOT DISTINCT FROM in_cell),
hits AS (
    SELECT q.query_pert_id, e.pert_id, e.pert_iname, e.pert_type, e.cell_id, e.moa, e.target,
           array_inner_product(e.embedding, q.query_vec) AS similarity,
           row_number() OVER (PARTITION BY q.query_pert_id
                              ORDER BY array_inner_product(e.embedding, q.query_vec) DESC,
                                       e.pert_id) AS rank
    FROM queries q JOIN perturbagen_embeddings e
      ON e.cell_id IS NOT DISTINCT FROM in_cell AND e.pert_id <> q.query_pert_id
    WHERE of_type IS NULL OR e.pert_type = of_type
    QUALIFY rank <= k)
SELECT query_pert_id, rank, similarity, pert_id, pert_iname, pert_type, cell_id, moa, target
FROM hits
ORDER BY query_pert_id, rank;

-- Top k signatures nearest to a vector (FLOAT[d], as for nearest_to).
CREATE OR REPLACE MACRO nearest_signatures(vec, k := 20, in_cell := NULL, of_type := NULL,
                                           at_dose := NULL, at_time := NULL) AS TABLE
WITH hits AS (
    SELECT s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id, s.pert_dose,
           s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates, s.moa, s.target,
           array_inner_product(s.embedding, vec) AS similarity
    FROM signature_embeddings s
    WHERE (in_cell IS NULL OR s.cell_id = in_cell)
      AND (of_type IS NULL OR s.pert_type = of_type)
      AND (at_dose IS NULL OR s.pert_dose = at_dose)
      AND (at_time IS NULL OR s.pert_time = at_time)
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY similarity DESC, sig_id) AS rank, similarity,
       * EXCLUDE (similarity)
FROM hits
ORDER BY rank;

-- Top k signatures most like a signature (by sig_id, e.g. 'A549:BRD-K12345:10uM:24h'),
-- itself left out.
CREATE OR REPLACE MACRO similar_signatures(sig, k := 20, in_cell := NULL, of_type := NULL,
                                           at_dose := NULL, at_time := NULL) AS TABLE
WITH query AS (SELECT embedding AS query_vec FROM signature_embeddings WHERE sig_id = sig),
hits AS (
    SELECT s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id, s.pert_dose,
           s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates, s.moa, s.target,
           array_inner_product(s.embedding, q.query_vec) AS similarity
    FROM signature_embeddings s, query q
    WHERE s.sig_id <> sig
      AND (in_cell IS NULL OR s.cell_id = in_cell)
      AND (of_type IS NULL OR s.pert_type = of_type)
      AND (at_dose IS NULL OR s.pert_dose = at_dose)
      AND (at_time IS NULL OR s.pert_time = at_time)
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY similarity DESC, sig_id) AS rank, similarity,
       * EXCLUDE (similarity)
FROM hits
ORDER BY rank;

-- The baseline: the same query on MODZ z-score signatures, by cosine similarity of the 978
-- landmark z-scores.
CREATE OR REPLACE MACRO similar_zscore_signatures(sig, k := 20, in_cell := NULL,
                                                  of_type := NULL, at_dose := NULL,
                                                  at_time := NULL) AS TABLE
WITH query AS (SELECT signature AS query_vec FROM zscore_signatures WHERE sig_id = sig),
hits AS (
    SELECT s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id, s.pert_dose,
           s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates,
           array_cosine_similarity(s.signature, q.query_vec) AS similarity
    FROM zscore_signatures s, query q
    WHERE s.sig_id <> sig
      AND (in_cell IS NULL OR s.cell_id = in_cell)
      AND (of_type IS NULL OR s.pert_type = of_type)
      AND (at_dose IS NULL OR s.pert_dose = at_dose)
      AND (at_time IS NULL OR s.pert_time = at_time)
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY h.similarity DESC, h.sig_id) AS rank, h.similarity,
       h.* EXCLUDE (similarity), a.moa, a.target
FROM hits h LEFT JOIN perturbagen_annotations a USING (pert_id)
ORDER BY rank;

-- log C(n, r) and the hypergeometric upper tail P(X >= x) for x successes in n draws from
-- total items of which k are successes.
CREATE OR REPLACE MACRO log_choose(n, r) AS lgamma(n + 1) - lgamma(r + 1) - lgamma(n - r + 1);

CREATE OR REPLACE MACRO hypergeometric_sf(x, n, k, total) AS (
    SELECT least(1.0, coalesce(sum(exp(log_choose(k, i) + log_choose(total - k, n - i)
                                       - log_choose(total, n))), 0.0))
    FROM range(x, least(n, k) + 1) AS r(i)
    WHERE n - i <= total - k);

-- Which MOAs are over-represented among a perturbagen's top k neighbours: for each MOA in
-- the hits, how many hits have it (n_hits_moa of n_hits), how many candidates have it
-- (n_moa of n_candidates: every perturbagen of the same scope and type but the query),
-- the fold enrichment and the hypergeometric p-value P(X >= n_hits_moa).
CREATE OR REPLACE MACRO moa_enrichment(pert, k := 50, in_cell := NULL, of_type := NULL)
AS TABLE
WITH hits AS (
    SELECT query_pert_id, pert_id
    FROM similar_perturbagens(pert, k := k, in_cell := in_cell, of_type := of_type)),
candidates AS (
    SELECT q.query_pert_id, e.pert_id
    FROM (SELECT DISTINCT query_pert_id FROM hits) q JOIN perturbagen_embeddings e
      ON e.cell_id IS NOT DISTINCT FROM in_cell AND e.pert_id <> q.query_pert_id
    WHERE of_type IS NULL OR e.pert_type = of_type),
sizes AS (
    SELECT c.query_pert_id, count(*) AS n_candidates,
           (SELECT count(*) FROM hits h WHERE h.query_pert_id = c.query_pert_id) AS n_hits
    FROM candidates c GROUP BY c.query_pert_id),
hit_moas AS (
    SELECT h.query_pert_id, m.moa, count(*) AS n_hits_moa
    FROM hits h JOIN perturbagen_moas m USING (pert_id) GROUP BY ALL),
candidate_moas AS (
    SELECT c.query_pert_id, m.moa, count(*) AS n_moa
    FROM candidates c JOIN perturbagen_moas m USING (pert_id) GROUP BY ALL)
SELECT h.query_pert_id, h.moa, h.n_hits_moa, s.n_hits, c.n_moa, s.n_candidates,
       h.n_hits_moa / (s.n_hits * c.n_moa / s.n_candidates) AS fold_enrichment,
       hypergeometric_sf(h.n_hits_moa, s.n_hits, c.n_moa, s.n_candidates) AS p_value
FROM hit_moas h
JOIN candidate_moas c USING (query_pert_id, moa)
JOIN sizes s USING (query_pert_id)
ORDER BY h.query_pert_id, p_value, fold_enrichment DESC, h.moa;

-- The user's own profiles (read_across_results asset): the ranked perturbagens of every
-- query profile, and each profile's embedding, gene coverage, input platform, transform,
-- imputed landmarks and warnings.
CREATE OR REPLACE VIEW read_across_results AS
SELECT * FROM read_parquet({{lake}} || '/read_across/results.parquet');

CREATE TABLE IF NOT EXISTS read_across_results (
    query_file VARCHAR, query_path VARCHAR, query_id VARCHAR, rank BIGINT, pert_id VARCHAR,
    pert_iname VARCHAR, pert_type VARCHAR, cell_id VARCHAR, similarity DOUBLE, moa VARCHAR,
    target VARCHAR, model_version VARCHAR);

CREATE OR REPLACE VIEW read_across_queries AS
SELECT * FROM read_parquet({{lake}} || '/read_across/queries.parquet');

CREATE TABLE IF NOT EXISTS read_across_queries (
    query_file VARCHAR, query_path VARCHAR, query_id VARCHAR, n_genes_in_file BIGINT,
    n_landmarks_used BIGINT, missing_genes VARCHAR[], platform VARCHAR, transform VARCHAR,
    imputed_genes VARCHAR[], warnings VARCHAR[], model_version VARCHAR, embedding FLOAT[]);

-- MOAs over-represented among each query profile's ranked perturbagens (as
-- moa_enrichment; candidates: the perturbagens of the scope the query was ranked in).
CREATE OR REPLACE VIEW read_across_moa_enrichment AS
WITH hits AS (
    SELECT query_path, query_file, query_id, cell_id, pert_id FROM read_across_results),
queries AS (
    SELECT query_path, query_file, query_id, any_value(cell_id) AS cell_id,
           count(*) AS n_hits
    FROM hits GROUP BY query_path, query_file, query_id),
scopes AS (
    SELECT DISTINCT cell_id FROM queries),
candidate_moas AS (
    SELECT s.cell_id, m.moa, count(*) AS n_moa
    FROM scopes s JOIN perturbagen_embeddings e ON e.cell_id IS NOT DISTINCT FROM s.cell_id
    JOIN perturbagen_moas m ON m.pert_id = e.pert_id
    GROUP BY ALL),
scope_sizes AS (
    SELECT s.cell_id, count(*) AS n_candidates
    FROM scopes s JOIN perturbagen_embeddings e ON e.cell_id IS NOT DISTINCT FROM s.cell_id
    GROUP BY ALL),
hit_moas AS (
    SELECT h.query_path, h.query_id, m.moa, count(*) AS n_hits_moa
    FROM hits h JOIN perturbagen_moas m USING (pert_id) GROUP BY ALL)
SELECT q.query_file, q.query_id, h.moa, h.n_hits_moa, q.n_hits, c.n_moa, z.n_candidates,
       h.n_hits_moa / (q.n_hits * c.n_moa / z.n_candidates) AS fold_enrichment,
       hypergeometric_sf(h.n_hits_moa, q.n_hits, c.n_moa, z.n_candidates) AS p_value,
       q.query_path
FROM hit_moas h
JOIN queries q USING (query_path, query_id)
JOIN candidate_moas c ON c.cell_id IS NOT DISTINCT FROM q.cell_id AND c.moa = h.moa
JOIN scope_sizes z ON z.cell_id IS NOT DISTINCT FROM q.cell_id
ORDER BY q.query_file, q.query_id, p_value, fold_enrichment DESC, h.moa;

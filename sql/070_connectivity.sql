-- Gene-set queries (connectivity_results asset): the hits of every query of the gene-set
-- files in the queries folder, the queries themselves (their genes sorted into valid,
-- outside the space and invalid; the error of a refused one), and the statistics on the
-- hits (MOA and target enrichment) of gene-set queries and of the profile read-across
-- (read_across_enrichment asset). Call the macros with bound parameters, e.g.
--   con.execute("SELECT * FROM connectivity_hits(?, k := ?)", ["my_query", 10])

CREATE OR REPLACE VIEW connectivity_results AS
SELECT * FROM read_parquet({{lake}} || '/connectivity/results.parquet');

CREATE TABLE IF NOT EXISTS connectivity_results (
    query_file VARCHAR, query_path VARCHAR, query_name VARCHAR, method VARCHAR,
    direction VARCHAR, level VARCHAR, rank BIGINT, pert_id VARCHAR, pert_iname VARCHAR,
    pert_type VARCHAR, moa VARCHAR, target VARCHAR, cell_id VARCHAR, sig_id VARCHAR,
    n_cell_lines BIGINT, n_signatures BIGINT, score DOUBLE, wtcs DOUBLE, ncs DOUBLE,
    tau DOUBLE, z_up DOUBLE, z_down DOUBLE, fdr_up DOUBLE, fdr_down DOUBLE,
    similarity DOUBLE, store_version VARCHAR, reference_version VARCHAR);

CREATE OR REPLACE VIEW connectivity_queries AS
SELECT * FROM read_parquet({{lake}} || '/connectivity/queries.parquet');

CREATE TABLE IF NOT EXISTS connectivity_queries (
    query_file VARCHAR, query_path VARCHAR, query_name VARCHAR, query_files VARCHAR[],
    method VARCHAR, direction VARCHAR, level VARCHAR, cell_scope VARCHAR,
    pert_type_scope VARCHAR, n_up BIGINT, n_down BIGINT, up_valid VARCHAR[],
    up_outside VARCHAR[], up_invalid VARCHAR[], down_valid VARCHAR[], down_outside VARCHAR[],
    down_invalid VARCHAR[], seconds DOUBLE, error VARCHAR, store_version VARCHAR,
    reference_version VARCHAR);

CREATE OR REPLACE VIEW connectivity_enrichment AS
SELECT * FROM read_parquet({{lake}} || '/connectivity/enrichment.parquet');

CREATE TABLE IF NOT EXISTS connectivity_enrichment (
    source VARCHAR, query_file VARCHAR, query_path VARCHAR, query_name VARCHAR,
    method VARCHAR, direction VARCHAR, test VARCHAR, term_kind VARCHAR, term VARCHAR,
    n_hits_term BIGINT, n_hits BIGINT, n_term BIGINT, n_background BIGINT,
    fold_enrichment DOUBLE, es DOUBLE, nes DOUBLE, p_value DOUBLE, fdr DOUBLE,
    hits VARCHAR[]);

CREATE OR REPLACE VIEW read_across_enrichment AS
SELECT * FROM read_parquet({{lake}} || '/connectivity/read_across_enrichment.parquet');

CREATE TABLE IF NOT EXISTS read_across_enrichment AS
SELECT * FROM connectivity_enrichment WHERE false;

-- Both kinds of query in one place: source is 'connectivity' (gene sets) or 'read_across'
-- (profiles, whose query_name is the profile id).
CREATE OR REPLACE VIEW hit_enrichment AS
SELECT * FROM connectivity_enrichment
UNION ALL BY NAME
SELECT * FROM read_across_enrichment;

-- The top k hits of a gene-set query (its name, or its file's name), best first; filters
-- (optional): of_method, of_direction ('mimickers' or 'reversers'), of_level.
CREATE OR REPLACE MACRO connectivity_hits(name, k := 20, of_method := NULL,
                                          of_direction := NULL, of_level := NULL) AS TABLE
SELECT query_name, method, direction, level, rank, pert_id, pert_iname, pert_type, moa,
       target, cell_id, sig_id, n_cell_lines, score, wtcs, ncs, tau, z_up, z_down,
       fdr_up, fdr_down, similarity
FROM connectivity_results
WHERE (query_name = name OR query_file = name)
  AND rank <= k
  AND (of_method IS NULL OR method = of_method)
  AND (of_direction IS NULL OR direction = of_direction)
  AND (of_level IS NULL OR level = of_level)
ORDER BY query_name, method, direction, rank;

-- Every gene-set query that has a perturbagen (its pert_id or pert_iname) among its hits,
-- strongest first (by |tau|, then |score|).
CREATE OR REPLACE MACRO perturbagen_connectivity(pert) AS TABLE
SELECT query_name, query_file, method, direction, level, rank, cell_id, score, tau, pert_id,
       pert_iname
FROM connectivity_results
WHERE pert_id = pert OR pert_iname = pert
ORDER BY abs(coalesce(tau, 0)) DESC, abs(score) DESC, query_name;

-- The MOAs and targets enriched among a query's hits (a gene-set query's name or file, or a
-- read-across profile id), at FDR <= max_fdr; of_kind 'moa' or 'target' (default both),
-- of_test 'top_n' or 'prerank' (default both).
CREATE OR REPLACE MACRO enriched_terms(name, max_fdr := 0.05, of_kind := NULL,
                                       of_test := NULL) AS TABLE
SELECT source, query_name, method, direction, test, term_kind, term, n_hits_term, n_hits,
       n_term, n_background, fold_enrichment, nes, p_value, fdr, hits
FROM hit_enrichment
WHERE (query_name = name OR query_file = name)
  AND fdr <= max_fdr
  AND (of_kind IS NULL OR term_kind = of_kind)
  AND (of_test IS NULL OR test = of_test)
ORDER BY source, query_name, direction, test, fdr, p_value, term;

COMMENT ON TABLE connectivity_results IS 'Hits of every gene-set query of the queries folder (connectivity_results asset): rank, perturbagen, cell scope, WTCS, NCS, tau and the rank test''s scores, by method and direction (mimickers, reversers).';
COMMENT ON TABLE connectivity_queries IS 'Every gene-set query read: its genes sorted as CMap does (valid, outside the gene space, invalid) and the error of a refused query.';
COMMENT ON TABLE connectivity_enrichment IS 'MOA and target enrichment among each gene-set query''s top hits (hypergeometric, Benjamini-Hochberg FDR; prerank on request).';
COMMENT ON TABLE read_across_enrichment IS 'MOA and target enrichment among each read-across query profile''s top hits (read_across_enrichment asset).';
COMMENT ON TABLE hit_enrichment IS 'The enrichment rows of gene-set queries and of read-across profiles together, with their source.';
COMMENT ON MACRO TABLE connectivity_hits IS 'The top k hits of the gene-set query name, optionally of one method and direction.';
COMMENT ON MACRO TABLE perturbagen_connectivity IS 'Every gene-set query hit that names pert (pert_id or name), with its rank.';
COMMENT ON MACRO TABLE enriched_terms IS 'MOA and target terms enriched among the hits of query name, up to max_fdr, optionally of one kind.';

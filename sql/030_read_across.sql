-- Read-across queries (conventions: the top of 020_embeddings.sql). Call the macros with
-- bound parameters, e.g. from Python
--   con.execute("SELECT * FROM similar_perturbagens(?, k := ?)", ["BRD-K12345", 10])

-- ---------------------------------------------------------------------------------------
-- Names: perturbagens, cell lines, perturbagen types, in any case
-- ---------------------------------------------------------------------------------------

-- The five known perturbagens closest to a name (Jaro-Winkler on pert_iname and pert_id),
-- as 'name (pert_id, type)' text for an error message.
CREATE OR REPLACE MACRO internal.closest_perturbagens(name) AS (
    SELECT coalesce(string_agg(pert_iname || ' (' || pert_id || ', ' || pert_type || ')', ', '
                               ORDER BY score DESC, pert_id), 'none: the catalog has no perturbagens')
    FROM (SELECT pert_id, coalesce(pert_iname, pert_id) AS pert_iname,
                 coalesce(pert_type, '?') AS pert_type,
                 greatest(jaro_winkler_similarity(lower(trim(name)), lower(coalesce(pert_iname, ''))),
                          jaro_winkler_similarity(lower(trim(name)), lower(pert_id))) AS score
          FROM perturbagen_annotations ORDER BY score DESC, pert_id LIMIT 5));

-- The perturbagens a name means: its pert_id, or every perturbagen of that pert_iname (a
-- compound's several ids, a gene's shRNAs, cDNA and consensus signature), in any case.
CREATE OR REPLACE MACRO resolve_perturbagen(name) AS TABLE
WITH matches AS (
    SELECT a.pert_id, a.pert_iname, a.pert_type, a.moa, a.target,
           CASE WHEN lower(a.pert_id) = lower(trim(name)) THEN 'pert_id' ELSE 'pert_iname' END
               AS matched_by
    FROM perturbagen_annotations a
    WHERE lower(a.pert_id) = lower(trim(name)) OR lower(a.pert_iname) = lower(trim(name)))
SELECT * FROM matches
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL,
       error(CASE WHEN name IS NULL THEN 'perturbagen name is NULL'
                  ELSE 'no perturbagen named ''' || name || ''' (a pert_id or pert_iname, any '
                       || 'case); closest: ' || internal.closest_perturbagens(name) END)
WHERE NOT EXISTS (SELECT 1 FROM matches)
ORDER BY pert_type, pert_id;

-- A cell line in any case as the catalog writes it; NULL stays NULL (all cell lines).
CREATE OR REPLACE MACRO internal.cell_line(name) AS
    CASE WHEN name IS NULL THEN NULL::VARCHAR
         ELSE coalesce(
             (SELECT min(cell_id) FROM perturbagen_embeddings
              WHERE lower(cell_id) = lower(trim(name))),
             error('no cell line ''' || name || '''; cell lines: '
                   || coalesce((SELECT string_agg(DISTINCT cell_id, ', ' ORDER BY cell_id)
                                FROM perturbagen_embeddings), 'none yet')))
    END;

-- The shrna option: 'gene' (default) or 'hairpin'.
CREATE OR REPLACE MACRO internal.shrna_mode(shrna) AS
    CASE WHEN lower(coalesce(shrna, 'gene')) IN ('gene', 'hairpin') THEN lower(coalesce(shrna, 'gene'))
         ELSE error('shrna := ''' || shrna || ''': ''gene'' (shRNAs collapsed to their gene, '
                    || 'trt_sh.cgs) or ''hairpin'' (each shRNA)') END;

-- A perturbagen type in any case as the catalog writes it (trt_sh means the gene-level
-- trt_sh.cgs when shRNAs are collapsed); NULL stays NULL.
CREATE OR REPLACE MACRO internal.pert_type(name, shrna) AS
    CASE WHEN name IS NULL THEN NULL::VARCHAR
         WHEN lower(trim(name)) = 'trt_sh' AND internal.shrna_mode(shrna) = 'gene' THEN 'trt_sh.cgs'
         ELSE coalesce(
             (SELECT min(pert_type) FROM perturbagen_annotations
              WHERE lower(pert_type) = lower(trim(name))),
             error('no perturbagen type ''' || name || '''; types: '
                   || coalesce((SELECT string_agg(DISTINCT pert_type, ', ' ORDER BY pert_type)
                                FROM perturbagen_annotations), 'none yet')))
    END;

-- The filters on the rows ranked are plain expressions of the arguments, which DuckDB
-- folds to constants, so the scan pays one comparison a row; the name checks (subqueries)
-- run apart, once, in internal.scope_errors. Whether a row is in the scope asked: its cell
-- line in any case (NULL: the rows over all cell lines), and of the type asked for, or, with
-- none asked, of any type but the shRNA level not chosen (hairpins when collapsed to genes,
-- and the reverse). Types are compared as CMap writes them, in lower case.
CREATE OR REPLACE MACRO internal.in_cell(cell_id, in_cell) AS
    CASE WHEN in_cell IS NULL THEN cell_id IS NULL
         ELSE lower(cell_id) = lower(trim(in_cell)) END;

CREATE OR REPLACE MACRO internal.ranked_type(t, of_type, shrna) AS
    CASE WHEN of_type IS NULL THEN
             t IS DISTINCT FROM CASE WHEN lower(trim(coalesce(shrna, 'gene'))) = 'hairpin'
                                     THEN 'trt_sh.cgs' ELSE 'trt_sh' END
         ELSE t = CASE WHEN lower(trim(of_type)) = 'trt_sh'
                            AND lower(trim(coalesce(shrna, 'gene'))) = 'gene'
                       THEN 'trt_sh.cgs' ELSE lower(trim(of_type)) END
    END;

-- false, or the error an unknown cell line, type or shrna option deserves (every check is
-- evaluated: none can be folded away).
CREATE OR REPLACE MACRO internal.scope_errors(in_cell, of_type, shrna) AS
    (coalesce(internal.cell_line(in_cell), '') || ':'
     || coalesce(internal.pert_type(of_type, shrna), '') || ':' || internal.shrna_mode(shrna))
    = chr(0);

-- A query vector: any list of numbers of the embedding width; NULL and other lengths are
-- errors (a NULL vector would rank arbitrary rows).
CREATE OR REPLACE MACRO internal.query_vector(vec, width) AS
    CASE WHEN vec::FLOAT[] IS NULL THEN error('the query vector is NULL')
         WHEN width IS NOT NULL AND len(vec::FLOAT[]) <> width THEN
             error('the query vector has ' || len(vec::FLOAT[]) || ' values; the embeddings have '
                   || width)
         ELSE vec::FLOAT[] END;

-- ---------------------------------------------------------------------------------------
-- Perturbagens
-- ---------------------------------------------------------------------------------------

-- Top k perturbagens nearest to a vector (a plain list of numbers, e.g. a bound Python list,
-- or an embedding column).
CREATE OR REPLACE MACRO nearest_to(vec, k := 20, in_cell := NULL, of_type := NULL,
                                   shrna := 'gene') AS TABLE
WITH hits AS (
    SELECT e.pert_id, e.pert_iname, e.pert_type, e.cell_id, e.moa, e.target,
           list_inner_product(e.embedding, vec::FLOAT[]) AS similarity
    FROM perturbagen_embeddings e
    WHERE internal.in_cell(e.cell_id, in_cell) AND internal.ranked_type(e.pert_type, of_type, shrna)
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY similarity DESC, pert_id) AS rank, similarity,
       pert_id, pert_iname, pert_type, cell_id, moa, target
FROM hits
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.query_vector(vec, (SELECT len(embedding) FROM perturbagen_embeddings LIMIT 1))
          IS NULL
   OR internal.scope_errors(in_cell, of_type, shrna)
ORDER BY rank;

-- The embeddings a perturbagen name stands for in one scope: one query per matching
-- perturbagen (shRNAs at the level chosen, unless named by pert_id). A name with no
-- embedding in the scope is an error naming the cell lines it has.
CREATE OR REPLACE MACRO internal.perturbagen_queries(pert, in_cell, shrna) AS TABLE
WITH named AS (SELECT * FROM resolve_perturbagen(pert)),
found AS (
    SELECT n.pert_id AS query_pert_id, n.pert_iname AS query_pert_iname,
           e.embedding AS query_vec
    FROM named n JOIN perturbagen_embeddings e ON e.pert_id = n.pert_id
    WHERE internal.in_cell(e.cell_id, in_cell)
      AND (n.matched_by = 'pert_id' OR internal.ranked_type(n.pert_type, NULL, shrna)))
SELECT * FROM found
UNION ALL
SELECT NULL, NULL,
       error('''' || pert || ''' (' || (SELECT string_agg(DISTINCT pert_id, ', ') FROM named)
             || ') has no embedding '
             || CASE WHEN in_cell IS NULL THEN 'over all cell lines'
                     ELSE 'in cell line ' || internal.cell_line(in_cell) END
             || '; its cell lines: '
             || coalesce((SELECT string_agg(DISTINCT e.cell_id, ', ' ORDER BY e.cell_id)
                          FROM named n JOIN perturbagen_embeddings e USING (pert_id)),
                         'none (materialize perturbagen_embeddings and warehouse)'))
WHERE NOT EXISTS (SELECT 1 FROM found);

-- Top k perturbagens most like a perturbagen (its pert_id or pert_iname, any case: one
-- result set per matching perturbagen, told apart by query_pert_id). The query itself is
-- left out.
CREATE OR REPLACE MACRO similar_perturbagens(pert, k := 20, in_cell := NULL, of_type := NULL,
                                             shrna := 'gene') AS TABLE
WITH queries AS (SELECT * FROM internal.perturbagen_queries(pert, in_cell, shrna)),
hits AS (
    SELECT q.query_pert_id, q.query_pert_iname, e.pert_id, e.pert_iname, e.pert_type,
           e.cell_id, e.moa, e.target,
           array_inner_product(e.embedding, q.query_vec) AS similarity,
           row_number() OVER (PARTITION BY q.query_pert_id
                              ORDER BY array_inner_product(e.embedding, q.query_vec) DESC,
                                       e.pert_id) AS rank
    FROM queries q JOIN perturbagen_embeddings e ON e.pert_id <> q.query_pert_id
    WHERE internal.in_cell(e.cell_id, in_cell) AND internal.ranked_type(e.pert_type, of_type, shrna)
    QUALIFY rank <= k)
SELECT query_pert_id, query_pert_iname, rank, similarity, pert_id, pert_iname, pert_type,
       cell_id, moa, target
FROM hits
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.scope_errors(in_cell, of_type, shrna)
ORDER BY query_pert_id, rank;

-- The perturbagen-level z-score baseline: the same question on mean MODZ z-score profiles
-- (perturbagen_zscores), by cosine similarity over the 978 landmarks.
CREATE OR REPLACE MACRO similar_zscore_perturbagens(pert, k := 20, in_cell := NULL,
                                                    of_type := NULL, shrna := 'gene') AS TABLE
WITH named AS (SELECT * FROM resolve_perturbagen(pert)),
found AS (
    SELECT n.pert_id AS query_pert_id, n.pert_iname AS query_pert_iname, z.zscores AS query_vec
    FROM named n JOIN perturbagen_zscores z ON z.pert_id = n.pert_id
    WHERE internal.in_cell(z.cell_id, in_cell)
      AND (n.matched_by = 'pert_id' OR internal.ranked_type(n.pert_type, NULL, shrna))),
queries AS (
    SELECT * FROM found
    UNION ALL
    SELECT NULL, NULL,
           error('''' || pert || ''' has no z-score signatures '
                 || CASE WHEN in_cell IS NULL THEN 'over all cell lines'
                         ELSE 'in cell line ' || internal.cell_line(in_cell) END
                 || '; its cell lines: '
                 || coalesce((SELECT string_agg(DISTINCT z.cell_id, ', ' ORDER BY z.cell_id)
                              FROM named n JOIN perturbagen_zscores z USING (pert_id)),
                             'none (materialize zscore_signatures and warehouse)'))
    WHERE NOT EXISTS (SELECT 1 FROM found)),
hits AS (
    SELECT q.query_pert_id, q.query_pert_iname, z.pert_id, z.pert_iname, z.pert_type,
           z.cell_id, z.moa, z.target,
           array_cosine_similarity(z.zscores, q.query_vec) AS similarity,
           row_number() OVER (PARTITION BY q.query_pert_id
                              ORDER BY array_cosine_similarity(z.zscores, q.query_vec) DESC,
                                       z.pert_id) AS rank
    FROM queries q JOIN perturbagen_zscores z ON z.pert_id <> q.query_pert_id
    WHERE internal.in_cell(z.cell_id, in_cell) AND internal.ranked_type(z.pert_type, of_type, shrna)
    QUALIFY rank <= k)
SELECT query_pert_id, query_pert_iname, rank, similarity, pert_id, pert_iname, pert_type,
       cell_id, moa, target
FROM hits
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.scope_errors(in_cell, of_type, shrna)
ORDER BY query_pert_id, rank;

-- ---------------------------------------------------------------------------------------
-- Signatures
-- ---------------------------------------------------------------------------------------

-- Whether a signature is the one a name means: its sig_id in any case, or
-- 'cell:perturbagen:dose:time' with the perturbagen by pert_id or pert_iname and the dose
-- and time in any spelling of their units ('a549:vorinostat:10 uM:24 h'). The name comes
-- split once (internal.signature_name), so each row costs a few comparisons.
CREATE OR REPLACE MACRO internal.signature_name(sig) AS
    {'whole': lower(trim(sig)), 'parts': list_transform(string_split(sig, ':'), lambda x: trim(x))};

CREATE OR REPLACE MACRO internal.is_signature(name, sig_id, cell_id, pert_id, pert_iname,
                                              pert_dose, pert_dose_unit, pert_time,
                                              pert_time_unit) AS
    lower(sig_id) = name.whole
    OR (len(name.parts) = 4
        AND lower(cell_id) = lower(name.parts[1])
        AND lower(name.parts[2]) IN (lower(pert_id), lower(pert_iname))
        AND internal.quantity_matches(name.parts[3], pert_dose, pert_dose_unit, 'at_dose')
        AND internal.quantity_matches(name.parts[4], pert_time, pert_time_unit, 'at_time'));

-- The signatures of a perturbagen (pert_id or pert_iname, any case), optionally in one cell
-- line, at one dose and time (numbers, or text with units: '10uM', '10 µM', '24 h').
CREATE OR REPLACE MACRO find_signatures(pert, in_cell := NULL, at_dose := NULL,
                                        at_time := NULL) AS TABLE
WITH named AS (SELECT * FROM resolve_perturbagen(pert))
SELECT s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id, s.pert_dose,
       s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates, s.moa, s.target
FROM signature_embeddings s JOIN named n USING (pert_id)
WHERE (in_cell IS NULL OR internal.in_cell(s.cell_id, in_cell))
  AND internal.quantity_matches(at_dose, s.pert_dose, s.pert_dose_unit, 'at_dose')
  AND internal.quantity_matches(at_time, s.pert_time, s.pert_time_unit, 'at_time')
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.scope_errors(in_cell, NULL, NULL)
ORDER BY cell_id, pert_id, pert_dose, pert_time;

-- The error for a signature not found, with the closest sig_ids (the named perturbagen's
-- and cell line's first).
CREATE OR REPLACE MACRO internal.no_signature(sig) AS
    error(CASE WHEN sig IS NULL THEN 'signature is NULL'
               ELSE 'no signature ''' || sig || ''' (cell:perturbagen:dose:time, e.g. '
                    || coalesce((SELECT min(sig_id) FROM signature_embeddings), 'A549:BRD-K12345:10µM:24h')
                    || '; find_signatures(pert) lists a perturbagen''s); closest: '
                    || coalesce((SELECT string_agg(sig_id, ', ' ORDER BY score DESC, sig_id)
                                 FROM (SELECT sig_id,
                                              jaro_winkler_similarity(lower(sig_id), lower(trim(sig)))
                                              + CASE WHEN lower(trim(string_split(sig, ':')[2]))
                                                          IN (lower(pert_id), lower(pert_iname))
                                                     THEN 1 ELSE 0 END
                                              + CASE WHEN lower(trim(string_split(sig, ':')[1]))
                                                          = lower(cell_id) THEN 0.5 ELSE 0 END
                                                  AS score
                                       FROM signature_embeddings ORDER BY score DESC, sig_id LIMIT 3)),
                                'none') END);

-- Top k signatures nearest to a vector (a plain list, as for nearest_to).
CREATE OR REPLACE MACRO nearest_signatures(vec, k := 20, in_cell := NULL, of_type := NULL,
                                           at_dose := NULL, at_time := NULL) AS TABLE
WITH hits AS (
    SELECT s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id, s.pert_dose,
           s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates, s.moa, s.target,
           list_inner_product(s.embedding, vec::FLOAT[]) AS similarity
    FROM signature_embeddings s
    WHERE (in_cell IS NULL OR internal.in_cell(s.cell_id, in_cell))
      AND internal.ranked_type(s.pert_type, of_type, 'hairpin')
      AND internal.quantity_matches(at_dose, s.pert_dose, s.pert_dose_unit, 'at_dose')
      AND internal.quantity_matches(at_time, s.pert_time, s.pert_time_unit, 'at_time')
    ORDER BY similarity DESC
    LIMIT k)
SELECT row_number() OVER (ORDER BY similarity DESC, sig_id) AS rank, similarity,
       * EXCLUDE (similarity)
FROM hits
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.query_vector(vec, (SELECT len(embedding) FROM signature_embeddings LIMIT 1))
          IS NULL
   OR internal.scope_errors(in_cell, of_type, 'hairpin')
ORDER BY rank;

-- Top k signatures most like a signature (internal.is_signature: its sig_id in any case, or
-- cell:perturbagen:dose:time in any spelling), itself left out.
CREATE OR REPLACE MACRO similar_signatures(sig, k := 20, in_cell := NULL, of_type := NULL,
                                           at_dose := NULL, at_time := NULL) AS TABLE
WITH named AS (SELECT internal.signature_name(sig) AS name),
found AS (
    SELECT s.sig_id AS query_sig_id, s.embedding AS query_vec FROM signature_embeddings s, named n
    WHERE internal.is_signature(n.name, s.sig_id, s.cell_id, s.pert_id, s.pert_iname,
                                s.pert_dose, s.pert_dose_unit, s.pert_time, s.pert_time_unit)),
queries AS (
    SELECT * FROM found
    UNION ALL
    SELECT NULL, internal.no_signature(sig) WHERE NOT EXISTS (SELECT 1 FROM found)),
hits AS (
    SELECT q.query_sig_id, s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id,
           s.pert_dose, s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates,
           s.moa, s.target, array_inner_product(s.embedding, q.query_vec) AS similarity,
           row_number() OVER (PARTITION BY q.query_sig_id
                              ORDER BY array_inner_product(s.embedding, q.query_vec) DESC,
                                       s.sig_id) AS rank
    FROM queries q JOIN signature_embeddings s ON s.sig_id <> q.query_sig_id
    WHERE (in_cell IS NULL OR internal.in_cell(s.cell_id, in_cell))
      AND internal.ranked_type(s.pert_type, of_type, 'hairpin')
      AND internal.quantity_matches(at_dose, s.pert_dose, s.pert_dose_unit, 'at_dose')
      AND internal.quantity_matches(at_time, s.pert_time, s.pert_time_unit, 'at_time')
    QUALIFY rank <= k)
SELECT query_sig_id, rank, similarity, * EXCLUDE (query_sig_id, rank, similarity)
FROM hits
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.scope_errors(in_cell, of_type, 'hairpin')
ORDER BY query_sig_id, rank;

-- The baseline: the same query on MODZ z-score signatures, by cosine similarity of the 978
-- landmark z-scores.
CREATE OR REPLACE MACRO similar_zscore_signatures(sig, k := 20, in_cell := NULL,
                                                  of_type := NULL, at_dose := NULL,
                                                  at_time := NULL) AS TABLE
WITH named AS (SELECT internal.signature_name(sig) AS name),
found AS (
    SELECT s.sig_id AS query_sig_id, s.signature AS query_vec FROM zscore_signatures s, named n
    WHERE internal.is_signature(n.name, s.sig_id, s.cell_id, s.pert_id, s.pert_iname,
                                s.pert_dose, s.pert_dose_unit, s.pert_time, s.pert_time_unit)),
queries AS (
    SELECT * FROM found
    UNION ALL
    SELECT NULL, internal.no_signature(sig) WHERE NOT EXISTS (SELECT 1 FROM found)),
hits AS (
    SELECT q.query_sig_id, s.sig_id, s.pert_id, s.pert_iname, s.pert_type, s.cell_id,
           s.pert_dose, s.pert_dose_unit, s.pert_time, s.pert_time_unit, s.n_replicates,
           array_cosine_similarity(s.signature, q.query_vec) AS similarity,
           row_number() OVER (PARTITION BY q.query_sig_id
                              ORDER BY array_cosine_similarity(s.signature, q.query_vec) DESC,
                                       s.sig_id) AS rank
    FROM queries q JOIN zscore_signatures s ON s.sig_id <> q.query_sig_id
    WHERE (in_cell IS NULL OR internal.in_cell(s.cell_id, in_cell))
      AND internal.ranked_type(s.pert_type, of_type, 'hairpin')
      AND internal.quantity_matches(at_dose, s.pert_dose, s.pert_dose_unit, 'at_dose')
      AND internal.quantity_matches(at_time, s.pert_time, s.pert_time_unit, 'at_time')
    QUALIFY rank <= k)
SELECT h.query_sig_id, h.rank, h.similarity,
       h.* EXCLUDE (query_sig_id, rank, similarity), a.moa, a.target
FROM hits h LEFT JOIN perturbagen_annotations a USING (pert_id)
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
WHERE internal.scope_errors(in_cell, of_type, 'hairpin')
ORDER BY query_sig_id, rank;

-- ---------------------------------------------------------------------------------------
-- MOA enrichment
-- ---------------------------------------------------------------------------------------

-- log C(n, r) and the hypergeometric upper tail P(X >= x) for x successes in n draws from
-- total items of which k are successes.
CREATE OR REPLACE MACRO internal.log_choose(n, r) AS
    lgamma(n + 1) - lgamma(r + 1) - lgamma(n - r + 1);

CREATE OR REPLACE MACRO internal.hypergeometric_sf(x, n, k, total) AS (
    SELECT least(1.0, coalesce(sum(exp(internal.log_choose(k, i)
                                       + internal.log_choose(total - k, n - i)
                                       - internal.log_choose(total, n))), 0.0))
    FROM range(x, least(n, k) + 1) AS r(i)
    WHERE n - i <= total - k);

-- Which MOAs are over-represented among a perturbagen's top k neighbours: for each MOA in
-- the hits, how many hits have it (n_hits_moa of n_hits), how many candidates have it
-- (n_moa of n_candidates: every perturbagen of the same scope and type but the query),
-- the fold enrichment and the hypergeometric p-value P(X >= n_hits_moa).
CREATE OR REPLACE MACRO moa_enrichment(pert, k := 50, in_cell := NULL, of_type := NULL,
                                       shrna := 'gene') AS TABLE
WITH hits AS (
    SELECT query_pert_id, query_pert_iname, pert_id
    FROM similar_perturbagens(pert, k := k, in_cell := in_cell, of_type := of_type,
                              shrna := shrna)),
candidates AS (
    SELECT q.query_pert_id, e.pert_id
    FROM (SELECT DISTINCT query_pert_id FROM hits) q JOIN perturbagen_embeddings e
      ON e.pert_id <> q.query_pert_id
    WHERE internal.in_cell(e.cell_id, in_cell) AND internal.ranked_type(e.pert_type, of_type, shrna)),
sizes AS (
    SELECT c.query_pert_id, count(*) AS n_candidates,
           (SELECT count(*) FROM hits h WHERE h.query_pert_id = c.query_pert_id) AS n_hits
    FROM candidates c GROUP BY c.query_pert_id),
hit_moas AS (
    SELECT h.query_pert_id, any_value(h.query_pert_iname) AS query_pert_iname, m.moa,
           count(*) AS n_hits_moa
    FROM hits h JOIN perturbagen_moas m USING (pert_id) GROUP BY h.query_pert_id, m.moa),
candidate_moas AS (
    SELECT c.query_pert_id, m.moa, count(*) AS n_moa
    FROM candidates c JOIN perturbagen_moas m USING (pert_id) GROUP BY ALL)
SELECT h.query_pert_id, h.query_pert_iname, h.moa, h.n_hits_moa, s.n_hits, c.n_moa,
       s.n_candidates,
       h.n_hits_moa / (s.n_hits * c.n_moa / s.n_candidates) AS fold_enrichment,
       internal.hypergeometric_sf(h.n_hits_moa, s.n_hits, c.n_moa, s.n_candidates) AS p_value
FROM hit_moas h
JOIN candidate_moas c USING (query_pert_id, moa)
JOIN sizes s USING (query_pert_id)
ORDER BY h.query_pert_id, p_value, fold_enrichment DESC, h.moa;

-- ---------------------------------------------------------------------------------------
-- The user's own profiles (read_across_results asset)
-- ---------------------------------------------------------------------------------------

-- The ranked perturbagens of every query profile, and each profile's embedding, gene
-- coverage, input platform, transform, imputed landmarks and warnings.
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
-- moa_enrichment; candidates: the perturbagens of the scope the query was ranked in, each
-- shRNA on its own as read-across ranks them).
CREATE OR REPLACE VIEW read_across_moa_enrichment AS
WITH hits AS (
    SELECT query_path, query_file, query_id, cell_id, pert_id FROM read_across_results),
queries AS (
    SELECT query_path, query_file, query_id, any_value(cell_id) AS cell_id,
           count(*) AS n_hits
    FROM hits GROUP BY query_path, query_file, query_id),
scopes AS (
    SELECT DISTINCT cell_id FROM queries),
candidates AS (
    SELECT s.cell_id, e.pert_id
    FROM scopes s JOIN perturbagen_embeddings e ON e.cell_id IS NOT DISTINCT FROM s.cell_id
    WHERE e.pert_type IS DISTINCT FROM 'trt_sh.cgs'),
candidate_moas AS (
    SELECT c.cell_id, m.moa, count(*) AS n_moa
    FROM candidates c JOIN perturbagen_moas m USING (pert_id)
    GROUP BY ALL),
scope_sizes AS (
    SELECT cell_id, count(*) AS n_candidates FROM candidates GROUP BY ALL),
hit_moas AS (
    SELECT h.query_path, h.query_id, m.moa, count(*) AS n_hits_moa
    FROM hits h JOIN perturbagen_moas m USING (pert_id) GROUP BY ALL)
SELECT q.query_file, q.query_path, q.query_id, h.moa, h.n_hits_moa, q.n_hits, c.n_moa,
       z.n_candidates,
       h.n_hits_moa / (q.n_hits * c.n_moa / z.n_candidates) AS fold_enrichment,
       internal.hypergeometric_sf(h.n_hits_moa, q.n_hits, c.n_moa, z.n_candidates) AS p_value
FROM hit_moas h
JOIN queries q USING (query_path, query_id)
JOIN candidate_moas c ON c.cell_id IS NOT DISTINCT FROM q.cell_id AND c.moa = h.moa
JOIN scope_sizes z ON z.cell_id IS NOT DISTINCT FROM q.cell_id
ORDER BY q.query_file, q.query_id, p_value, fold_enrichment DESC, h.moa;

-- ---------------------------------------------------------------------------------------
-- Comments
-- ---------------------------------------------------------------------------------------
COMMENT ON MACRO TABLE resolve_perturbagen IS 'resolve_perturbagen(name): the perturbagens a pert_id or pert_iname (any case) means, with matched_by; an unknown name is an error listing the closest known ones.';
COMMENT ON MACRO TABLE nearest_to IS 'nearest_to(vec, k := 20, in_cell, of_type, shrna := ''gene''): the k perturbagens nearest a vector (a plain list of numbers of the embedding width; NULL is refused).';
COMMENT ON MACRO TABLE similar_perturbagens IS 'similar_perturbagens(pert, k := 20, in_cell, of_type, shrna := ''gene''): the k perturbagens most like a perturbagen (pert_id or name, any case) by embedding cosine; shRNAs collapsed to their gene (trt_sh.cgs) unless shrna := ''hairpin''.';
COMMENT ON MACRO TABLE similar_zscore_perturbagens IS 'similar_zscore_perturbagens(pert, k := 20, in_cell, of_type, shrna := ''gene''): the perturbagen-level z-score baseline: cosine of mean MODZ signatures (perturbagen_zscores).';
COMMENT ON MACRO TABLE find_signatures IS 'find_signatures(pert, in_cell, at_dose, at_time): the signatures of a perturbagen (pert_id or name, any case), doses and times in any spelling of their units (10, ''10uM'', ''10 µM''; ''24h'', ''24 h'').';
COMMENT ON MACRO TABLE nearest_signatures IS 'nearest_signatures(vec, k := 20, in_cell, of_type, at_dose, at_time): the k signatures nearest a vector (a plain list of numbers).';
COMMENT ON MACRO TABLE similar_signatures IS 'similar_signatures(sig, k := 20, in_cell, of_type, at_dose, at_time): the k signatures most like one; sig is a sig_id in any case or cell:perturbagen:dose:time in any spelling (''a549:vorinostat:10 uM:24 h'').';
COMMENT ON MACRO TABLE similar_zscore_signatures IS 'similar_zscore_signatures(sig, k := 20, ...): the signature-level z-score baseline (MODZ cosine over the 978 landmarks).';
COMMENT ON MACRO TABLE moa_enrichment IS 'moa_enrichment(pert, k := 50, in_cell, of_type, shrna := ''gene''): MOAs over-represented among a perturbagen''s top k neighbours: counts, fold enrichment, hypergeometric p-value.';
COMMENT ON VIEW read_across_results IS 'Your query files ranked (read_across_results asset): one row per query profile and hit, rank 1 = most similar.';
COMMENT ON VIEW read_across_queries IS 'Each query profile: its embedding, the landmark genes used and those missing (set to 0).';
COMMENT ON VIEW read_across_moa_enrichment IS 'MOAs over-represented among each query profile''s hits (as moa_enrichment, candidates in the scope it was ranked in).';
COMMENT ON MACRO internal.closest_perturbagens IS 'Internal: the five perturbagens closest to a name, for error messages.';
COMMENT ON MACRO internal.cell_line IS 'Internal: a cell line in any case, or an error listing the cell lines.';
COMMENT ON MACRO internal.shrna_mode IS 'Internal: the shrna option checked (gene or hairpin).';
COMMENT ON MACRO internal.pert_type IS 'Internal: a pert_type in any case (trt_sh means trt_sh.cgs when collapsed), or an error listing the types.';
COMMENT ON MACRO internal.in_cell IS 'Internal: whether a row is in the cell line asked (NULL: over all cell lines), any case.';
COMMENT ON MACRO internal.ranked_type IS 'Internal: whether a candidate''s type is ranked.';
COMMENT ON MACRO internal.scope_errors IS 'Internal: false, or the error for an unknown cell line, type or shrna option.';
COMMENT ON MACRO internal.query_vector IS 'Internal: a query vector as FLOAT[], refusing NULL and wrong lengths.';
COMMENT ON MACRO TABLE internal.perturbagen_queries IS 'Internal: the embeddings a perturbagen name stands for in one scope.';
COMMENT ON MACRO internal.signature_name IS 'Internal: a signature name split once.';
COMMENT ON MACRO internal.is_signature IS 'Internal: whether a signature is the one a sig_id or cell:perturbagen:dose:time names.';
COMMENT ON MACRO internal.no_signature IS 'Internal: the error for a signature not found, with the closest sig_ids.';
COMMENT ON MACRO internal.log_choose IS 'Internal: log C(n, r).';
COMMENT ON MACRO internal.hypergeometric_sf IS 'Internal: the hypergeometric upper tail P(X >= x).';

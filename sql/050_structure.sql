-- Chemical structure: the compound_fingerprints asset's ECFP4 fingerprints (RDKit Morgan,
-- radius 2, 2,048 bits; a 256-byte BLOB each) as a table, Tanimoto as a scalar macro and
-- the structurally most similar compounds as a table macro. MOA and target are joined from
-- perturbagen_annotations (020) once, here. The table is created empty when the asset has
-- not run yet, so the macros always bind.

CREATE OR REPLACE TABLE compound_fingerprints AS
SELECT f.pert_id, f.pert_iname, f.canonical_smiles, f.inchi_key, f.release, f.n_bits_on,
       a.moa, a.target, f.ecfp4
FROM read_parquet({{lake}} || '/structure/compound_fingerprints.parquet') f
LEFT JOIN perturbagen_annotations a USING (pert_id);

CREATE TABLE IF NOT EXISTS compound_fingerprints (
    pert_id VARCHAR, pert_iname VARCHAR, canonical_smiles VARCHAR, inchi_key VARCHAR,
    release VARCHAR, n_bits_on INTEGER, moa VARCHAR, target VARCHAR, ecfp4 BLOB);

-- Tanimoto similarity of two fingerprints (BLOBs of equal length): |a & b| / |a | b|;
-- 0 when both are empty.
CREATE OR REPLACE MACRO tanimoto(a, b) AS
    coalesce(bit_count(a::BIT & b::BIT)
             / nullif(bit_count(a::BIT) + bit_count(b::BIT) - bit_count(a::BIT & b::BIT), 0),
             0.0);

-- The k compounds structurally most similar to a compound (its pert_id or pert_iname: one
-- result set per matching pert_id, told apart by query_pert_id), the query left out;
-- min_tanimoto drops weaker hits. Example:
--   con.execute("SELECT * FROM similar_structures(?, k := ?)", ["vorinostat", 10])
CREATE OR REPLACE MACRO similar_structures(pert, k := 20, min_tanimoto := 0.0) AS TABLE
WITH queries AS (
    SELECT pert_id AS query_pert_id, ecfp4 AS query_fp
    FROM compound_fingerprints
    WHERE pert_id = pert OR pert_iname = pert),
hits AS (
    SELECT q.query_pert_id, c.pert_id, c.pert_iname, c.moa, c.target, c.canonical_smiles,
           tanimoto(q.query_fp, c.ecfp4) AS tanimoto,
           row_number() OVER (PARTITION BY q.query_pert_id
                              ORDER BY tanimoto(q.query_fp, c.ecfp4) DESC, c.pert_id) AS rank
    FROM queries q JOIN compound_fingerprints c ON c.pert_id <> q.query_pert_id
    WHERE tanimoto(q.query_fp, c.ecfp4) >= min_tanimoto
    QUALIFY rank <= k)
SELECT query_pert_id, rank, tanimoto, pert_id, pert_iname, moa, target, canonical_smiles
FROM hits
ORDER BY query_pert_id, rank;

COMMENT ON TABLE compound_fingerprints IS 'ECFP4 fingerprints (RDKit Morgan radius 2, 2,048 bits, bit-packed) of every compound with a SMILES (compound_fingerprints asset).';
COMMENT ON MACRO tanimoto IS 'Tanimoto similarity of two bit-packed ECFP4 fingerprints (BLOB), in [0, 1].';
COMMENT ON MACRO TABLE similar_structures IS 'The k compounds structurally most like pert (pert_id or name, any case) by ECFP4 Tanimoto, at least min_tanimoto.';

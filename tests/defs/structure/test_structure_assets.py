"""compound_fingerprints on the synthetic release's lake, and the catalog's structure macros
against numpy."""

import numpy as np

from l1000_assets.core.catalog.build import build_catalog, connect_read_only
from l1000_assets.core.structure.fingerprints import ecfp4
from l1000_assets.core.structure.table import read_fingerprints
from l1000_assets.core.structure.tanimoto import tanimoto
from l1000_assets.lib.resources import LakeResource
from tests.conftest import REPO


def test_fingerprints_of_every_compound_and_the_sql_macros(lake_graph, tmp_path):
    result = lake_graph.run(["compound_fingerprints"])
    assert result.success
    mat = result.asset_materializations_for_node("compound_fingerprints")[0]
    assert mat.metadata["synthetic"].value is True
    assert mat.metadata["synthetic_releases"].value == "synthetic"
    lake = LakeResource(root=str(lake_graph.root))
    meta, packed = read_fingerprints(lake.compound_fingerprints_path)
    perts = lake_graph.root / "releases" / "synthetic" / "SYNTH_Broad_LINCS_pert_info.txt"
    import pandas as pd

    info = pd.read_csv(perts, sep="\t", dtype=str)
    with_smiles = info[info["canonical_smiles"] != "-666"]
    assert set(meta["pert_id"]) == set(with_smiles["pert_id"])  # DMSO included
    assert mat.metadata["dagster/row_count"].value == len(meta)
    smiles = with_smiles.set_index("pert_id").loc[meta["pert_id"], "canonical_smiles"]
    np.testing.assert_array_equal(packed, ecfp4(smiles.tolist()).packed)

    db = tmp_path / "c.duckdb"
    report = build_catalog(db, REPO / "sql", lake_graph.root / "lake")
    assert not [h for h in report.skipped if "compound_fingerprints" in h]
    cp = meta.index[meta["pert_id"].str.startswith("BRD-")][0]
    query = meta["pert_id"][cp]
    sim = tanimoto(packed[cp : cp + 1], packed)[0]
    sim[cp] = -1
    order = sorted(range(len(sim)), key=lambda j: (-sim[j], meta["pert_id"][j]))[:5]
    with connect_read_only(db) as con:
        rows = con.execute(
            "SELECT rank, tanimoto, pert_id, moa FROM similar_structures(?, k := ?)", [query, 5]
        ).fetchall()
        assert [r[2] for r in rows] == [meta["pert_id"][j] for j in order]
        np.testing.assert_allclose([r[1] for r in rows], sim[order], rtol=1e-6)
        by_name = con.execute(
            "SELECT pert_id FROM similar_structures(?, k := 3)", [meta["pert_iname"][cp]]
        ).fetchall()
        assert [r[0] for r in by_name] == [meta["pert_id"][j] for j in order[:3]]
        assert con.execute(
            "SELECT tanimoto(a.ecfp4, a.ecfp4) FROM compound_fingerprints a WHERE pert_id = ?",
            [query],
        ).fetchall() == [(1.0,)]
        assert con.execute(
            "SELECT count(*) FROM similar_structures(?, k := 100, min_tanimoto := 0.99)",
            [query],
        ).fetchall()[0][0] == int((sim >= 0.99).sum())

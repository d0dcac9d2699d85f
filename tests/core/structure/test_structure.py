"""ECFP4 fingerprints of known molecules, Tanimoto against slow oracles, the fingerprints
table round trip."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import AllChem

from l1000_assets.core.structure.fingerprints import N_BYTES, ecfp4
from l1000_assets.core.structure.table import (
    compound_smiles,
    read_fingerprints,
    write_fingerprints,
)
from l1000_assets.core.structure.tanimoto import (
    iter_tanimoto_blocks,
    pair_tanimoto,
    tanimoto,
    top_similar,
)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
SALICYLIC_ACID = "O=C(O)c1ccccc1O"
CAFFEINE = "Cn1c(=O)c2c(ncn2C)n(C)c1=O"


def _legacy(smiles: str):
    """RDKit's older Morgan API (another code path than the generator used in core)."""
    return AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smiles), 2, nBits=2048)


def test_aspirin_and_salicylic_acid():
    """Bit counts and Tanimoto of two known molecules, checked against RDKit's legacy
    Morgan API and against the number of distinct radius-2 environments (unfolded)."""
    fps = ecfp4([ASPIRIN, SALICYLIC_ACID, CAFFEINE])
    assert fps.packed.shape == (3, N_BYTES) and fps.valid.all()
    legacy = [_legacy(s) for s in (ASPIRIN, SALICYLIC_ACID, CAFFEINE)]
    assert fps.n_on.tolist() == [f.GetNumOnBits() for f in legacy]
    assert fps.n_on.tolist()[:2] == [24, 18]
    # Folding by hand: the distinct radius-0..2 environments (25 in aspirin, 19 in salicylic
    # acid, one pair of each colliding) modulo 2,048 are exactly the set bits.
    for k, (s, n_env) in enumerate(((ASPIRIN, 25), (SALICYLIC_ACID, 19))):
        unfolded = AllChem.GetMorganFingerprint(Chem.MolFromSmiles(s), 2).GetNonzeroElements()
        assert len(unfolded) == n_env
        folded = sorted({e % 2048 for e in unfolded})
        assert folded == list(np.nonzero(np.unpackbits(fps.packed[k]))[0])
    t = tanimoto(fps.packed, fps.packed)
    assert t[0, 1] == pytest.approx(13 / 29)  # 13 shared bits of 24 + 18 - 13
    assert t[0, 1] == pytest.approx(DataStructs.TanimotoSimilarity(legacy[0], legacy[1]))
    assert t[0, 2] == pytest.approx(DataStructs.TanimotoSimilarity(legacy[0], legacy[2]))
    np.testing.assert_allclose(np.diag(t), 1.0)
    # The packed bits are RDKit's, bit 0 first.
    bits = np.unpackbits(fps.packed[0])
    assert list(np.nonzero(bits)[0]) == list(legacy[0].GetOnBits())


def test_unreadable_smiles_are_not_valid():
    fps = ecfp4([ASPIRIN, "not a smiles", None, "", "-666"])
    assert fps.valid.tolist() == [True, False, False, False, False]
    assert (fps.packed[1:] == 0).all()
    assert tanimoto(fps.packed[1:2], fps.packed[1:2])[0, 0] == 0.0  # two empty: 0


def _random_fps(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bits = rng.random((n, 2048)) < rng.uniform(0.005, 0.05, (n, 1))
    return np.packbits(bits, axis=1)


def _oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto with Python integers' popcount, one pair at a time."""
    ints_a = [int.from_bytes(r.tobytes(), "big") for r in a]
    ints_b = [int.from_bytes(r.tobytes(), "big") for r in b]
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(ints_a):
        for j, y in enumerate(ints_b):
            union = (x | y).bit_count()
            out[i, j] = (x & y).bit_count() / union if union else 0.0
    return out


def test_blocked_tanimoto_equals_the_oracle():
    a, b = _random_fps(23, 1), _random_fps(41, 2)
    expected = _oracle(a, b)
    np.testing.assert_allclose(tanimoto(a, b), expected, rtol=1e-6)
    got = np.full(expected.shape, np.nan)
    for qs, cs, block in iter_tanimoto_blocks(a, b, query_block=5, candidate_block=7):
        got[qs, cs] = block
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    i, j = np.array([0, 3, 22]), np.array([40, 0, 7])
    both = np.concatenate([a, b])
    np.testing.assert_allclose(
        pair_tanimoto(both, i, j + len(a), block=2), expected[i, j], rtol=1e-6
    )


def test_top_similar_matches_a_full_sort_for_any_block_size():
    x = _random_fps(60, 3)
    x[10] = x[11]  # a tie
    full = _oracle(x, x)
    np.fill_diagonal(full, -1)
    for qb, cb in ((60, 60), (7, 9), (1, 4)):
        nb = top_similar(x, x, 5, exclude_self=True, query_block=qb, candidate_block=cb)
        for i in range(len(x)):
            order = sorted(range(len(x)), key=lambda j: (-full[i, j], j))[:5]
            assert nb.index[i].tolist() == order
            np.testing.assert_allclose(nb.similarity[i], full[i, order], rtol=1e-6)
    few = top_similar(x[:3], x[:2], 4)
    assert (few.index[:, 2:] == -1).all() and np.isnan(few.similarity[:, 2:]).all()


def test_fingerprint_table_round_trip(tmp_path):
    import pandas as pd

    a = pd.DataFrame(
        {
            "pert_id": ["BRD-A", "BRD-B", "BRD-C", "DMSO"],
            "pert_iname": ["aspirin", "broken", "caffeine", "DMSO"],
            "canonical_smiles": [ASPIRIN, "xx(", CAFFEINE, "-666"],
            "pert_type": ["trt_cp"] * 3 + ["ctl_vehicle"],
        }
    )
    b = pd.DataFrame({"pert_id": ["BRD-A", "BRD-D"], "smiles": [CAFFEINE, SALICYLIC_ACID]})
    per_release = {"r2": compound_smiles(b, "r2"), "r1": compound_smiles(a, "r1")}
    table, n_invalid = write_fingerprints(per_release, tmp_path / "fp.parquet")
    assert n_invalid == 1
    meta, packed = read_fingerprints(tmp_path / "fp.parquet")
    assert meta["pert_id"].tolist() == ["BRD-A", "BRD-C", "BRD-D"]
    assert meta.set_index("pert_id").loc["BRD-A", "release"] == "r1"  # first release wins
    np.testing.assert_array_equal(packed, ecfp4([ASPIRIN, CAFFEINE, SALICYLIC_ACID]).packed)
    assert pq.read_schema(tmp_path / "fp.parquet").field("ecfp4").type.byte_width == 256
    assert compound_smiles(pd.DataFrame({"pert_id": ["x"]}), "r").empty

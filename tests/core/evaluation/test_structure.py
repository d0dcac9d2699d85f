"""Drug-level retrieval with shared annotations, Tanimoto and the combo, and the breakdown by
structural similarity, against direct implementations."""

import numpy as np
import pytest

from l1000_assets.core.evaluation.structure import (
    annotation_sets,
    breakdown_by_structure,
    combo_scores,
    cosine_scores,
    drug_level_quantiles,
    method_scores,
    tanimoto_scores,
)
from l1000_assets.core.structure.tanimoto import tanimoto


def _direct(sim: np.ndarray, sets) -> list[tuple[int, int, float]]:
    """(query, positive, q) by definition, one pair at a time."""
    out = []
    n = len(sets)
    for i in range(n):
        if not sets[i]:
            continue
        pos = [j for j in range(n) if j != i and sets[j] and sets[i] & sets[j]]
        neg = [j for j in range(n) if j != i and sets[j] and not sets[i] & sets[j]]
        if not pos or not neg:
            continue
        for j in pos:
            greater = sum(sim[i, k] > sim[i, j] for k in neg)
            equal = sum(sim[i, k] == sim[i, j] for k in neg)
            out.append((i, j, (greater + 0.5 * equal) / len(neg)))
    return out


def test_annotation_sets():
    sets = annotation_sets(["HDAC1|HDAC2", None, "-666", "", float("nan"), " MTOR "])
    assert sets == [
        frozenset({"HDAC1", "HDAC2"}),
        frozenset(),
        frozenset(),
        frozenset(),
        frozenset(),
        frozenset({"MTOR"}),
    ]


def test_shared_annotation_quantiles_match_the_definition():
    rng = np.random.default_rng(0)
    n = 40
    labels = ["A", "B", "C", "A|B", "D", None, "C|E", "E"]
    values = [labels[i] for i in rng.integers(0, len(labels), n)]
    sets = annotation_sets(values)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[5] = x[7]  # a tie
    scores = cosine_scores(x)
    sim = scores(slice(0, n))
    result = drug_level_quantiles(scores, sets, block_size=7)
    expected = _direct(sim, sets)
    got = sorted(zip(result.query.tolist(), result.positive.tolist(), result.quantiles))
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in sorted(expected)]
    np.testing.assert_allclose([q for *_, q in got], [q for *_, q in sorted(expected)])
    assert result.n_queries == len({i for i, _, _ in expected})
    s = result.summary()
    assert s.n_positives == len(expected)
    assert s["auc"] == pytest.approx(1 - np.mean([q for *_, q in expected]))


def test_tanimoto_and_combo_methods():
    rng = np.random.default_rng(1)
    packed = np.packbits(rng.random((12, 2048)) < 0.03, axis=1)
    x = rng.normal(size=(12, 4)).astype(np.float32)
    rows = slice(2, 5)
    np.testing.assert_allclose(tanimoto_scores(packed)(rows), tanimoto(packed[rows], packed))
    cos = cosine_scores(x)(rows)
    np.testing.assert_allclose(
        combo_scores(x, packed)(rows), 0.5 * (cos + tanimoto(packed[rows], packed)), rtol=1e-6
    )
    np.testing.assert_allclose(method_scores("embedding", x, None)(rows), cos)
    with pytest.raises(ValueError, match="combo needs"):
        method_scores("combo", x, None)


def test_breakdown_by_structure_bins_each_positive_once():
    rng = np.random.default_rng(2)
    n = 30
    packed = np.packbits(rng.random((n, 2048)) < 0.05, axis=1)
    packed[3] = packed[0]  # identical structures: Tanimoto 1, in the last (closed) bin
    sets = annotation_sets([["X", "Y", "X|Y"][i % 3] for i in range(n)])
    result = drug_level_quantiles(tanimoto_scores(packed), sets)
    table = breakdown_by_structure(result, packed, bins=(0.0, 0.1, 0.5, 1.0))
    assert table["tanimoto_bin"].tolist() == ["[0, 0.1)", "[0.1, 0.5)", "[0.5, 1]"]
    assert table["n_positives"].sum() == len(result.quantiles)
    assert table.loc[2, "n_positives"] >= 2  # (0, 3) and (3, 0)
    pair = tanimoto(packed, packed)[result.query, result.positive]
    low = pair < 0.1
    assert table.loc[0, "auc"] == pytest.approx(1 - result.quantiles[low].mean())

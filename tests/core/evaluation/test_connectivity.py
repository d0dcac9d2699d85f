"""CMap connectivity (ES, WTCS, NCS, tau) against hand-worked cases and a direct,
loop-by-loop transcription of the formulas."""

import numpy as np
import pytest

from l1000_assets.core.evaluation.connectivity import (
    DEFAULT_K,
    enrichment_scores,
    iter_wtcs_blocks,
    ncs,
    query_sets,
    rank_profiles,
    tau,
    wtcs,
    wtcs_from_es,
)
from l1000_assets.core.evaluation.kernels import ES_TIE_TOLERANCE

# ------------------------------------------------------------------ direct transcription


def slow_es(z, genes, p=1.0):
    """Walk the candidate's whole ranked list, one gene at a time (pure Python)."""
    n = len(z)
    ranked = sorted(range(n), key=lambda g: (-float(z[g]), g))  # descending z, ties by index
    hits = set(int(g) for g in genes)
    weight = {g: abs(float(z[g])) ** p for g in hits}
    total = sum(weight.values())
    if total == 0:  # documented fallback: equal weights
        weight = {g: 1.0 for g in hits}
        total = float(len(hits))
    running, path = 0.0, []
    for g in ranked:
        if g in hits:
            running += weight[g] / total
        else:
            running -= 1.0 / (n - len(hits))
        path.append(running)
    largest, smallest = max(path), min(path)
    return largest if largest > -smallest + ES_TIE_TOLERANCE else smallest


def slow_wtcs(z, up, down, p=1.0):
    es_up, es_down = slow_es(z, up, p), slow_es(z, down, p)
    return (es_up - es_down) / 2 if es_up * es_down < 0 else 0.0


def _profiles(rng, n_rows, n_genes, ties):
    z = rng.normal(size=(n_rows, n_genes)).astype(np.float32)
    if ties:  # many equal z-scores, and zeros (zero weights)
        z = np.round(z * 2) / 2
    return z


# ------------------------------------------------------------------------- hand examples

# Genes 0..5; genes 1 and 2 tie at z = 1, so the ranking is 0, 1, 2, 3, 4, 5.
Z_HAND = np.array([2.0, 1.0, 1.0, 0.0, -1.0, -3.0], dtype=np.float32)


def test_es_worked_by_hand_with_tied_z():
    # Set {0, 2}: weights 2 and 1 of 3; N - G = 4, so a miss subtracts 1/4.
    # Walk 0 (hit) 2/3, 1 (miss) 5/12, 2 (hit) 3/4, 3 1/2, 4 1/4, 5 0  -> ES = 3/4.
    # (Had the tie put gene 2 before gene 1, the walk would reach 1 and ES would be 1.)
    assert enrichment_scores(Z_HAND[None], np.array([[0, 2]]))[0, 0] == pytest.approx(0.75)
    # Set {4, 5}: weights 1 and 3 of 4. Walk -1/4, -1/2, -3/4, -1, -3/4, 0  -> ES = -1.
    assert enrichment_scores(Z_HAND[None], np.array([[4, 5]]))[0, 0] == pytest.approx(-1.0)
    # p = 0 (unweighted KS) on {0, 2}: 1/2, 1/4, 3/4, 1/2, 1/4, 0 -> ES = 3/4.
    assert enrichment_scores(Z_HAND[None], np.array([[0, 2]]), p=0)[0, 0] == pytest.approx(0.75)
    # A tie of the two deviations returns the negative one: p = 0, N = 4, set {1, 2}:
    # walk -1/2, 0, 1/2, 0.
    assert enrichment_scores(np.array([[3.0, 2.0, 1.0, 0.0]]), np.array([[1, 2]]), p=0)[
        0, 0
    ] == pytest.approx(-0.5)
    # The order of a set's indices does not matter.
    assert enrichment_scores(Z_HAND[None], np.array([[2, 0]]))[0, 0] == pytest.approx(0.75)


def test_ties_in_z_follow_gene_index_in_ranks_and_query_sets():
    ranked = rank_profiles(np.array([[0.0, 1.0, -0.0, 1.0, -1.0]], dtype=np.float32))
    # Descending z, equal z by ascending index; -0.0 equals 0.0.
    np.testing.assert_array_equal(np.argsort(ranked.ranks[0]), [1, 3, 0, 2, 4])
    np.testing.assert_allclose(ranked.weights[0], [1, 1, 0, 0, 1])
    up, down = query_sets(np.array([[0.0, 1.0, 0.0, 1.0, -1.0, -1.0]]), k=2)
    np.testing.assert_array_equal(up, [[1, 3]])
    np.testing.assert_array_equal(down, [[4, 5]])


def test_wtcs_worked_by_hand():
    # ES_up({0, 2}) = 3/4, ES_down({4, 5}) = -1: opposite signs -> (3/4 + 1) / 2.
    score = wtcs(np.array([[0, 2]]), np.array([[4, 5]]), Z_HAND[None])
    assert score[0, 0] == pytest.approx(0.875)


def test_same_sign_es_gives_zero_wtcs():
    # Down set {1, 3}: weights 1 and 0. Walk -1/4, 3/4, 1/2, 1/2, 1/4, 0 -> ES = +3/4,
    # the same sign as ES_up({0, 2}) = +3/4, so WTCS = 0.
    es = enrichment_scores(Z_HAND[None], np.array([[0, 2], [1, 3]]))[:, 0]
    np.testing.assert_allclose(es, [0.75, 0.75], rtol=1e-6)
    assert wtcs(np.array([[0, 2]]), np.array([[1, 3]]), Z_HAND[None])[0, 0] == 0.0
    np.testing.assert_allclose(
        wtcs_from_es([0.75, 0.75, -0.5], [0.75, -0.25, 0.5]), [0.0, 0.5, -0.5]
    )


def test_query_against_itself_and_its_negation():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 60)).astype(np.float32)
    up, down = query_sets(z, k=8)
    assert up.shape == down.shape == (6, 8) and up.dtype == np.int32
    assert (np.take_along_axis(z, up, 1).min(1) > np.take_along_axis(z, down, 1).max(1)).all()
    np.testing.assert_allclose(np.diag(wtcs(up, down, z)), 1.0)  # the up set leads, down trails
    np.testing.assert_allclose(np.diag(wtcs(up, down, -z)), -1.0)
    off = wtcs(up, down, z)[~np.eye(6, dtype=bool)]
    assert (np.abs(off) < 1).all()
    assert DEFAULT_K == 150 and query_sets(rng.normal(size=(2, 978)))[0].shape == (2, 150)


# ------------------------------------------------------------ vectorized == direct formula


@pytest.mark.parametrize("p", [1.0, 0.0, 2.0])
@pytest.mark.parametrize("ties", [False, True])
def test_enrichment_scores_equal_direct_walk(p, ties):
    rng = np.random.default_rng(2)
    n, k = 30, 5
    cand = _profiles(rng, 9, n, ties)
    cand[0, :] = 0.0  # all weights zero: equal-weight fallback
    sets = np.stack([rng.choice(n, k, replace=False) for _ in range(7)])
    fast = enrichment_scores(cand, sets, p=p, candidate_block=4)
    slow = np.array([[slow_es(c, s, p) for c in cand] for s in sets])
    np.testing.assert_allclose(fast, slow, atol=2e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_wtcs_equals_direct_walk(ties):
    rng = np.random.default_rng(3)
    n, k = 30, 5
    queries = _profiles(rng, 8, n, ties)
    cand = _profiles(rng, 11, n, ties)
    up, down = query_sets(queries, k=k)
    fast = wtcs(up, down, cand)
    slow = np.array([[slow_wtcs(c, u, d) for c in cand] for u, d in zip(up, down)])
    np.testing.assert_allclose(fast, slow, atol=2e-6)
    assert fast.dtype == np.float32 and (fast != 0).any() and (fast == 0).any()
    # Up and down sets of different sizes.
    up3 = up[:, :3]
    slow3 = np.array([[slow_wtcs(c, u, d) for c in cand] for u, d in zip(up3, down)])
    np.testing.assert_allclose(wtcs(up3, down, cand), slow3, atol=2e-6)


def test_blocks_equal_full_matrix_and_ranked_input():
    rng = np.random.default_rng(4)
    queries, cand = _profiles(rng, 10, 40, False), _profiles(rng, 23, 40, True)
    up, down = query_sets(queries, k=6)
    full = wtcs(up, down, cand)
    seen = np.full(full.shape, np.nan, dtype=np.float32)
    for qs, cs, block in iter_wtcs_blocks(up, down, cand, query_block=3, candidate_block=7):
        assert block.shape == (qs.stop - qs.start, cs.stop - cs.start)
        assert np.isnan(seen[qs, cs]).all()
        seen[qs, cs] = block
    np.testing.assert_array_equal(seen, full)
    np.testing.assert_array_equal(wtcs(up, down, rank_profiles(cand), candidate_block=5), full)
    with pytest.raises(ValueError, match="max_pairs"):
        wtcs(up, down, cand, max_pairs=100)


def test_invalid_inputs_are_rejected():
    z = np.zeros((2, 10), dtype=np.float32)
    with pytest.raises(ValueError, match="repeat"):
        enrichment_scores(z, np.array([[1, 1, 2]]))
    with pytest.raises(ValueError, match="indices"):
        enrichment_scores(z, np.array([[1, 10]]))
    with pytest.raises(ValueError, match="set size"):
        enrichment_scores(z, np.arange(10)[None])
    with pytest.raises(ValueError, match="non-finite"):
        wtcs(np.array([[0]]), np.array([[1]]), np.full((1, 10), np.nan))
    with pytest.raises(ValueError, match="k must"):
        query_sets(z, k=6)


# --------------------------------------------------------------------------- NCS and tau


def test_ncs_worked_by_hand():
    scores = np.array([0.4, -0.2, 0.1, -0.6, 0.0, 0.3])
    groups = np.array(["A375|trt_cp"] * 4 + ["MCF7|trt_cp"] * 2)
    # Group A375: mean positive (0.4 + 0.1) / 2 = 0.25, mean |negative| (0.2 + 0.6) / 2 = 0.4.
    # Group MCF7: mean positive 0.3; 0 stays 0.
    np.testing.assert_allclose(ncs(scores, groups), [1.6, -0.5, 0.4, -1.5, 0.0, 1.0])
    # Per row (query) normalization, and an explicit reference shared by all rows.
    two = np.stack([scores, 2 * scores])
    np.testing.assert_allclose(ncs(two, groups), np.stack([ncs(scores, groups)] * 2))
    ref = np.array([0.5, 1.0, -0.25, 2.0])
    ref_groups = np.array(["A375|trt_cp", "A375|trt_cp", "A375|trt_cp", "PC3|trt_sh"])
    out = ncs(two, groups, reference=ref, reference_groups=ref_groups)
    np.testing.assert_allclose(out[0, :4], [0.4 / 0.75, -0.2 / 0.25, 0.1 / 0.75, -0.6 / 0.25])
    assert out[0, 4] == 0.0 and np.isnan(out[0, 5])  # MCF7 has no reference
    assert ncs(scores.astype(np.float32), groups).dtype == np.float32


def test_ncs_reference_accumulated_by_blocks_is_the_whole_reference():
    from l1000_assets.core.evaluation.connectivity import NcsReference, divide_by_group_means

    rng = np.random.default_rng(2)
    scores = rng.normal(size=(4, 30)).astype(np.float32)
    scores[:, ::7] = 0.0
    groups = rng.integers(0, 3, 30)
    whole = NcsReference(4, 3)
    whole.add(slice(None), scores, groups)
    blocks = NcsReference(4, 3)
    for cols in (slice(0, 11), slice(11, 20), slice(20, 30)):
        for rows in (slice(0, 2), slice(2, 4)):
            blocks.add(rows, scores[rows, cols], groups[cols])
    np.testing.assert_allclose(blocks.means(), whole.means(), rtol=1e-12)
    # In place on float32 scores (the retrieval path) = ncs() of the same scores.
    labels = np.array(["A375|trt_cp", "MCF7|trt_cp", "MCF7|trt_sh"])[groups]
    expected = ncs(scores, labels)
    out = scores.copy()
    assert divide_by_group_means(out, whole.means(), groups, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_tau_worked_by_hand():
    reference = np.array([-2.0, -1.0, 0.5, 1.0, 3.0, np.nan])  # |ref|: 0.5 1 1 2 3 (NaN dropped)
    got = tau(np.array([1.0, -2.5, 0.0, 5.0, 1.5, 0.5, -0.1, np.nan]), reference)
    # Strictly below: 1 -> 1 of 5, 2.5 -> 4, 5 -> 5, 1.5 -> 3, 0.5 -> 0, 0.1 -> 0.
    np.testing.assert_allclose(got, [20.0, -80.0, 0.0, 100.0, 60.0, 0.0, -0.0, np.nan])
    assert tau(np.array([[1.0]]), reference).shape == (1, 1)

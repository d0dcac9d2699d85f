"""MODZ (level 4 to level 5) against hand-worked cases and against cmapPy's agg_wt_avg."""

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.embeddings.modz import modz
from l1000_assets.core.formats import compat


def test_modz_weights_worked_by_hand():
    x1 = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    replicates = np.stack([x1, 2 * x1, x1[::-1]])
    # Spearman: r12 = 1, r13 = r23 = -1 (clipped to 0). Means 0.5, 0.5, 0 -> floor 0.01.
    signature, weights = modz(replicates)
    np.testing.assert_allclose(weights, np.array([0.5, 0.5, 0.01]) / 1.01)
    np.testing.assert_allclose(signature, weights @ replicates)
    assert weights.sum() == pytest.approx(1.0)
    # cmapPy's figures for the same replicates (its weights rounded to 4 decimals).
    _, _, raw, cmap_weights = compat.agg_wt_avg(pd.DataFrame(replicates.T))
    np.testing.assert_allclose(raw, [0.5, 0.5, 0.01])
    np.testing.assert_allclose(cmap_weights, [0.495, 0.495, 0.0099])


def test_modz_of_one_replicate_is_itself_and_ties_are_spearman():
    x = np.array([[0.5, -1.0, 2.0, 0.0]], dtype=np.float32)
    signature, weights = modz(x)
    np.testing.assert_array_equal(signature, x[0])
    assert signature.dtype == np.float32 and weights.tolist() == [1.0]
    # Two replicates: equal weights whatever their correlation; a constant replicate
    # (undefined correlation) counts as uncorrelated.
    _, w2 = modz(np.array([[1.0, 2.0, 2.0, 3.0], [3.0, 1.0, 2.0, 2.0]]))
    np.testing.assert_allclose(w2, [0.5, 0.5])
    _, w3 = modz(np.array([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 3.0], [7.0] * 4]))
    np.testing.assert_allclose(w3, np.array([0.4, 0.4, 0.01]) / 0.81)


@pytest.mark.parametrize("n_replicates", [2, 3, 4, 6, 9])
def test_modz_matches_cmappy_agg_wt_avg(n_replicates):
    """The reference implementation, through the compatibility layer: replicates sharing a
    signal, one of them anti-correlated so that the 0.01 floor is reached."""
    rng = np.random.default_rng(n_replicates)
    signal = rng.normal(size=978)
    x = signal + rng.normal(
        scale=rng.uniform(0.5, 3.0, (n_replicates, 1)), size=(n_replicates, 978)
    )
    x[-1] = -signal + rng.normal(size=978)
    signature, weights = modz(x)
    cmap_signature, upper, raw, cmap_weights = compat.agg_wt_avg(pd.DataFrame(x.T))
    # cmapPy rounds its weights to 4 decimals and applies the rounded weights.
    np.testing.assert_allclose(weights, cmap_weights.to_numpy(), rtol=0, atol=5e-5 + 1e-12)
    bound = 5e-5 * np.abs(x).sum(axis=0) + 1e-12
    assert (np.abs(signature - cmap_signature.to_numpy()) <= bound).all()
    assert len(upper) == n_replicates * (n_replicates - 1) // 2
    if n_replicates > 2:
        assert raw.iloc[-1] == 0.01 and weights[-1] == pytest.approx(0.01 / raw.sum(), abs=1e-4)

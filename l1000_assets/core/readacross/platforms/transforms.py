"""From each platform's values to level-4-like landmark z-scores.

The model was trained on CMap's level 4: for every gene, ``(x - median) / (1.4826 MAD)``
of log2 expression against the population of its plate (``ZSPCINF``), the MAD clipped at
0.1 first (cmapPy ``math.robust_zscore``, ``min_mad=0.1``). Every input kind is brought to
that scale here:

* **counts** (RNA-seq, TempO-Seq): library-size normalization (DESeq2's median-of-ratios
  size factors over every gene of the matrix, so a few strongly induced genes do not move
  them), then a variance-stabilized log2 expression: ``log2cpm`` (``log2(CPM + 1)``) or
  ``vst`` (the negative-binomial variance-stabilizing transform
  ``(2 asinh(sqrt(phi x)) - ln(4 phi)) / ln 2`` with one dispersion ``phi`` estimated
  from the control samples by moments; it tends to ``log2 x`` for large counts and
  flattens at low counts, where Poisson noise dominates), then the robust z-score of
  every sample against the control samples of its batch (their median; the MAD pooled over
  every batch's controls by default, see ``inputs.PlatformOptions.control_spread``);
* **level-3 plates** (log2 expression): :func:`robust_zscore` against the plate population
  (CMap's default) or against the plate's vehicle controls;
* **DE tables**: the statistic column when there is one (a Wald or moderated t statistic:
  the fold change in units of its own noise, as a z-score is), else the log2 fold change
  divided by its robust spread over the genes of the table.

Optionally, :func:`quantile_map` maps a profile's values onto the distribution of the
lake's level-4 z-scores (rank for rank), which removes any remaining difference of scale.
The defaults (:data:`DEFAULT_COUNT_TRANSFORM`, :data:`DEFAULT_SCALE`) are the ones that
ranked the true perturbagen best on the validation (``benchmarks/platforms.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

MAD_SCALE = 1.4826
CMAP_MIN_MAD = 0.1  # cmapPy math.robust_zscore: MADs are clipped here before scaling
COUNT_TRANSFORMS = ("log2cpm", "vst")
SCALES = ("none", "quantile")
DEFAULT_COUNT_TRANSFORM = "vst"
DEFAULT_SCALE = "none"


def size_factors(counts: NDArray[np.floating]) -> NDArray[np.float64]:
    """DESeq2's median-of-ratios size factors of ``counts`` (genes x samples).

    Genes with a zero in any sample are left out of the geometric means; with fewer than
    10 such genes the factors fall back to library sizes (scaled to a geometric mean of 1).
    """
    x = np.asarray(counts, np.float64)
    positive = (x > 0).all(axis=1)
    if positive.sum() >= 10:
        logs = np.log(x[positive])
        ratios = logs - logs.mean(axis=1, keepdims=True)
        factors = np.exp(np.median(ratios, axis=0))
    else:
        totals = np.maximum(x.sum(axis=0), 1.0)
        factors = totals / np.exp(np.log(totals).mean())
    return factors


def normalized_counts(counts: NDArray[np.floating]) -> NDArray[np.float64]:
    """Counts divided by their size factors, scaled to counts per million of the mean
    library (genes x samples)."""
    x = np.asarray(counts, np.float64)
    scaled = x / size_factors(x)[None, :]
    total = scaled.sum(axis=0).mean()
    return scaled * (1e6 / max(total, 1.0))


def nb_dispersion(normalized: NDArray[np.floating]) -> float:
    """One negative-binomial dispersion for the matrix, by moments over genes with a mean
    of at least 10: the median of ``(var - mean) / mean^2`` (floored at 0.001)."""
    x = np.asarray(normalized, np.float64)
    if x.shape[1] < 2:
        return 0.05
    mean = x.mean(axis=1)
    var = x.var(axis=1, ddof=1)
    keep = mean >= 10
    if keep.sum() < 10:
        return 0.05
    phi = (var[keep] - mean[keep]) / mean[keep] ** 2
    return float(max(np.median(phi), 1e-3))


def log_expression(
    counts: NDArray[np.floating],
    transform: str = DEFAULT_COUNT_TRANSFORM,
    *,
    controls: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """Variance-stabilized log2 expression (genes x samples) of a counts matrix:
    ``log2cpm`` or ``vst`` (see the module docstring; the dispersion of ``vst`` is
    estimated on the ``controls`` columns, all columns when None)."""
    cpm = normalized_counts(counts)
    if transform == "log2cpm":
        return np.log2(cpm + 1.0)
    if transform == "vst":
        ref = cpm if controls is None or controls.sum() < 2 else cpm[:, controls]
        phi = nb_dispersion(ref)
        return (2.0 * np.arcsinh(np.sqrt(phi * cpm)) - math.log(4.0 * phi)) / math.log(2.0)
    raise ValueError(f"unknown count transform {transform!r}: one of {', '.join(COUNT_TRANSFORMS)}")


def robust_zscore(
    values: NDArray[np.floating],
    reference: NDArray[np.floating] | None = None,
    *,
    min_mad: float = CMAP_MIN_MAD,
) -> NDArray[np.float64]:
    """Robust z-scores of ``values`` (genes x samples) per gene, against ``reference``
    (genes x control samples; None: against ``values`` themselves, the plate population),
    exactly as cmapPy's ``robust_zscore``: ``(x - median) / (1.4826 max(MAD, min_mad))``."""
    x = np.asarray(values, np.float64)
    ref = x if reference is None else np.asarray(reference, np.float64)
    median = np.median(ref, axis=1, keepdims=True)
    mad = np.median(np.abs(ref - median), axis=1, keepdims=True)
    return (x - median) / (MAD_SCALE * np.maximum(mad, min_mad))


def spread_scaled(values: NDArray[np.floating]) -> NDArray[np.float64]:
    """A profile (genes, or genes x profiles) centred on its median over genes and divided
    by its robust spread (1.4826 MAD over genes): the DE fold-change scale."""
    x = np.asarray(values, np.float64)
    median = np.median(x, axis=0, keepdims=True)
    mad = MAD_SCALE * np.median(np.abs(x - median), axis=0, keepdims=True)
    return (x - median) / np.where(mad > 0, mad, 1.0)


def quantile_map(
    values: NDArray[np.floating], quantiles: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Each column of ``values`` (genes x profiles) mapped rank for rank onto the
    distribution whose ``quantiles`` (at evenly spaced probabilities from 0 to 1) are
    given: the lake's level-4 z-scores. Ties share the mean rank."""
    x = np.asarray(values, np.float64)
    q = np.asarray(quantiles, np.float64)
    levels = np.linspace(0.0, 1.0, len(q))
    out = np.empty_like(x)
    from scipy.stats import rankdata

    for j in range(x.shape[1]):
        p = (rankdata(x[:, j]) - 0.5) / x.shape[0]
        out[:, j] = np.interp(p, levels, q)
    return out

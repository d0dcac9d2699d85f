"""Statistics of the lake's level-4 landmark profiles, stored with each model: the
landmarks' mean and covariance (for imputing landmarks a panel does not measure) and the
quantiles of the pooled z-scores (for quantile mapping).

Imputation is ridge regression of the missing landmarks on the measured ones, fitted on
the training profiles of the model's split: for measured genes ``M`` and missing genes
``U``, ``z_U = mu_U + S_UM (S_MM + lambda I)^-1 (z_M - mu_M)`` with ``S`` the covariance.
Kept as the covariance (978 x 978) rather than as fitted coefficients, one regression is
solved per coverage pattern when a query needs it (milliseconds), so any panel works. The
ridge ``lambda`` is :data:`RIDGE` times the mean variance of the measured genes.

Memory: the fit streams the lake in record batches, holding the 978 x 978 sums and a
978 x :data:`HISTOGRAM_BINS` histogram; never the profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN

STATS_FILE = "landmark_stats.npz"
RIDGE = 0.1
HISTOGRAM_RANGE = 20.0  # z-scores beyond +-20 fall into the outer bins
HISTOGRAM_BINS = 8_000
N_QUANTILES = 1_001


@dataclass(frozen=True)
class LandmarkStats:
    mean: NDArray[np.float64]  # (978,)
    covariance: NDArray[np.float64]  # (978, 978)
    quantiles: NDArray[np.float64]  # (N_QUANTILES,) of the pooled z-scores, p = 0..1
    n_profiles: int

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_file(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    mean=self.mean,
                    covariance=self.covariance.astype(np.float32),
                    quantiles=self.quantiles,
                    n_profiles=np.int64(self.n_profiles),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> LandmarkStats:
        with np.load(path) as d:
            return cls(
                d["mean"].astype(np.float64),
                d["covariance"].astype(np.float64),
                d["quantiles"].astype(np.float64),
                int(d["n_profiles"]),
            )

    def impute(self, values: NDArray[np.floating], measured: NDArray[np.bool_]) -> np.ndarray:
        """``values`` (n, 978) with the unmeasured columns (``~measured``) replaced by their
        ridge prediction from the measured ones; measured columns are returned as given."""
        x = np.array(values, np.float64, copy=True)
        m = np.asarray(measured, bool)
        if m.all() or not m.any():
            return x
        s_mm = self.covariance[np.ix_(m, m)]
        lam = RIDGE * float(np.mean(np.diag(s_mm)))
        coef = np.linalg.solve(s_mm + lam * np.eye(int(m.sum())), self.covariance[np.ix_(m, ~m)])
        x[:, ~m] = self.mean[~m] + (x[:, m] - self.mean[m]) @ coef
        return x


class _Accumulator:
    def __init__(self) -> None:
        self.n = 0
        self.total = np.zeros(N_LANDMARKS)
        self.cross = np.zeros((N_LANDMARKS, N_LANDMARKS))
        self.histogram = np.zeros(HISTOGRAM_BINS, np.int64)

    def add(self, x: NDArray[np.floating]) -> None:
        x = np.asarray(x, np.float64)
        self.n += len(x)
        self.total += x.sum(axis=0)
        self.cross += x.T @ x
        h, _ = np.histogram(
            np.clip(x, -HISTOGRAM_RANGE, HISTOGRAM_RANGE),
            bins=HISTOGRAM_BINS,
            range=(-HISTOGRAM_RANGE, HISTOGRAM_RANGE),
        )
        self.histogram += h

    def result(self) -> LandmarkStats:
        if self.n < 2:
            raise ValueError("fewer than 2 profiles: no landmark statistics")
        mean = self.total / self.n
        cov = (self.cross - self.n * np.outer(mean, mean)) / (self.n - 1)
        edges = np.linspace(-HISTOGRAM_RANGE, HISTOGRAM_RANGE, HISTOGRAM_BINS + 1)
        cdf = np.concatenate([[0.0], np.cumsum(self.histogram) / self.histogram.sum()])
        levels = np.linspace(0.0, 1.0, N_QUANTILES)
        # Invert the histogram's CDF (linear within a bin); flat stretches take their left end.
        keep = np.concatenate([[True], np.diff(cdf) > 0])
        quantiles = np.interp(levels, cdf[keep], edges[keep])
        return LandmarkStats(mean, cov, quantiles, self.n)


def landmark_stats_of(values: NDArray[np.floating], block: int = 32_768) -> LandmarkStats:
    """:class:`LandmarkStats` of profiles in memory (n, 978)."""
    acc = _Accumulator()
    for b0 in range(0, len(values), block):
        acc.add(values[b0 : b0 + block])
    return acc.result()


def fit_landmark_stats(files: Sequence[Path], pert_ids: set[str] | None) -> LandmarkStats:
    """:class:`LandmarkStats` of the lake's profiles of ``pert_ids`` (every profile when
    None: pass the split's training perturbagens), streamed."""
    from l1000_assets.core.lake.read import landmark_matrix
    from l1000_assets.core.model.normalization import perturbagen_batches

    acc = _Accumulator()
    for batch in perturbagen_batches(files, pert_ids, ["pert_id", VALUES_COLUMN]):
        acc.add(landmark_matrix(batch))
    return acc.result()

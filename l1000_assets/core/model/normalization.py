"""Per-gene standardization statistics of the training profiles, streamed from the lake."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from l1000_assets.core.lake.read import iter_profile_batches, landmark_matrix
from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN


def perturbagen_batches(
    files: Sequence[Path],
    pert_ids: set[str] | None,
    columns: Sequence[str],
    batch_size: int = 32_768,
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` of the lake files' profiles of ``pert_ids`` (every
    profile when ``None``), streamed; empty batches are skipped."""
    wanted = pa.array(sorted(pert_ids), type=pa.string()) if pert_ids is not None else None
    for batch in iter_profile_batches(files, list(columns), batch_size=batch_size):
        if wanted is not None:
            batch = batch.filter(pc.is_in(batch.column("pert_id"), value_set=wanted))
        if batch.num_rows:
            yield batch


def perturbagen_set_digest(pert_ids: Iterable[str]) -> str:
    """SHA-256 of a set of perturbagen ids (order-independent)."""
    return hashlib.sha256("\n".join(sorted(set(pert_ids))).encode()).hexdigest()


@dataclass(frozen=True)
class NormalizationStats:
    mean: NDArray[np.float64]
    sd: NDArray[np.float64]
    n_profiles: int
    train_digest: str = ""  # perturbagen_set_digest of the training perturbagens used

    @property
    def digest(self) -> str:
        """SHA-256 of the float32 mean and SD bytes: the model card records it."""
        h = hashlib.sha256()
        h.update(self.mean.astype(np.float32).tobytes())
        h.update(self.sd.astype(np.float32).tobytes())
        return h.hexdigest()

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "mean": self.mean.tolist(),
                    "sd": self.sd.tolist(),
                    "n_profiles": self.n_profiles,
                    "sha256": self.digest,
                    "train_perturbagens_sha256": self.train_digest,
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> NormalizationStats:
        d = json.loads(path.read_text())
        return cls(
            np.asarray(d["mean"], np.float64),
            np.asarray(d["sd"], np.float64),
            int(d["n_profiles"]),
            d.get("train_perturbagens_sha256", ""),
        )


def normalization_stats(files: Sequence[Path], train_perts: set[str]) -> NormalizationStats:
    """Per-gene mean and SD over the training profiles, streamed (memory: one batch)."""
    total = np.zeros(N_LANDMARKS)
    total_sq = np.zeros(N_LANDMARKS)
    n = 0
    for batch in perturbagen_batches(files, train_perts, ["pert_id", VALUES_COLUMN]):
        x = landmark_matrix(batch).astype(np.float64)
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
        n += len(x)
    if n < 2:
        raise ValueError("fewer than 2 training profiles: nothing to normalize")
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0) * n / (n - 1)
    return NormalizationStats(
        mean, np.maximum(np.sqrt(var), 1e-6), n, perturbagen_set_digest(train_perts)
    )

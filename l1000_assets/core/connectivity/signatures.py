"""Building the signature store from the release matrices: level-5 MODZ signatures over
the BING genes (or all genes), in one pass over each release, in bounded memory.

A signature is the replicates of one perturbagen in one cell line at one dose and time
(:data:`~l1000_assets.core.embeddings.aggregates.SIGNATURE_KEYS`, the ``sig_id`` of the
z-score signatures and signature embeddings); controls are left out. Its z-scores are the
MODZ of its replicates as CMap computes them: the weights come from the Spearman
correlations of the replicates' **landmark** genes (:func:`~l1000_assets.core.embeddings.modz.modz`,
as in Subramanian et al. 2017) and are applied to every gene of the space, so the store's
landmark rows are the landmark MODZ signatures.

Memory. The matrix is read in blocks of columns (samples) holding only the space's genes
(:meth:`~l1000_assets.core.formats.matrix.MatrixReader.iter_blocks`). The replicate counts
are known beforehand from the metadata, so a signature is collapsed and written as soon as
its last replicate has been read; until then its replicates wait in memory, up to
``budget_bytes``, and beyond that in a temporary spill file read back when the signature
completes. In the GEO files (and the synthetic release) replicate plates lie next to each
other, so few signatures are open at a time and nothing spills; a file in another order
still builds, through the spill. Completed signatures are ranked and written in batches.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.connectivity.store import GENE_SPACES, StoreWriter
from l1000_assets.core.embeddings.aggregates import SIGNATURE_META_COLUMNS, signature_ids
from l1000_assets.core.embeddings.modz import modz
from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.evaluation.connectivity import rank_profiles
from l1000_assets.core.formats.matrix import open_matrix
from l1000_assets.core.lake.read import read_canonical_instances
from l1000_assets.core.progress import Progress
from l1000_assets.core.releases.reconcile import STRICT, match_ids
from l1000_assets.core.zscores import OVERRIDE, not_zscores

DEFAULT_BUDGET_BYTES = 256 << 20
"""Replicates of open signatures held in memory before they spill to disk."""
DEFAULT_BLOCK_SIZE = 1024
"""Matrix columns (samples) read per block: about 40 KB each in the BING space."""
_BATCH = 256  # completed signatures ranked and written together
_ZSCORE_SAMPLES = 16  # profiles of each block checked to be z-scores, as the lake ingest does


@dataclass(frozen=True)
class ReleaseInput:
    """One release to build from: its level-4 matrix and canonical instances table."""

    name: str
    matrix: Path
    instances: Path


@dataclass(frozen=True)
class StoreBuildReport:
    """What a build wrote: counts, time, size, and how the replicates were held."""

    path: Path
    n_signatures: int
    n_profiles: int
    n_genes: int
    gene_space: str
    version: str
    seconds: float
    bytes: int
    max_open_signatures: int
    spilled_profiles: int
    profiles_per_release: dict[str, int] = field(default_factory=dict)
    signatures_per_cell: dict[str, int] = field(default_factory=dict)


def space_genes(
    genes: pd.DataFrame, gene_space: str = "bing", *, path: str | Path = "genes.parquet"
) -> pd.DataFrame:
    """The genes of a gene space, in the canonical order (landmarks first, in the lake's
    order): ``gene_id``, ``symbol``, ``is_landmark``.

    Parameters
    ----------
    genes
        A canonical ``genes`` table (``gene_id``, ``symbol``, ``is_landmark``,
        ``landmark_index`` and, for ``bing``, ``is_bing``).
    gene_space
        ``bing``: landmarks and best inferred genes; ``all``: every gene.
    path
        Where ``genes`` came from, named in errors.
    """
    if gene_space not in GENE_SPACES:
        raise ValueError(f"gene_space must be one of {list(GENE_SPACES)}, not {gene_space!r}")
    g = genes.copy()
    g["gene_id"] = g["gene_id"].astype(str)
    g["is_landmark"] = g["is_landmark"].fillna(False).astype(bool)
    if gene_space == "bing":
        if "is_bing" not in g.columns or g["is_bing"].isna().all():
            raise L1000InputError(
                path,
                "genes: no BING flags (pr_is_bing or feature_space) in this release's gene "
                "table; build the store with gene_space 'all'",
            )
        g = g[g["is_bing"].fillna(False).astype(bool) | g["is_landmark"]]
    numeric = pd.to_numeric(g["gene_id"], errors="coerce")
    order = g.assign(
        _lm=~g["is_landmark"],
        _li=g["landmark_index"] if "landmark_index" in g.columns else 0,
        _num=numeric,
    ).sort_values(["_lm", "_li", "_num", "gene_id"], kind="stable")
    return order[["gene_id", "symbol", "is_landmark"]].reset_index(drop=True)


# ---------------------------------------------------------------------------------- plan
@dataclass
class _ReleasePlan:
    release: ReleaseInput
    positions: NDArray[np.int64]  # matrix columns of the signatures' profiles
    codes: NDArray[np.int64]  # signature code of each


def _plan(
    releases: Sequence[ReleaseInput], on_bad_input: str
) -> tuple[list[_ReleasePlan], pd.DataFrame, NDArray[np.int64]]:
    """Per release, which matrix columns go into which signature; the signatures' metadata
    (one row per code, with ``sig_id``) and replicate counts."""
    ids, metas, parts = [], [], []
    for release in releases:
        inst = read_canonical_instances(release.instances)
        with open_matrix(release.matrix) as matrix:
            match = match_ids(
                inst.column("inst_id"),
                matrix.col_id_array(),
                on_bad_input=on_bad_input,
                matrix_path=release.matrix,
                metadata_path=release.instances,
            )
        klass = inst.column("profile_class").take(pa.array(match.rows)).cast(pa.string())
        keep = pc.fill_null(pc.not_equal(klass, "control"), False).to_numpy(zero_copy_only=False)
        rows = match.rows[keep]
        meta = inst.select(SIGNATURE_META_COLUMNS).take(pa.array(rows))
        meta = meta.cast(
            pa.schema(
                [
                    pa.field(c, pa.float64() if c in ("pert_dose", "pert_time") else pa.string())
                    for c in SIGNATURE_META_COLUMNS
                ]
            )
        )
        ids.append(signature_ids(meta))
        metas.append(meta)
        parts.append((release, match.positions[keep]))
    all_ids = np.concatenate(ids) if ids else np.empty(0, object)
    codes, uniques = pd.factorize(all_ids)
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    first = np.unique(codes, return_index=True)[1].astype(np.int64)
    table = pa.concat_tables(metas) if metas else None
    meta = (
        table.take(pa.array(first)).to_pandas()
        if table is not None and len(first)
        else pd.DataFrame(columns=SIGNATURE_META_COLUMNS)
    )
    meta.insert(0, "sig_id", pd.Series(uniques, dtype="string").to_numpy(object))
    meta["n_replicates"] = counts
    plans, start = [], 0
    for release, positions in parts:
        plans.append(_ReleasePlan(release, positions, codes[start : start + len(positions)]))
        start += len(positions)
    return plans, meta, counts


# ------------------------------------------------------------------------ open replicates
class _OpenReplicates:
    """Replicates of signatures not yet complete: in memory up to ``budget_bytes``, then
    in an append-only spill file."""

    def __init__(self, counts: NDArray[np.int64], budget_bytes: int, spill_dir: Path):
        self._missing = counts.copy()
        self._held: dict[int, list[np.ndarray | int]] = {}
        self._budget = budget_bytes
        self._bytes = 0
        self._spill_dir = spill_dir
        self._spill = None
        self._spill_end = 0
        self.spilled = 0
        self.max_open = 0

    def add(self, code: int, row: NDArray[np.float32]) -> NDArray[np.float32] | None:
        """Add one replicate; return all of the signature's replicates ``(r, n)`` once its
        last one arrives, else None."""
        self._missing[code] -= 1
        held = self._held.get(code)
        if self._missing[code] == 0 and held is None:
            return row[None, :]
        if held is None:
            held = self._held[code] = []
            self.max_open = max(self.max_open, len(self._held))
        if self._missing[code] > 0 and self._bytes + row.nbytes > self._budget:
            held.append(self._write_spill(row))
        else:
            held.append(np.array(row))
            self._bytes += row.nbytes
        if self._missing[code] > 0:
            return None
        del self._held[code]
        rows = [self._read_spill(p, row.shape[0]) if isinstance(p, int) else p for p in held]
        self._bytes -= sum(p.nbytes for p in held if not isinstance(p, int))
        return np.stack(rows)

    @property
    def open(self) -> int:
        return len(self._held)

    def _write_spill(self, row: np.ndarray) -> int:
        if self._spill is None:
            self._spill = open(self._spill_dir / "replicates.f32", "w+b")  # noqa: SIM115
        offset = self._spill_end
        self._spill.seek(offset)
        self._spill.write(np.ascontiguousarray(row, np.float32).tobytes())
        self._spill_end += row.nbytes
        self.spilled += 1
        return offset

    def _read_spill(self, offset: int, n: int) -> np.ndarray:
        self._spill.flush()
        data = os.pread(self._spill.fileno(), n * 4, offset)
        return np.frombuffer(data, np.float32).copy()

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()


def collapse(replicates: NDArray[np.float32], landmark_cols: NDArray[np.integer]) -> np.ndarray:
    """The MODZ signature of ``replicates`` ``(r, n)``: weights from the landmark columns'
    Spearman correlations, applied to every column. float32 ``(n,)``."""
    if len(replicates) == 1:
        return replicates[0].astype(np.float32)
    _, weights = modz(replicates[:, landmark_cols])
    return (weights @ replicates.astype(np.float64)).astype(np.float32)


def _check_zscores(path: Path, block, wanted: NDArray[np.int64], landmark_cols) -> None:
    """Refuse a matrix whose sampled profiles plainly are not z-scores over the landmarks."""
    sample = wanted[:: max(1, len(wanted) // _ZSCORE_SAMPLES)]
    found = not_zscores(block.values[np.ix_(sample, landmark_cols)].reshape(1, -1))
    if found:
        ids = block.col_ids[sample][:3].tolist()
        raise L1000InputError(
            path,
            f"not level-4 z-scores: profiles {preview_ids(ids, 3)}... have "
            f"{' and '.join(found)}; convert them to z-scores first, or set {OVERRIDE}",
        )


# ---------------------------------------------------------------------------------- build
def write_signature_store(
    releases: Sequence[ReleaseInput],
    genes: pd.DataFrame,
    out_dir: str | Path,
    *,
    gene_space: str = "bing",
    genes_path: str | Path = "genes.parquet",
    on_bad_input: str = STRICT,
    block_size: int = DEFAULT_BLOCK_SIZE,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    allow_non_zscores: bool = False,
    progress: Progress | None = None,
) -> StoreBuildReport:
    """Build the signature store of ``releases`` into ``out_dir`` (replaced atomically).

    Parameters
    ----------
    releases
        The releases' matrices and canonical instances tables; a signature's replicates
        may come from several releases.
    genes
        The canonical ``genes`` table (see :func:`space_genes`).
    out_dir
        The store directory.
    gene_space
        ``bing`` (default) or ``all``.
    genes_path
        Where ``genes`` came from, named in errors.
    on_bad_input
        As for the lake ingest: ``strict`` fails on matrix columns and metadata rows that do
        not match, ``skip`` leaves them out.
    block_size
        Matrix columns read per block.
    budget_bytes
        Replicates held in memory before spilling (:class:`_OpenReplicates`).
    allow_non_zscores
        Build from a matrix that plainly is not level-4 z-scores
        (:func:`~l1000_assets.core.zscores.not_zscores` of a few profiles of every block,
        over the landmarks), which is refused otherwise, as the lake ingest refuses it.
    progress
        Called as ``progress(profiles_done, profiles_total, elapsed_seconds)``.

    Raises
    ------
    L1000InputError
        Naming the file: no BING flags (``bing``), a gene of the space missing from a
        matrix, ids that do not match (``strict``), non-finite values in a profile, values
        that are not z-scores, no treatment profile at all.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    space = space_genes(genes, gene_space, path=genes_path)
    landmark_cols = np.flatnonzero(space["is_landmark"].to_numpy(bool))
    plans, meta, counts = _plan(releases, on_bad_input)
    total = int(counts.sum())
    if total == 0:
        raise L1000InputError(
            releases[0].instances if releases else out_dir,
            "no treatment profiles: nothing to build signatures from",
        )
    gene_ids = space["gene_id"].tolist()
    done = 0
    per_release: dict[str, int] = {}
    pending_codes: list[int] = []
    pending_values: list[np.ndarray] = []
    index_table = pa.Table.from_pandas(meta, preserve_index=False)

    with atomic_dir(out_dir) as tmp, tempfile.TemporaryDirectory(dir=tmp) as spill:
        writer = StoreWriter(tmp, space, len(meta), gene_space)
        open_reps = _OpenReplicates(counts, budget_bytes, Path(spill))

        def flush() -> None:
            if not pending_codes:
                return
            z = np.stack(pending_values)
            ranks = rank_profiles(z).ranks
            writer.write(ranks, z, index_table.take(pa.array(pending_codes)))
            pending_codes.clear()
            pending_values.clear()

        try:
            for plan in plans:
                with open_matrix(plan.release.matrix) as matrix:
                    rows = matrix.row_positions(gene_ids)
                    code_of = np.full(matrix.shape[1], -1, np.int64)
                    code_of[plan.positions] = plan.codes
                    for block in matrix.iter_blocks(
                        rows, block_size=block_size, check_finite=False
                    ):
                        local = code_of[block.start : block.stop]
                        wanted = np.flatnonzero(local >= 0)
                        values = block.values
                        finite = np.isfinite(values[wanted]).all(axis=1)
                        if not finite.all():
                            bad = block.col_ids[wanted[~finite]]
                            raise L1000InputError(
                                plan.release.matrix,
                                f"non-finite values (NaN or inf) in profile(s) {preview_ids(bad)}",
                            )
                        if not allow_non_zscores and len(wanted):
                            _check_zscores(plan.release.matrix, block, wanted, landmark_cols)
                        for i in wanted:
                            replicates = open_reps.add(int(local[i]), values[i])
                            if replicates is None:
                                continue
                            pending_codes.append(int(local[i]))
                            pending_values.append(collapse(replicates, landmark_cols))
                            if len(pending_codes) == _BATCH:
                                flush()
                        done += len(wanted)
                        if progress is not None:
                            progress(done, total, time.perf_counter() - t0)
                per_release[plan.release.name] = len(plan.positions)
            flush()
            if open_reps.open:
                raise L1000InputError(
                    out_dir, f"{open_reps.open} signature(s) lack replicates the plan counted"
                )
            record = writer.close(
                {
                    "releases": per_release,
                    "n_profiles": total,
                    "build_seconds": round(time.perf_counter() - t0, 2),
                    "spilled_profiles": open_reps.spilled,
                    "max_open_signatures": open_reps.max_open,
                }
            )
        finally:
            open_reps.close()
        size = sum(p.stat().st_size for p in tmp.iterdir() if p.is_file())
    per_cell = meta["cell_id"].astype(str).value_counts().sort_index()
    return StoreBuildReport(
        path=out_dir,
        n_signatures=len(meta),
        n_profiles=total,
        n_genes=len(space),
        gene_space=gene_space,
        version=record["version"],
        seconds=time.perf_counter() - t0,
        bytes=size,
        max_open_signatures=open_reps.max_open,
        spilled_profiles=open_reps.spilled,
        profiles_per_release=per_release,
        signatures_per_cell={str(k): int(v) for k, v in per_cell.items()},
    )

"""Lake-wide consistency: repeated profile ids across files, and lake files against the
canonical metadata, computed with polars lazy scans (only the ``inst_id`` column is read;
the ids are held as Arrow strings in polars' hash tables, not as Python objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from l1000_assets.core.errors import preview_ids


@dataclass(frozen=True)
class DuplicateIds:
    """Rows scanned, how many of them repeat an earlier ``inst_id``, and a few examples."""

    n_rows: int
    n_duplicates: int
    examples: list[str]


def duplicate_inst_ids(files: Sequence[str | Path], limit: int = 5) -> DuplicateIds:
    """``inst_id`` values that occur more than once over all ``files`` (lake Parquet)."""
    if not files:
        return DuplicateIds(0, 0, [])
    counts = (
        pl.scan_parquet([str(f) for f in files])
        .select("inst_id")
        .group_by("inst_id")
        .agg(pl.len().alias("n"))
        .collect()
    )
    repeated = counts.filter(pl.col("n") > 1).sort("inst_id")
    return DuplicateIds(
        n_rows=int(counts["n"].sum()),
        n_duplicates=int((repeated["n"] - 1).sum()) if len(repeated) else 0,
        examples=repeated["inst_id"].head(limit).to_list(),
    )


@dataclass(frozen=True)
class MetadataMismatch:
    """Lake profiles of a release without a kept metadata row, and the reverse: counts and a
    few examples of each."""

    release: str
    n_without_metadata: int
    n_without_profile: int
    examples_without_metadata: list[str]
    examples_without_profile: list[str]

    def problems(self) -> list[str]:
        out = []
        if self.n_without_metadata:
            out.append(
                f"{self.release}: {self.n_without_metadata} profiles without metadata: "
                f"{preview_ids(self.examples_without_metadata)}"
            )
        if self.n_without_profile:
            out.append(
                f"{self.release}: {self.n_without_profile} metadata rows without profile: "
                f"{preview_ids(self.examples_without_profile)}"
            )
        return out


def metadata_mismatch(
    release: str,
    files: Sequence[str | Path],
    instances: str | Path,
    cell_lines: Sequence[str],
    limit: int = 5,
) -> MetadataMismatch:
    """Compare a release's lake files with its canonical ``instances`` table: every profile in
    the lake has a non-control metadata row, and every non-control row of a cell line in
    ``cell_lines`` (those in the lake) has a profile."""
    lake = pl.scan_parquet([str(f) for f in files]).select("inst_id").unique()
    kept = (
        pl.scan_parquet(str(instances))
        .filter((pl.col("profile_class") != "control") & pl.col("cell_id").is_in(list(cell_lines)))
        .select("inst_id")
        .unique()
    )
    sides = []
    for left, right in ((lake, kept), (kept, lake)):
        missing = left.join(right, on="inst_id", how="anti")
        n, head = pl.collect_all([missing.select(pl.len()), missing.sort("inst_id").head(limit)])
        sides.append((int(n.item()), head["inst_id"].to_list()))
    (n_meta, ex_meta), (n_prof, ex_prof) = sides
    return MetadataMismatch(release, n_meta, n_prof, ex_meta, ex_prof)


#: A new version may hold at most this fraction fewer profiles than the lake holds before it
#: is refused (unless allowed): it would otherwise erase good data.
SHRINK_LIMIT = 0.5


def shrinkage(
    before: Mapping[str, int], after: Mapping[str, int], *, limit: float = SHRINK_LIMIT
) -> dict[str, tuple[int, int]]:
    """Keys whose count falls by more than ``limit`` (a fraction of the count ``before``;
    a key missing ``after`` counts 0): key -> (before, after)."""
    return {
        key: (n, after.get(key, 0))
        for key, n in before.items()
        if n > 0 and after.get(key, 0) < n * (1 - limit)
    }

"""Gene-set query files: GRP, GMT and gene/direction tables; parsed, sorted and checked.

Accepted files:

* **GRP** (``.grp``): one gene per line; ``#`` starts a comment line. A pair
  ``NAME_up.grp`` / ``NAME_dn.grp`` (or ``NAME_down.grp``) is one query ``NAME``; a GRP file
  without such a suffix is an up set on its own. The command line takes the two files as
  ``--up`` and ``--down``.
* **GMT** (``.gmt``): one set per line, tab-separated: name, description, genes. Lines
  ``NAME_up`` and ``NAME_dn`` (or ``NAME_down``) form query ``NAME``; a set without the
  suffix is an up set on its own. Many queries in one file.
* **Gene/direction tables** (``.csv``, ``.tsv``, ``.txt`` tab-separated): a header with a
  gene column (``gene``, ``genes``, ``gene_symbol``, ``symbol``, ``gene_id``, ``entrez_id``,
  ``entrez``, ``pr_gene_symbol``, ``pr_gene_id``) and a direction column (``direction``,
  ``dir``, ``regulation``, ``sign``; values ``up``/``down``, ``dn``, ``+``/``-``, ``1``/``-1``),
  optionally a query column (``query``, ``query_name``, ``name``, ``signature``, ``set``)
  for many queries in one file.

**Which tables are gene sets** (the watched folder takes both kinds): a CSV/TSV/TXT file is
a gene-set table when its header names a gene column *and* a direction column as above
(case-insensitive); any other table is a file of profiles for read-across
(:mod:`~l1000_assets.core.readacross.query_files`), whose header holds profile ids or genes.

Each set's labels are sorted by :meth:`~l1000_assets.core.connectivity.genes.GeneSpace.sort`
into valid, outside the space and invalid, and a query is refused with
:class:`L1000InputError` (naming the file, the query and the genes) when a set given is
empty, names no known gene, has fewer than ``min_genes`` valid genes or more than
``max_genes`` (CMap asks for 10 to 150 per set), or when a gene is in both sets. A query
may have only an up or only a down set.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.connectivity.genes import GeneSpace, SortedGenes
from l1000_assets.core.errors import L1000InputError, preview_ids

GENE_SET_SUFFIXES = (".grp", ".gmt")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt")
GENE_COLUMNS = (
    "gene",
    "genes",
    "gene_symbol",
    "symbol",
    "gene_id",
    "entrez_id",
    "entrez",
    "pr_gene_symbol",
    "pr_gene_id",
)
DIRECTION_COLUMNS = ("direction", "dir", "regulation", "sign")
QUERY_COLUMNS = ("query", "query_name", "name", "signature", "set")
UP_VALUES = frozenset({"up", "u", "+", "1", "+1", "1.0", "upregulated", "up-regulated"})
DOWN_VALUES = frozenset({"down", "dn", "d", "-", "-1", "-1.0", "downregulated", "down-regulated"})
UP_SUFFIXES = ("_up",)
DOWN_SUFFIXES = ("_dn", "_down")
DEFAULT_MIN_GENES = 10
DEFAULT_MAX_GENES = 150


@dataclass(frozen=True)
class RawQuery:
    """A query as read from its file(s): labels of the up and down sets (None: not given)."""

    name: str
    files: tuple[Path, ...]
    up: tuple[str, ...] | None
    down: tuple[str, ...] | None

    @property
    def path(self) -> Path:
        return self.files[0]


@dataclass(frozen=True)
class GeneSetOptions:
    min_genes: int = DEFAULT_MIN_GENES
    max_genes: int = DEFAULT_MAX_GENES


@dataclass(frozen=True)
class GeneSetQuery:
    """A checked query: its sets sorted into the store's gene space."""

    name: str
    files: tuple[Path, ...]
    up: SortedGenes | None
    down: SortedGenes | None

    @property
    def path(self) -> Path:
        return self.files[0]

    @property
    def up_rows(self) -> NDArray[np.int64]:
        return np.asarray(self.up.rows if self.up else (), np.int64)

    @property
    def down_rows(self) -> NDArray[np.int64]:
        return np.asarray(self.down.rows if self.down else (), np.int64)

    def genes_report(self) -> dict[str, list[str]]:
        """Per set: the valid, outside-the-space and invalid labels."""
        out: dict[str, list[str]] = {}
        for side, genes in (("up", self.up), ("down", self.down)):
            for kind in ("valid", "outside", "invalid"):
                out[f"{side}_{kind}"] = list(getattr(genes, kind)) if genes else []
        return out


# ------------------------------------------------------------------------- file kinds
def _sniff_separator(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def table_header(path: str | Path) -> list[str] | None:
    """The lower-cased header fields of a CSV/TSV/TXT file, or None when it cannot be read
    as text."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            row = next(csv.reader(f, delimiter=_sniff_separator(path)), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return [c.strip().lower() for c in row] if row else None


def is_gene_set_table(path: str | Path) -> bool:
    """Whether a CSV/TSV/TXT file is a gene-set table: its header names a gene column and a
    direction column (see the module docstring)."""
    header = table_header(path)
    return bool(header) and (
        any(c in GENE_COLUMNS for c in header) and any(c in DIRECTION_COLUMNS for c in header)
    )


def is_gene_set_file(path: str | Path) -> bool:
    """Whether ``path`` is a gene-set query file (GRP, GMT or gene-set table)."""
    path = Path(path)
    if not path.is_file() or path.name.startswith("."):
        return False
    suffix = path.suffix.lower()
    if suffix in GENE_SET_SUFFIXES:
        return True
    return suffix in TABLE_SUFFIXES and is_gene_set_table(path)


def gene_set_files_in(folder: str | Path) -> list[Path]:
    """Every gene-set file in ``folder`` (not recursive, sorted)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_gene_set_file(p)) if folder.is_dir() else []


# ---------------------------------------------------------------------------- parsing
def _split_name(name: str) -> tuple[str, str | None]:
    """``(query name, "up" | "down" | None)`` from a set or file name's suffix."""
    lower = name.lower()
    for side, suffixes in (("up", UP_SUFFIXES), ("down", DOWN_SUFFIXES)):
        for suffix in suffixes:
            if lower.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)], side
    return name, None


def _text_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise L1000InputError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise L1000InputError(path, f"not a text file (UTF-8): {exc}") from exc
    if "\x00" in text:
        raise L1000InputError(path, "not a text file (binary content)")
    return text.splitlines()


def read_grp(path: str | Path) -> tuple[str, ...]:
    """The genes of a GRP file, in order."""
    path = Path(path)
    genes = []
    for line in _text_lines(path):
        text = line.strip()
        if text and not text.startswith("#"):
            genes.append(text)
    if not genes:
        raise L1000InputError(path, "no genes in the GRP file")
    return tuple(genes)


def read_gmt(path: str | Path) -> list[RawQuery]:
    """The queries of a GMT file (``NAME_up`` / ``NAME_dn`` lines paired)."""
    path = Path(path)
    sets: dict[str, dict[str, tuple[str, ...]]] = {}
    order: list[str] = []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        name = fields[0].strip()
        genes = tuple(g.strip() for g in fields[2:] if g.strip())
        if not name:
            raise L1000InputError(path, f"line {number}: a set without a name")
        if not genes:
            raise L1000InputError(
                path,
                f"line {number}: set {name!r} has no genes (GMT: name, description, then "
                "genes, tab-separated)",
            )
        query, side = _split_name(name)
        side = side or "up"
        entry = sets.setdefault(query, {})
        if query not in order:
            order.append(query)
        if side in entry:
            raise L1000InputError(path, f"line {number}: a second {side} set for query {query!r}")
        entry[side] = genes
    if not order:
        raise L1000InputError(path, "no gene sets in the GMT file")
    return [RawQuery(q, (path,), sets[q].get("up"), sets[q].get("down")) for q in order]


def read_gene_table(path: str | Path) -> list[RawQuery]:
    """The queries of a gene/direction table (one per value of the query column, else one
    named after the file)."""
    path = Path(path)
    header = table_header(path)
    if header is None:
        raise L1000InputError(path, "cannot read the header (not a UTF-8 text table?)")
    gene_col = next((header.index(c) for c in GENE_COLUMNS if c in header), None)
    dir_col = next((header.index(c) for c in DIRECTION_COLUMNS if c in header), None)
    query_col = next((header.index(c) for c in QUERY_COLUMNS if c in header), None)
    if gene_col is None or dir_col is None:
        raise L1000InputError(
            path,
            f"a gene-set table needs a gene column ({', '.join(GENE_COLUMNS)}) and a "
            f"direction column ({', '.join(DIRECTION_COLUMNS)}); header: {preview_ids(header)}",
        )
    sets: dict[str, dict[str, list[str]]] = {}
    bad = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=_sniff_separator(path))
        next(reader)
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(gene_col, dir_col):
                raise L1000InputError(
                    path, f"line {number}: {len(row)} field(s), fewer than the header's"
                )
            gene = row[gene_col].strip()
            direction = row[dir_col].strip().lower()
            query = row[query_col].strip() if query_col is not None else path.stem
            side = "up" if direction in UP_VALUES else "down" if direction in DOWN_VALUES else None
            if side is None:
                bad.append(f"{direction!r} (line {number})")
                continue
            if gene:
                sets.setdefault(query or path.stem, {"up": [], "down": []})[side].append(gene)
    if bad:
        raise L1000InputError(
            path,
            f"{len(bad)} direction value(s) neither up nor down: {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''} (use up/down, dn, +/-, 1/-1)",
        )
    if not sets:
        raise L1000InputError(path, "no genes in the table (a header and no data)")
    return [
        RawQuery(q, (path,), tuple(s["up"]) or None, tuple(s["down"]) or None)
        for q, s in sets.items()
    ]


def query_from_grp(up: str | Path | None, down: str | Path | None) -> RawQuery:
    """One query from an up and/or a down GRP file (named after the up file)."""
    if up is None and down is None:
        raise ValueError("give an up set, a down set or both")
    files = tuple(Path(p) for p in (up, down) if p is not None)
    name = _split_name(files[0].stem)[0]
    return RawQuery(
        name,
        files,
        read_grp(up) if up is not None else None,
        read_grp(down) if down is not None else None,
    )


def read_gene_set_files(paths: Iterable[str | Path]) -> list[tuple[Path, list[RawQuery]]]:
    """The queries of gene-set files, per file (a GRP pair counts as its up file; its down
    file is found beside it). Errors are raised per file."""
    out = []
    done: set[Path] = set()
    for path in map(Path, paths):
        if path in done:
            continue
        suffix = path.suffix.lower()
        if suffix == ".gmt":
            out.append((path, read_gmt(path)))
        elif suffix == ".grp":
            name, side = _split_name(path.stem)
            partner = _grp_partner(path, name, side)
            up, down = (path, partner) if side != "down" else (partner, path)
            done.update(p for p in (up, down) if p is not None)
            query = query_from_grp(up, down)
            out.append((query.path, [query]))
        else:
            out.append((path, read_gene_table(path)))
        done.add(path)
    return out


def _grp_partner(path: Path, name: str, side: str | None) -> Path | None:
    if side is None:
        return None
    suffixes = DOWN_SUFFIXES if side == "up" else UP_SUFFIXES
    for candidate in path.parent.iterdir():
        if candidate.suffix.lower() != ".grp" or candidate == path:
            continue
        other, other_side = _split_name(candidate.stem)
        if other == name and other_side is not None and other_side != side:
            if any(candidate.stem.lower().endswith(s) for s in suffixes):
                return candidate
    return None


# ---------------------------------------------------------------------------- checking
def resolve_query(
    raw: RawQuery, space: GeneSpace, options: GeneSetOptions = GeneSetOptions()
) -> GeneSetQuery:
    """Sort a query's genes into the store's space and check it (module docstring).

    Raises
    ------
    L1000InputError
        Naming the query's file, the query and the offending genes.
    """
    path, name = raw.path, raw.name
    if not raw.up and not raw.down:
        which = "sets are" if raw.up is not None and raw.down is not None else "set is"
        raise L1000InputError(path, f"query {name!r}: no genes (the {which} empty)")
    sorted_sets: dict[str, SortedGenes | None] = {}
    for side, labels in (("up", raw.up), ("down", raw.down)):
        if labels is None:
            sorted_sets[side] = None
            continue
        if not labels:
            raise L1000InputError(path, f"query {name!r}: the {side} set is empty")
        genes = space.sort(labels)
        if not genes.valid and not genes.outside:
            notes = f"; {'; '.join(genes.notes)}" if genes.notes else ""
            raise L1000InputError(
                path,
                f"query {name!r}: none of the {len(labels)} gene(s) of the {side} set is an "
                f"Entrez id, symbol or alias of the genes table: "
                f"{preview_ids(genes.invalid)}{notes}",
            )
        sorted_sets[side] = genes
    up, down = sorted_sets["up"], sorted_sets["down"]
    if up is not None and down is not None:
        both = sorted(set(up.gene_ids) & set(down.gene_ids))
        both_outside = {space.resolve(x) for x in up.outside} & {
            space.resolve(x) for x in down.outside
        }
        both += sorted(g for g in both_outside if g is not None)
        if both:
            raise L1000InputError(
                path,
                f"query {name!r}: {len(both)} gene(s) in both the up and the down set: "
                f"{preview_ids(space.describe(g) for g in both)}",
            )
    for side, genes in (("up", up), ("down", down)):
        if genes is None:
            continue
        n = len(genes.valid)
        if n < options.min_genes or n > options.max_genes:
            bound = (
                f"fewer than the {options.min_genes} required"
                if n < options.min_genes
                else f"more than the {options.max_genes} allowed"
            )
            details = "".join(
                f"; {kind}: {preview_ids(getattr(genes, kind))}"
                for kind in ("outside", "invalid")
                if getattr(genes, kind)
            )
            raise L1000InputError(
                path,
                f"query {name!r}: the {side} set has {n} valid gene(s) in the store's gene "
                f"space, {bound} (CMap asks for {DEFAULT_MIN_GENES} to {DEFAULT_MAX_GENES} "
                f"per set){details}",
            )
    return GeneSetQuery(name, raw.files, up, down)


def write_grp(path: str | Path, genes: Sequence[str]) -> Path:
    """Write a GRP file (one gene per line)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text("".join(f"{g}\n" for g in genes))
    return path


def write_gmt(
    path: str | Path, queries: Sequence[tuple[str, Sequence[str], Sequence[str]]]
) -> Path:
    """Write a GMT file of ``(name, up genes, down genes)`` queries as ``NAME_up`` /
    ``NAME_dn`` lines."""
    path = Path(path)
    lines = []
    for name, up, down in queries:
        for suffix, genes in (("_up", up), ("_dn", down)):
            if genes:
                lines.append("\t".join([f"{name}{suffix}", "", *genes]))
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path

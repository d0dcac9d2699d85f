"""Gene identifiers of a gene-set query mapped to the store's gene space, and sorted as CMap
sorts them.

A label is an Entrez gene id (``5720``; ``5720.0`` as a spreadsheet writes it), a symbol in
any case (``PSME1``, ``psme1``) or, where the genes table has them, a previous symbol or
an alias (columns ``prev_symbols``, ``previous_symbols``, ``prev_symbol``, ``aliases``,
``alias_symbol`` or ``synonyms``, several values separated by ``|``, ``,`` or ``;``). A
current symbol always wins over another gene's alias, and an alias shared by several genes
resolves to none (it is reported as invalid, with the genes it could be). The GEO and CMap
LINCS 2020 gene tables carry no alias column, so there only ids and symbols resolve.

Sorted as clue.io sorts a query's genes:

* **valid**: the gene is in the store's gene space (BING by default): it is scored;
* **outside the space**: a known gene of the genes table that the space leaves out (not
  well inferred): reported, not scored;
* **invalid**: not an identifier of the genes table: reported, not scored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from l1000_assets.core.errors import L1000InputError

ALIAS_COLUMNS = (
    "prev_symbols",
    "previous_symbols",
    "prev_symbol",
    "aliases",
    "alias_symbol",
    "synonyms",
)
_SEPARATORS = re.compile(r"[|,;]")


def normalize_label(label: object) -> str:
    """A gene label as matched: stripped, an Entrez id written as a float made whole."""
    text = str(label).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


@dataclass(frozen=True)
class SortedGenes:
    """One set's labels sorted into valid (with their store rows), outside the space and
    invalid; ``repeated`` lists labels that named a gene already in the set."""

    valid: tuple[str, ...]
    rows: tuple[int, ...]
    gene_ids: tuple[str, ...]
    outside: tuple[str, ...]
    invalid: tuple[str, ...]
    repeated: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class GeneSpace:
    """Every identifier of the genes table, and the store rows of the space's genes.

    Build it with :meth:`from_tables`.
    """

    row_of: dict[str, int]  # gene id -> store row (space genes only)
    gene_of: dict[str, str]  # identifier (id, or upper-case symbol/alias) -> gene id
    symbol_of: dict[str, str]  # gene id -> symbol
    ambiguous: dict[str, tuple[str, ...]]  # upper-case alias -> the gene ids it names

    @classmethod
    def from_tables(cls, genes: pd.DataFrame, space_gene_ids: Sequence[str]) -> GeneSpace:
        """From the lake's ``genes`` table(s) (``gene_id``, ``symbol`` and any alias
        columns) and the store's gene ids in row order."""
        ids = genes["gene_id"].astype(str).map(normalize_label)
        symbols = genes["symbol"] if "symbol" in genes.columns else pd.Series(pd.NA, genes.index)
        gene_of: dict[str, str] = {g: g for g in ids}
        symbol_of: dict[str, str] = {}
        for gid, sym in zip(ids, symbols):
            if sym is None or pd.isna(sym) or not str(sym).strip():
                continue
            symbol_of.setdefault(gid, str(sym).strip())
            gene_of.setdefault(str(sym).strip().upper(), gid)
        aliases: dict[str, set[str]] = {}
        for column in (c for c in ALIAS_COLUMNS if c in genes.columns):
            for gid, value in zip(ids, genes[column]):
                if value is None or pd.isna(value):
                    continue
                for alias in _SEPARATORS.split(str(value)):
                    key = alias.strip().upper()
                    if key and key not in gene_of:  # ids and current symbols win
                        aliases.setdefault(key, set()).add(gid)
        ambiguous = {}
        for key, owners in aliases.items():
            if len(owners) == 1:
                gene_of[key] = next(iter(owners))
            else:
                ambiguous[key] = tuple(sorted(owners))
        row_of = {normalize_label(g): i for i, g in enumerate(space_gene_ids)}
        return cls(row_of, gene_of, symbol_of, ambiguous)

    def resolve(self, label: object) -> str | None:
        """The gene id a label names, or None."""
        text = normalize_label(label)
        return self.gene_of.get(text) or self.gene_of.get(text.upper())

    def sort(self, labels: Iterable[object]) -> SortedGenes:
        """Sort one set's labels (see the module docstring); a gene named twice (by two
        labels, or the same one) counts once."""
        valid, rows, gene_ids, outside, invalid, repeated, notes = [], [], [], [], [], [], []
        seen: set[str] = set()
        for label in labels:
            text = normalize_label(label)
            if not text:
                continue
            gid = self.resolve(text)
            if gid is None:
                invalid.append(text)
                owners = self.ambiguous.get(text.upper())
                if owners:
                    notes.append(f"{text!r} is an alias of several genes ({', '.join(owners)})")
                continue
            if gid in seen:
                repeated.append(text)
                continue
            seen.add(gid)
            row = self.row_of.get(gid)
            if row is None:
                outside.append(text)
                continue
            valid.append(text)
            rows.append(row)
            gene_ids.append(gid)
        return SortedGenes(
            tuple(valid),
            tuple(rows),
            tuple(gene_ids),
            tuple(outside),
            tuple(invalid),
            tuple(repeated),
            tuple(notes),
        )

    def describe(self, gene_id: str) -> str:
        sym = self.symbol_of.get(gene_id)
        return f"{sym} ({gene_id})" if sym else gene_id


def read_gene_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The lake's ``genes`` tables (every release), one row per gene id, with whatever
    alias columns they carry."""
    if not paths:
        raise L1000InputError(
            "genes.parquet", "no genes table in the lake: materialize release_metadata first"
        )
    frames = []
    for path in paths:
        names = pq.read_schema(path).names
        columns = [c for c in ("gene_id", "symbol", "is_landmark", *ALIAS_COLUMNS) if c in names]
        frames.append(pq.read_table(path, columns=columns).to_pandas())
    genes = pd.concat(frames, ignore_index=True)
    genes["gene_id"] = genes["gene_id"].astype(str)
    return genes.drop_duplicates("gene_id").reset_index(drop=True)

"""Gene identifiers of a query: Entrez ids or symbols mapped to the model's landmark order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.schema import N_LANDMARKS


def _normalize_gene_label(label: object) -> str:
    text = str(label).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]  # Entrez ids written as floats by a spreadsheet
    return text


@dataclass(frozen=True)
class GeneIndex:
    """Maps gene identifiers (Entrez id or symbol) to positions in the model input."""

    gene_order: tuple[str, ...]  # the model's 978 landmark ids, in order
    position: dict[str, int]  # landmark gene id -> input position
    known_ids: frozenset[str]  # every gene id of the genes table
    symbols: dict[str, str]  # upper-case symbol -> gene id
    landmark_symbols: dict[str, str]  # landmark gene id -> symbol

    @classmethod
    def from_genes(
        cls, genes: pd.DataFrame, gene_order: Sequence[str], source: str | Path = "model card"
    ) -> GeneIndex:
        """From the lake's ``genes`` table(s) and the model's ``gene_order``.

        Raises :class:`L1000InputError` (naming ``source``) when the model's gene order is
        not the 978 landmark genes of the genes table: a model/gene-order mismatch.
        """
        order = [str(g) for g in gene_order]
        if len(order) != N_LANDMARKS or len(set(order)) != N_LANDMARKS:
            raise L1000InputError(
                source,
                f"gene_order has {len(order)} entries "
                f"({len(set(order))} distinct), expected "
                f"{N_LANDMARKS} landmark genes",
            )
        ids = genes["gene_id"].astype(str)
        landmarks = set(ids[genes["is_landmark"].fillna(False).astype(bool)])
        if set(order) != landmarks:
            off = sorted(set(order) ^ landmarks)
            raise L1000InputError(
                source,
                "model/gene-order mismatch: the model's gene_order "
                "is not the lake's set of landmark genes "
                f"({len(off)} differ: {preview_ids(off)})",
            )
        symbols: dict[str, str] = {}
        landmark_symbols: dict[str, str] = {}
        for gid, sym, is_lm in zip(ids, genes["symbol"], genes["is_landmark"].fillna(False)):
            if sym is None or pd.isna(sym):
                continue
            key = str(sym).strip().upper()
            # A symbol shared by a landmark and another gene resolves to the landmark.
            if key not in symbols or bool(is_lm):
                symbols[key] = gid
            if bool(is_lm):
                landmark_symbols[gid] = str(sym)
        return cls(
            tuple(order),
            {g: i for i, g in enumerate(order)},
            frozenset(ids),
            symbols,
            landmark_symbols,
        )

    def resolve(self, label: object) -> str | None:
        """The gene id of an Entrez id or symbol, or None if the genes table lacks it."""
        text = _normalize_gene_label(label)
        if text in self.known_ids:
            return text
        return self.symbols.get(text.upper())

    def matches(self, labels: Iterable[object]) -> int:
        return sum(self.resolve(x) is not None for x in labels)

    def describe(self, gene_id: str) -> str:
        sym = self.landmark_symbols.get(gene_id)
        return f"{gene_id} ({sym})" if sym else gene_id

    def describe_list(self, gene_ids: Sequence[str], limit: int = 10) -> str:
        """The first ``limit`` genes as ``id (SYMBOL)``, and how many more."""
        shown = ", ".join(self.describe(g) for g in gene_ids[:limit])
        more = len(gene_ids) - limit
        return shown + (f" and {more} more" if more > 0 else "")


def read_genes(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The lake's ``genes`` tables (every release), one row per gene id."""
    if not paths:
        raise L1000InputError(
            "genes.parquet", "no genes table in the lake: materialize release_metadata first"
        )
    frames = [
        pq.read_table(p, columns=["gene_id", "symbol", "is_landmark"]).to_pandas() for p in paths
    ]
    genes = pd.concat(frames, ignore_index=True)
    genes["gene_id"] = genes["gene_id"].astype(str)
    genes = genes.sort_values("is_landmark", ascending=False, kind="stable")
    return genes.drop_duplicates("gene_id").reset_index(drop=True)

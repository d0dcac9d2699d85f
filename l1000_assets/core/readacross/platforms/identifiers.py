"""Gene identifiers of other platforms, mapped to the genes table: Entrez ids, symbols,
Ensembl gene ids (through a mapping the user gives) and TempO-Seq probe names.

* Entrez ids (``7157``) and symbols (``TP53``, case-insensitive) resolve through the lake's
  ``genes`` table (:class:`~l1000_assets.core.readacross.genes.GeneIndex`).
* TempO-Seq probes are named ``<SYMBOL>_<probe number>`` (``TP53_1234``); a label of that
  form whose symbol resolves, and which is not itself a symbol, is a probe of that gene.
  Counts of several probes of one gene are summed (BioSpyder's gene-level counts).
* Ensembl gene ids (``ENSG00000141510``, with or without a ``.version``) are **not** in the
  genes table (the GEO ``gene_info`` has Entrez ids and symbols only) and no Ensembl
  mapping ships with the package or in ``../shared``: they resolve only through a mapping
  (a two-column table: Ensembl id, then Entrez id or symbol; ``--gene-map``), or through a
  symbol or Entrez column of the file itself (as nf-core's ``gene_name``), which the
  readers prefer whenever it names more genes.
* HTSeq's summary rows (``__no_feature``, ``__ambiguous``, ...) are skipped.

A file whose identifiers are of several types, or in which two rows resolve to one gene
(other than probes of one gene), is refused, naming the ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.readacross.genes import GeneIndex

ENSEMBL = re.compile(r"^ENS[A-Z]{0,6}G\d{11}(\.\d+)?$")
PROBE = re.compile(r"^(.+)_(\d+)$")
ENTREZ = re.compile(r"^\d+$")
COUNTER_PREFIX = "__"
KINDS = ("entrez", "symbol", "probe", "ensembl")


def _text(label: object) -> str:
    text = str(label).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    return text


def identifier_kind(label: object, genes: GeneIndex) -> str:
    """``entrez``, ``ensembl``, ``probe``, ``symbol`` or ``counter`` (HTSeq summary rows)."""
    text = _text(label)
    if text.startswith(COUNTER_PREFIX):
        return "counter"
    if ENSEMBL.match(text.upper()):
        return "ensembl"
    if ENTREZ.match(text):
        return "entrez"
    probe = PROBE.match(text)
    if probe and genes.resolve(text) is None and genes.symbols.get(probe.group(1).upper()):
        return "probe"
    return "symbol"


def read_gene_map(path: str | Path) -> dict[str, str]:
    """A user's identifier mapping: the first two columns of a CSV or TSV (from, to), e.g.
    Ensembl gene id -> Entrez id or symbol. Versions of Ensembl ids are dropped."""
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "gene mapping file not found")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise L1000InputError(path, f"cannot read the gene mapping: {exc}") from exc
    if table.shape[1] < 2 or table.empty:
        raise L1000InputError(path, "a gene mapping needs two columns (from, to) and rows")
    out: dict[str, str] = {}
    for source, target in zip(table.iloc[:, 0], table.iloc[:, 1]):
        key = _strip_version(_text(source))
        if key and target.strip():
            out.setdefault(key, target.strip())
    return out


def _strip_version(text: str) -> str:
    return text.split(".")[0] if ENSEMBL.match(text.upper()) else text


@dataclass(frozen=True)
class MappedGenes:
    """Gene id of every row of a file (None: not a gene of the genes table)."""

    labels: list[str]
    gene_ids: list[str | None]
    kind: str  # the file's identifier type
    n_unknown: int
    n_counters: int

    @property
    def known(self) -> np.ndarray:
        return np.array([g is not None for g in self.gene_ids], bool)


def map_identifiers(
    path: Path,
    labels: Sequence[object],
    genes: GeneIndex,
    *,
    gene_map: Mapping[str, str] | None = None,
    allow_repeats_of: Sequence[str] = ("probe",),
) -> MappedGenes:
    """The gene ids of ``labels`` (one file's row identifiers).

    Raises :class:`L1000InputError` naming ``path`` when the identifiers mix types, when
    Ensembl ids come without a mapping, or when two rows resolve to one gene (allowed for
    the kinds in ``allow_repeats_of``: probes of one gene, summed by the caller).
    """
    texts = [_text(x) for x in labels]
    kinds = [identifier_kind(t, genes) for t in texts]
    by_kind: dict[str, list[str]] = {}
    for text, kind in zip(texts, kinds):
        if kind != "counter":
            by_kind.setdefault(kind, []).append(text)
    if not by_kind:
        raise L1000InputError(path, "no gene identifiers in the file")
    # A symbol-looking label that the genes table does not know (a non-coding RNA of a
    # whole-transcriptome file) does not make the file "mixed"; a known one does.
    real = {
        k: v
        for k, v in by_kind.items()
        if k != "symbol" or any(genes.resolve(t) is not None for t in v)
    }
    if len(real) > 1:
        detail = "; ".join(f"{len(v)} {k} ({preview_ids(v, 3)})" for k, v in real.items())
        raise L1000InputError(
            path, f"mixed gene identifier types: {detail}. Use one type of identifier per file"
        )
    kind = next(iter(real)) if real else next(iter(by_kind))
    if kind == "ensembl" and not gene_map:
        raise L1000InputError(
            path,
            f"Ensembl gene ids ({preview_ids(by_kind['ensembl'], 3)}): the platform's genes "
            "table (GEO gene_info) has Entrez ids and symbols only and no Ensembl mapping "
            "ships offline. Give a mapping (--gene-map FILE: Ensembl id, then Entrez id or "
            "symbol) or a symbol or Entrez column in the file",
        )
    gene_ids: list[str | None] = []
    n_unknown = n_counters = 0
    for text, k in zip(texts, kinds):
        if k == "counter":
            gene_ids.append(None)
            n_counters += 1
            continue
        target = text
        if gene_map:
            target = gene_map.get(_strip_version(text), gene_map.get(text, text))
        gid = genes.resolve(target)
        if gid is None and k == "probe":
            gid = genes.symbols.get(PROBE.match(text).group(1).upper())
        if gid is None:
            n_unknown += 1
        gene_ids.append(gid)
    if kind not in allow_repeats_of:
        rows: dict[str, list[str]] = {}
        for text, gid in zip(texts, gene_ids):
            if gid is not None:
                rows.setdefault(gid, []).append(text)
        repeated = {g: r for g, r in rows.items() if len(r) > 1}
        if repeated:
            shown = "; ".join(
                f"{genes.describe(g)} as {' and '.join(map(repr, r))}"
                for g, r in list(repeated.items())[:5]
            )
            raise L1000InputError(
                path, f"{len(repeated)} gene(s) given more than once after mapping: {shown}"
            )
    return MappedGenes(texts, gene_ids, kind, n_unknown, n_counters)

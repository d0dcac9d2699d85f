"""Rebuild the reference tables of this folder from the real L1000 files in ``../shared``.

Usage (from the repository root)::

    .venv/bin/python -m l1000_assets.core.releases.reference.build \
        [--source ../shared/data/real-l1000] [--out l1000_assets/core/releases/reference]

Reads ``gene_info_n12328.txt`` (the GEO gene table of the level-4 files) and
``lincs_pert_info_moa_target.tsv.gz`` (signatureSearch's ``lincs_pert_info2``, Artistic-2.0)
and writes ``genes.tsv.gz`` and ``compounds.tsv.gz``. The Drug Repurposing Hub table in the
same folder is for non-commercial use only and is deliberately not read. The output is
byte-for-byte reproducible (gzip without a time stamp, fixed row order).
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[3].parent / "shared" / "data" / "real-l1000"

GENE_SOURCE = "gene_info_n12328.txt"
COMPOUND_SOURCE = "lincs_pert_info_moa_target.tsv.gz"
GENE_COLUMNS = ["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"]
COMPOUND_COLUMNS = [
    "pert_id",
    "pert_iname",
    "moa",
    "target",
    "canonical_smiles",
    "inchi_key",
]
MISSING = {"", "-666", "NA", "nan"}


def _clean(series: pd.Series) -> pd.Series:
    s = series.astype("string").str.strip()
    return s.where(~s.isin(MISSING))


def _join_list(value) -> str | None:
    """signatureSearch separates list items with ``"; "``; releases use ``"|"``."""
    if value is None or pd.isna(value):
        return None
    items = [v.strip() for v in str(value).split(";")]
    return "|".join(dict.fromkeys(v for v in items if v))


def build_genes(source: Path) -> pd.DataFrame:
    genes = pd.read_csv(source / GENE_SOURCE, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in GENE_COLUMNS if c not in genes.columns]
    if missing:
        raise ValueError(f"{source / GENE_SOURCE}: missing columns {missing}")
    genes = genes[GENE_COLUMNS].copy()
    if genes["pr_gene_id"].duplicated().any() or len(genes) != 12_328:
        raise ValueError(f"{source / GENE_SOURCE}: expected 12,328 unique gene ids")
    if (genes["pr_is_lm"] == "1").sum() != 978:
        raise ValueError(f"{source / GENE_SOURCE}: expected 978 landmarks")
    return genes.sort_values("pr_gene_id", key=lambda s: s.astype(int)).reset_index(drop=True)


def build_compounds(source: Path) -> pd.DataFrame:
    """Compounds with a SMILES, one per name (the first BRD id in id order), annotated
    compounds (MOA and target known) first."""
    raw = pd.read_csv(source / COMPOUND_SOURCE, sep="\t", dtype=str, keep_default_na=False)
    out = pd.DataFrame(
        {
            "pert_id": _clean(raw["pert_id"]),
            "pert_iname": _clean(raw["pert_iname"]),
            "moa": _clean(raw["MOA"]).map(_join_list, na_action="ignore"),
            "target": _clean(raw["target"]).map(_join_list, na_action="ignore"),
            "canonical_smiles": _clean(raw["canonical_smiles"]),
            "inchi_key": _clean(raw["inchi_key"]),
        }
    )
    out = out[out["pert_id"].str.match(r"^BRD-[A-Z]\d{8}$", na=False)]
    out = out[out["canonical_smiles"].notna()]
    out["pert_iname"] = out["pert_iname"].fillna(out["pert_id"])
    annotated = out["moa"].notna() & out["target"].notna()
    out = out.assign(_annotated=annotated).sort_values(
        ["_annotated", "pert_id"], ascending=[False, True]
    )
    out = out.drop_duplicates("pert_iname").drop_duplicates("canonical_smiles")
    return out[COMPOUND_COLUMNS].reset_index(drop=True)


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Gzipped TSV without a time stamp in the gzip header (reproducible bytes)."""
    text = df.to_csv(sep="\t", index=False, lineterminator="\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    genes = build_genes(args.source)
    compounds = build_compounds(args.source)
    write_table(genes, args.out / "genes.tsv.gz")
    write_table(compounds, args.out / "compounds.tsv.gz")
    n_annotated = int((compounds["moa"].notna() & compounds["target"].notna()).sum())
    print(f"genes: {len(genes):,} ({(genes['pr_is_lm'] == '1').sum()} landmarks)")
    print(f"compounds: {len(compounds):,} with a SMILES, {n_annotated:,} with MOA and target")
    for name in ("genes.tsv.gz", "compounds.tsv.gz"):
        print(f"  {args.out / name}: {(args.out / name).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

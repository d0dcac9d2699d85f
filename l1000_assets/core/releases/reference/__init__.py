"""Reference tables of the real L1000 platform, shipped with the package (see README.md).

``genes()`` is the GEO gene table of the level-4 files (12,328 genes, 978 landmarks);
``compounds()`` the LINCS compounds with a SMILES, with MOA and target where known. The
synthetic release draws its world from them, so it runs offline from a fresh clone.
``build.py`` rebuilds both from ``../shared/data/real-l1000``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import pandas as pd

GENES_FILE = "genes.tsv.gz"
COMPOUNDS_FILE = "compounds.tsv.gz"


def _read(name: str) -> pd.DataFrame:
    with files(__package__).joinpath(name).open("rb") as fh:
        return pd.read_csv(fh, sep="\t", dtype=str, keep_default_na=False, compression="gzip")


@lru_cache(maxsize=1)
def _genes() -> pd.DataFrame:
    return _read(GENES_FILE)


@lru_cache(maxsize=1)
def _compounds() -> pd.DataFrame:
    out = _read(COMPOUNDS_FILE)
    return out.replace({"": None})


def genes() -> pd.DataFrame:
    """``pr_gene_id, pr_gene_symbol, pr_gene_title, pr_is_lm, pr_is_bing`` (strings), in
    ascending numeric gene id; a copy."""
    return _genes().copy()


def compounds() -> pd.DataFrame:
    """``pert_id, pert_iname, moa, target, canonical_smiles, inchi_key`` (``|``-separated
    lists; None where unknown), annotated compounds first; a copy."""
    return _compounds().copy()

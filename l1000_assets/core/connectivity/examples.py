"""Example gene-set queries made from the store itself: a perturbagen's consensus signature
(the mean of all its signatures) as its top and bottom ``k`` genes, by symbol. The demo
writes them so that the query commands of the README have files to run on; a user can do
the same to ask "what else acts like this compound?"."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from l1000_assets.core.connectivity.gene_sets import write_gmt, write_grp
from l1000_assets.core.connectivity.store import SignatureStore


def consensus_sets(
    store: SignatureStore, pert_id: str, k: int = 100
) -> tuple[list[str], list[str]]:
    """The up and down symbols (``k`` each) of a perturbagen's mean signature."""
    cols = np.flatnonzero(store.index["pert_id"].astype(str).to_numpy() == pert_id)
    if not len(cols):
        raise KeyError(pert_id)
    mean = store.read_z(cols).mean(axis=0)
    order = np.argsort(-mean, kind="stable")
    labels = store.genes["symbol"].fillna(store.genes["gene_id"]).astype(str).to_numpy()
    return labels[order[:k]].tolist(), labels[order[::-1][:k]].tolist()


def strongest_compounds(store: SignatureStore, n: int) -> list[str]:
    """The ``n`` compounds whose signatures move their landmark genes most (mean |z|)."""
    spread = np.abs(np.asarray(store.zscores[store.landmark_rows], np.float32)).mean(axis=0)
    index = store.index.assign(spread=spread)
    compounds = index[index["pert_type"] == "trt_cp"]
    if compounds.empty:
        compounds = index
    ranked = compounds.groupby("pert_id")["spread"].mean().sort_values(ascending=False)
    return ranked.index[:n].astype(str).tolist()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "query"


def write_examples(
    store: SignatureStore, queries_dir: str | Path, examples_dir: str | Path, *, k: int = 100
) -> list[Path]:
    """Write ``demo_up.grp`` / ``demo_dn.grp`` (the strongest compound's consensus) into
    ``examples_dir`` and ``demo_gene_sets.gmt`` (the two strongest, as ``like_<name>``)
    into ``queries_dir``; files already there are kept. Returns the files written."""
    written = []
    perts = strongest_compounds(store, 2)
    names = store.index.drop_duplicates("pert_id").set_index("pert_id")["pert_iname"]
    sets = {p: consensus_sets(store, p, k) for p in perts}
    examples = Path(examples_dir)
    for side, i in (("up", 0), ("dn", 1)):
        path = examples / f"demo_{side}.grp"
        if not path.exists():
            written.append(write_grp(path, sets[perts[0]][i]))
    gmt = Path(queries_dir) / "demo_gene_sets.gmt"
    if not gmt.exists():
        written.append(write_gmt(gmt, [(f"like_{_safe(str(names[p]))}", *sets[p]) for p in perts]))
    return written

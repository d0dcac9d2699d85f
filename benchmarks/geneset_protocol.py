"""The gene-set protocol on a lake (by default the demo's): how well each gene-set method
finds held-out perturbagens from their signatures' top and bottom genes.

Reads the signature store and tau reference (``connectivity_signatures``,
``connectivity_reference``), the held-out perturbagens of ``perturbagen_split`` (its test
fold), and, for the embedding method, the served model and its ``signature_embeddings``;
runs :func:`l1000_assets.core.connectivity.evaluation.geneset_protocol` and prints the
metrics (median rank quantile, recall at top-0.001/0.01/0.1, AUC, balanced MCC) per method
and query group, with the number of queries and positives.

Usage: ``python benchmarks/geneset_protocol.py [--data-root data] [--k 100] [--queries 500]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("L1000_DATA_ROOT", "data"))
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from l1000_assets.core.connectivity.evaluation import geneset_protocol, summary_table
    from l1000_assets.core.connectivity.reference import Reference
    from l1000_assets.core.connectivity.results import REFERENCE_DIR, STORE_DIR
    from l1000_assets.core.connectivity.store import SignatureStore
    from l1000_assets.core.embeddings.vectors import read_embeddings
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.store import load_card, load_embedding
    from l1000_assets.lib.resources import LakeResource

    lake = LakeResource(root=args.data_root)
    store = SignatureStore(lake.connectivity_dir / STORE_DIR)
    reference = Reference(lake.connectivity_dir / REFERENCE_DIR, store)
    split = pd.read_parquet(lake.split_path)
    heldout = set(split.loc[split["split"] == "test", "pert_id"].astype(str))
    model = load_embedding(lake.model_dir)
    gene_order = load_card(lake.model_dir)["gene_order"]
    table, vectors = read_embeddings(lake.signature_embeddings_path, ["sig_id"])
    position = pd.Series(np.arange(table.num_rows), index=table.column("sig_id").to_pylist())
    rows = position.reindex(store.index["sig_id"].astype(str)).to_numpy()
    aligned = np.full((len(store), vectors.shape[1]), np.nan, np.float32)
    aligned[~np.isnan(rows)] = vectors[rows[~np.isnan(rows)].astype(np.int64)]
    t0 = time.perf_counter()
    runs = geneset_protocol(
        store,
        heldout,
        reference=reference,
        k=args.k,
        max_queries=args.queries,
        seed=args.seed,
        embed=lambda x: embed(model, x),
        gene_order=gene_order,
        signature_vectors=aligned,
        log=print,
    )
    seconds = time.perf_counter() - t0
    summary = summary_table(runs)
    wide = summary.pivot_table(
        index=["group", "method"], columns="metric", values="value", sort=False
    ).reset_index()
    counts = summary.drop_duplicates(["group", "method"])[
        ["group", "method", "n_queries", "n_positives"]
    ]
    wide = wide.merge(counts, on=["group", "method"])
    columns = [
        "group",
        "method",
        "median_quantile",
        "recall_top_0.001",
        "recall_top_0.01",
        "recall_top_0.1",
        "auc",
        "mcc",
        "n_queries",
        "n_positives",
    ]
    print(
        f"\ngene-set protocol: {len(heldout):,} held-out perturbagens, top/bottom {args.k} "
        f"genes of {store.gene_space} space, {seconds:.0f} s\n"
    )
    print(wide[[c for c in columns if c in wide]].round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()

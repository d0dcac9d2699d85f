"""The gene-set protocol on a lake (by default the demo's): how well each gene-set method
finds held-out perturbagens from their signatures' top and bottom genes.

Reads the signature store and tau reference (``connectivity_signatures``,
``connectivity_reference``) and, for each split partition asked (default ``split_0``), its
held-out perturbagens (the test fold of ``perturbagen_split[split]``) and its model
(``embedding_model[split]``, which never saw them), as ``evaluation_ranks`` does; runs
:func:`l1000_assets.core.connectivity.evaluation.geneset_protocol`, pools the splits' ranks
with the evaluation's report (:func:`~l1000_assets.core.evaluation.report.metrics_table`)
and prints the metrics (median rank quantile, recall at top-0.001/0.01/0.1, AUC, balanced
MCC) per method and query group, with the number of queries and positives, and the time.

Usage: ``python benchmarks/geneset_protocol.py [--data-root data] [--splits split_0 split_1]
[--k 100] [--queries 500]``
"""

from __future__ import annotations

import argparse
import functools
import os
import time

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=os.environ.get("L1000_DATA_ROOT", "data"))
    parser.add_argument("--splits", nargs="+", default=["split_0"])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from l1000_assets.core.connectivity.evaluation import (
        PROTOCOL,
        geneset_protocol,
        heldout_signature_vectors,
    )
    from l1000_assets.core.connectivity.reference import Reference
    from l1000_assets.core.connectivity.results import REFERENCE_DIR, STORE_DIR
    from l1000_assets.core.connectivity.store import SignatureStore
    from l1000_assets.core.evaluation.report import metrics_table, ranks_table
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.split import TEST, split_sets
    from l1000_assets.core.model.store import load_card, load_embedding
    from l1000_assets.lib.resources import LakeResource

    lake = LakeResource(root=args.data_root)
    store = SignatureStore(lake.connectivity_dir / STORE_DIR)
    reference = Reference(lake.connectivity_dir / REFERENCE_DIR, store)
    files = lake.landmark_files()
    frames, t0 = [], time.perf_counter()
    for split in args.splits:
        heldout = split_sets(pd.read_parquet(lake.split_path(split)))[TEST]
        model_dir = lake.split_model_dir(split)
        embed_split = functools.partial(embed, load_embedding(model_dir))
        vectors = heldout_signature_vectors(
            files, heldout, embed_split, store.index["sig_id"].astype(str)
        )
        runs = geneset_protocol(
            store,
            heldout,
            reference=reference,
            k=args.k,
            max_queries=args.queries,
            seed=args.seed,
            embed=embed_split,
            gene_order=load_card(model_dir)["gene_order"],
            signature_vectors=vectors,
            log=print,
        )
        print(f"{split}: {len(heldout):,} held-out perturbagens")
        frames.append(ranks_table(runs, split))
    seconds = time.perf_counter() - t0
    table, _ = metrics_table(pd.concat(frames, ignore_index=True), n_boot=0, per_cell_line=False)
    table = table[table["protocol"] == PROTOCOL]
    wide = table.pivot_table(
        index=["group", "method"], columns="metric", values="value", sort=False
    ).reset_index()
    counts = table.drop_duplicates(["group", "method"])[
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
        f"\ngene-set protocol: splits {', '.join(args.splits)}, top/bottom {args.k} genes of the "
        f"{store.gene_space} space ({store.n_genes:,} genes, {len(store):,} signatures), "
        f"{seconds:.0f} s\n"
    )
    print(wide[[c for c in columns if c in wide]].round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()

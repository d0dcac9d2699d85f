"""Read-across from other platforms, validated on the synthetic release's ground truth.

A synthetic release (landmark level 4 in memory), a split model trained on its training
perturbagens (split seed 0, 20% of perturbagens held out), reference perturbagen
embeddings of every perturbagen (the mean of its profiles' embeddings), the landmark
statistics of the training profiles; then RNA-seq, TempO-Seq panel, DE-table and level-3
renderings of the held-out perturbagens (``core/readacross/platforms/render.py``), read
back through the platform readers, at 978, 700, 500 and 300 measured landmarks, beside
level-4 queries of the same wells. Prints the table (SYNTHETIC: not biology).

    .venv/bin/python benchmarks/platforms.py [--profiles 12000] [--steps 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=12_000)
    parser.add_argument("--steps", type=int, default=1_500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-queries", type=int, default=120)
    parser.add_argument("--no-variants", action="store_true")
    args = parser.parse_args(argv)

    from l1000_assets.core.model.network import ModelConfig, embed
    from l1000_assets.core.model.normalization import NormalizationStats
    from l1000_assets.core.model.split import heldout_perturbagens
    from l1000_assets.core.model.training import SplitProfiles, TrainConfig, train
    from l1000_assets.core.readacross.genes import GeneIndex
    from l1000_assets.core.readacross.platforms.landmark_stats import landmark_stats_of
    from l1000_assets.core.readacross.platforms.validation import References, validate
    from l1000_assets.core.releases.synthetic import build_world, default_config, simulate

    def log(m):
        print(m, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    world, maps = build_world(default_config(n_profiles=args.profiles, seed=args.seed))
    inst, values = simulate(world, maps)
    treated = inst["pert_type"].str.startswith("trt").to_numpy()
    inst, values = inst[treated].reset_index(drop=True), values[treated]
    pert_ids = inst["pert_id"].to_numpy(str)
    held = set(heldout_perturbagens(pert_ids, seed=0))
    train_mask = ~np.isin(pert_ids, list(held))
    x_train = values[train_mask]
    stats = NormalizationStats(x_train.mean(0), np.maximum(x_train.std(0), 1e-6), len(x_train))
    empty = SplitProfiles(np.zeros((0, 978), np.float32), np.array([]), np.array([]))
    profiles = SplitProfiles(
        x_train, pert_ids[train_mask], inst["pert_type"].to_numpy(str)[train_mask]
    )
    log(
        f"release: {len(values):,} profiles, {len(held)} held-out perturbagens "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(
            [],
            sorted(set(pert_ids[train_mask])),
            empty,
            stats,
            ModelConfig(depth=8, growth=32),
            TrainConfig(steps=args.steps, batch_size=512, checkpoint_every=args.steps),
            Path(tmp) / "ckpt",
            log=log,
            profiles=profiles,
        )
        model = result.embedding
        z = embed(model, values)
        order = pd.Series(pert_ids).drop_duplicates().tolist()
        codes = pd.Categorical(pert_ids, categories=order).codes
        sums = np.zeros((len(order), z.shape[1]))
        np.add.at(sums, codes, z)
        vectors = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
        moa = world.perts.set_index("pert_id")["moa"].reindex(order).to_numpy(object)
        moa = np.array([m if isinstance(m, str) and m and m != "-666" else None for m in moa])
        refs = References(np.asarray(order), moa, vectors)
        lstats = landmark_stats_of(x_train)
        g = world.genes
        table = pd.DataFrame(
            {
                "gene_id": g["pr_gene_id"].astype(str),
                "symbol": g["pr_gene_symbol"],
                "is_landmark": g["pr_is_lm"].astype(int) == 1,
            }
        )
        genes = GeneIndex.from_genes(table, g["pr_gene_id"].astype(str).tolist()[:978])
        heldout = sorted(held & set(world.perts["pert_id"]))
        heldout = list(np.random.default_rng(0).permutation(heldout)[: args.max_queries])

        def embed_queries(x):
            out = embed(model, np.asarray(x, np.float32))
            return out / np.linalg.norm(out, axis=1, keepdims=True)

        rows = validate(
            world,
            heldout,
            genes,
            lstats,
            refs,
            embed_queries,
            Path(tmp) / "val",
            variants=not args.no_variants,
            log=log,
        )
    print(
        f"SYNTHETIC release ({args.profiles:,} profiles, seed {args.seed}; simulated, not "
        f"biology): {len(heldout)} held-out perturbagens of split 0, ranked among "
        f"{len(refs.pert_ids)} perturbagens by a split model (depth 8, growth 32, "
        f"{args.steps} steps); top-10 hit rates and AUC of the true perturbagen, top-10 "
        f"rate of another perturbagen of its MOA ({time.perf_counter() - t0:.0f} s)\n"
    )
    print(rows.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

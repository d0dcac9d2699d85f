"""The ``l1000`` command line: synthetic releases, calibration, the end-to-end demo and
read-across with your own profiles."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from l1000_assets.core.errors import L1000InputError


def _synth(args: argparse.Namespace) -> int:
    from l1000_assets.core.progress import ProgressReporter
    from l1000_assets.core.releases.synthetic import (
        default_config,
        write_synthetic_release,
    )

    config = default_config(n_profiles=args.profiles, seed=args.seed)
    t0 = time.perf_counter()
    files = write_synthetic_release(
        args.out,
        config,
        progress=ProgressReporter(lambda m: print(m, file=sys.stderr, flush=True)),
    )
    dt = time.perf_counter() - t0
    print(
        f"wrote {config.n_profiles:,} profiles x 12,328 genes in {dt:.1f} s "
        f"({config.n_profiles / dt:,.0f} profiles/s)"
    )
    for name in ("level4", "inst_info", "gene_info", "pert_info", "cell_info", "manifest"):
        print(f"  {getattr(files, name)}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from l1000_assets.core.releases.calibration import (
        SPLIT_SEEDS,
        calibrate,
        figures_table,
        format_rows,
    )
    from l1000_assets.core.releases.synthetic import default_config

    results = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        results[f"seed {seed}"] = calibrate(default_config(n_profiles=args.profiles, seed=seed))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(
        f"SYNTHETIC release (simulated profiles, real gene and compound names; not biology): "
        f"{args.profiles:,} profiles per seed; z-score baselines on held-out perturbagens "
        f"(ranks pooled over split seeds {', '.join(map(str, SPLIT_SEEDS))}), beside the "
        "published figures on real L1000 (Donner et al. 2018). * = outside the band.\n"
    )
    print(figures_table(results))
    if args.details:
        for name, result in results.items():
            print(f"\nSYNTHETIC release, {name}: every retrieval\n")
            print(format_rows(result.rows))
    outside = {name: r.outside_band() for name, r in results.items() if r.outside_band()}
    if outside:
        print(f"\noutside the band: {outside}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from l1000_assets.lib.demo import run_demo

    return run_demo(data_root=Path(args.data_root), n_profiles=args.profiles, seed=args.seed)


def _read_across(args: argparse.Namespace) -> int:
    from l1000_assets.core.progress import ProgressReporter
    from l1000_assets.core.readacross.query_files import QueryOptions
    from l1000_assets.core.readacross.ranking import ReadAcross
    from l1000_assets.lib.resources import LakeResource

    def err(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    lake = LakeResource(root=str(args.data_root))
    # The card, genes and references only: the model is loaded once a file has been read
    # and checked, so a bad file costs no model load.
    engine = ReadAcross(
        lake.model_dir,
        lake.metadata_files("genes"),
        lake.metadata_files("perturbagens"),
        lake.perturbagen_embeddings_path,
        cell=args.cell,
        pert_type=args.pert_type,
    )
    from l1000_assets.core.readacross.platforms.inputs import PlatformOptions

    options = QueryOptions(
        max_missing=(
            args.max_missing
            if args.max_missing is not None
            else (978 - args.min_landmarks if args.impute else 50)
        ),
        allow_unknown=args.allow_unknown_genes,
        allow_non_zscores=args.allow_non_zscores,
        max_bytes=args.max_bytes,
        impute=args.impute,
    )
    platform_options = PlatformOptions(
        count_transform=args.count_transform,
        scale=args.scale,
        de_value=args.de_value,
        control_spread=args.control_spread,
        min_landmarks=args.min_landmarks,
        impute=not args.no_impute,
    )
    read_options = {
        "platform": args.platform,
        "samples": args.samples,
        "gene_map": args.gene_map,
        "platform_options": platform_options,
    }
    scope = f"cell line {args.cell}" if args.cell else "all cell lines"
    from l1000_assets.lib.lake import synthetic_releases

    synthetic = synthetic_releases(lake)
    if synthetic:  # the references come from a simulated release: say so with every table
        scope += f"; SYNTHETIC release ({', '.join(synthetic)}): simulated, not biology"
    frames, failed = [], 0
    for path in args.files:

        def progress(stage: str, name: str = path.name):
            reporter = ProgressReporter(lambda m: err(f"{name}: {stage} {m}"), interval=2.0)
            # Only big inputs get a progress line.
            return lambda done, total, elapsed: (
                reporter(done, total, elapsed) if total >= args.progress_from else None
            )

        try:
            q = engine.read(path, options, progress=progress("read"), **read_options)
        except L1000InputError as exc:
            err(f"error: {exc}")
            failed += 1
            continue
        engine.model  # noqa: B018 - loaded here, once: a model problem ends the command
        try:
            result = engine.rank_query(q, top=args.top, progress=progress("embedded"))
        except L1000InputError as exc:
            err(f"error: {exc}")
            failed += 1
            continue
        err(
            f"{path}: {len(q.profile_ids):,} profile(s), {q.n_landmarks_used}/978 landmark genes"
            + (
                f"; missing (set to 0): {', '.join(q.missing[:10])}"
                f"{f' and {len(q.missing) - 10} more' if len(q.missing) > 10 else ''}"
                if q.missing
                else ""
            )
            + (f"; {len(q.unknown)} unknown gene id(s) skipped" if q.unknown else "")
        )
        for warning in q.warnings:
            err(f"warning: {path}: {warning}")
        err(f"{path}: platform {q.platform}; transform: {q.transform}")
        for qid, warnings in zip(q.profile_ids, q.profile_warnings):
            for warning in warnings:
                err(f"warning: {path}: {qid}: {warning}")
        if q.imputed:
            err(
                f"{path}: {len(q.imputed)} landmark(s) imputed: "
                + ", ".join(engine.genes.describe(g) for g in q.imputed[:10])
                + (f" and {len(q.imputed) - 10} more" if len(q.imputed) > 10 else "")
            )
        hits = result.hits
        print(f"\n{path.name}: top {args.top} perturbagens ({scope}, model {engine.version})")
        table = hits[
            [
                "query_id",
                "rank",
                "similarity",
                "pert_id",
                "pert_iname",
                "pert_type",
                "moa",
                "target",
            ]
        ].fillna("")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        frames.append(hits)
    if args.out and frames:
        import pandas as pd

        pd.concat(frames).to_csv(args.out, index=False)
        err(f"wrote {args.out}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l1000", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="write a synthetic LINCS release in GEO layout")
    synth.add_argument("--out", required=True, type=Path, help="output directory")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument(
        "--profiles",
        type=int,
        default=36_000,
        help="number of level-4 profiles, controls included (default 36,000)",
    )
    synth.set_defaults(func=_synth)

    cal = sub.add_parser(
        "calibrate",
        help="every published z-score figure on synthetic releases, beside the paper's",
    )
    cal.add_argument("--profiles", type=int, default=36_000)
    cal.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    cal.add_argument(
        "--details", action="store_true", help="also print every retrieval (Table-1 layout)"
    )
    cal.set_defaults(func=_calibrate)

    demo = sub.add_parser("demo", help="generate the synthetic release and materialize every asset")
    demo.add_argument("--data-root", default=os.environ.get("L1000_DATA_ROOT", "data"))
    demo.add_argument("--profiles", type=int, default=36_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    ra = sub.add_parser(
        "read-across",
        help="rank known perturbagens against your own profiles",
        description="Embed the profiles of FILE(s) with the current model and print the most "
        "similar perturbagens. Input: GCT, GCTX, CSV or TSV of level-4-like "
        "landmark z-scores (robust z-scores against the plate or experiment "
        "population), genes as Entrez ids or symbols, one or many profiles.",
    )
    ra.add_argument("files", nargs="+", type=Path, metavar="FILE", help="query file(s)")
    ra.add_argument("--top", type=int, default=20, help="perturbagens per profile (default 20)")
    ra.add_argument(
        "--data-root",
        default=os.environ.get("L1000_DATA_ROOT", "data"),
        help="data root with the model and embeddings (default $L1000_DATA_ROOT or ./data)",
    )
    ra.add_argument(
        "--cell", default=None, help="rank against one cell line's perturbagen embeddings"
    )
    ra.add_argument("--pert-type", default=None, help="only this type (trt_cp, trt_sh, ...)")
    ra.add_argument(
        "--platform",
        choices=["zscores", "rnaseq", "de", "l1000-level3"],
        default="zscores",
        help="input kind: zscores (level-4-like landmark z-scores, the default), rnaseq "
        "(counts matrix, genes x samples, with --samples), de (differential-expression "
        "table: gene, log2fc, optional stat, pvalue, padj, contrast), l1000-level3 (a "
        "level-3 GCT/GCTX plate; against the plate population, or the controls of --samples)",
    )
    ra.add_argument(
        "--samples",
        type=Path,
        default=None,
        metavar="SHEET",
        help="sample sheet (CSV/TSV: sample, group, optional batch or plate; group "
        "'control' marks the reference samples)",
    )
    ra.add_argument(
        "--gene-map",
        type=Path,
        default=None,
        metavar="FILE",
        help="identifier mapping (two columns: the file's id, e.g. Ensembl, then Entrez id "
        "or symbol); Ensembl ids need it (none ships offline)",
    )
    ra.add_argument(
        "--count-transform",
        choices=["vst", "log2cpm"],
        default="vst",
        help="variance-stabilized log of counts: vst (negative-binomial, the default: it "
        "ranked best on the validation) or log2cpm (log2(CPM + 1))",
    )
    ra.add_argument(
        "--scale",
        choices=["none", "quantile"],
        default="none",
        help="quantile: map each profile onto the lake's level-4 z-score distribution",
    )
    ra.add_argument(
        "--de-value",
        choices=["auto", "log2fc"],
        default="auto",
        help="DE tables: the statistic (else a signed z from the p-value), or log2fc",
    )
    ra.add_argument(
        "--control-spread",
        choices=["pooled", "batch"],
        default="pooled",
        help="each gene's MAD from every batch's controls around their batch median (pooled, "
        "the default: it ranked best on the validation) or from the sample's batch alone",
    )
    ra.add_argument(
        "--min-landmarks",
        type=int,
        default=100,
        help="fewest measured landmarks for imputing the rest (default 100)",
    )
    ra.add_argument(
        "--impute",
        action="store_true",
        help="zscores: impute missing landmarks (ridge on the measured ones, fitted on the "
        "lake) instead of setting them to 0; then up to 978 - --min-landmarks may be missing",
    )
    ra.add_argument(
        "--no-impute",
        action="store_true",
        help="other platforms: set unmeasured landmarks to 0 instead of imputing them",
    )
    ra.add_argument(
        "--max-missing",
        type=int,
        default=None,
        help="zscores: landmark genes a file may lack, set to 0 (default 50 of 978)",
    )
    ra.add_argument(
        "--allow-unknown-genes",
        action="store_true",
        help="skip gene ids the genes table does not know instead of refusing",
    )
    ra.add_argument(
        "--allow-non-zscores",
        action="store_true",
        help="rank profiles that plainly are not z-scores (no negative value, only whole "
        "numbers, or a median far from 0) instead of refusing them; better: convert to "
        "z-scores first",
    )
    ra.add_argument(
        "--max-bytes",
        type=int,
        default=None,
        help="refuse query files larger than this, unread (default 64 MiB for GCT, CSV and "
        "TSV, which are parsed whole; 2 GiB for GCTX, which is streamed)",
    )
    ra.add_argument("--out", type=Path, default=None, help="also write the hits as CSV")
    ra.add_argument(
        "--progress-from",
        type=int,
        default=1000,
        help="show progress for inputs of at least this many profiles",
    )
    ra.set_defaults(func=_read_across)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "profiles", 1) < 1:
        print("error: --profiles must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "top", 1) < 1 or (getattr(args, "max_missing", 0) or 0) < 0:
        print("error: --top must be at least 1 and --max-missing at least 0", file=sys.stderr)
        return 2
    if getattr(args, "platform", None) == "zscores" and (args.samples or args.gene_map):
        print(
            "error: --samples and --gene-map are for --platform rnaseq, de or l1000-level3",
            file=sys.stderr,
        )
        return 2
    if getattr(args, "max_bytes", None) is not None and args.max_bytes < 1:
        print("error: --max-bytes must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except L1000InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

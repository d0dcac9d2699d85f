"""The ``l1000`` command line: synthetic releases, calibration, the end-to-end demo,
read-across with your own profiles and gene-set queries."""

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
    options = QueryOptions(
        max_missing=args.max_missing,
        allow_unknown=args.allow_unknown_genes,
        allow_non_zscores=args.allow_non_zscores,
        max_bytes=args.max_bytes,
    )
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
            q = engine.read(path, options, progress=progress("read"))
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


def _query(args: argparse.Namespace) -> int:
    import pandas as pd

    from l1000_assets.core.connectivity.engine import (
        ConnectivityEngine,
        QueryFailure,
        QueryOptions,
    )
    from l1000_assets.core.connectivity.gene_sets import GeneSetOptions, query_from_grp
    from l1000_assets.core.connectivity.results import REFERENCE_DIR, STORE_DIR
    from l1000_assets.lib.resources import LakeResource

    def err(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.up is None and args.down is None and not args.files:
        err("error: give --up and/or --down GRP files, or gene-set FILE(s) (GMT, GRP, CSV/TSV)")
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    lake = LakeResource(root=str(args.data_root))
    engine = ConnectivityEngine(
        lake.connectivity_dir / STORE_DIR,
        lake.metadata_files("genes"),
        lake.metadata_files("perturbagens"),
        reference_dir=lake.connectivity_dir / REFERENCE_DIR,
        model_dir=lake.model_dir,
        signature_embeddings=lake.signature_embeddings_path,
    )
    options = QueryOptions(
        method=args.method,
        direction="reversers" if args.reverse else "mimickers",
        level=args.level,
        top=args.top,
        cell=args.cell,
        pert_type=args.pert_type,
        genes=GeneSetOptions(args.min_genes, args.max_genes),
        enrichment_top=args.enrich_top,
        prerank=args.prerank,
    )
    queries, failures = engine.read(args.files, options)
    if args.up is not None or args.down is not None:
        try:
            more, refused = engine.check([query_from_grp(args.up, args.down)], options)
        except L1000InputError as exc:
            more, refused = [], [QueryFailure((exc.path,), None, str(exc))]
        queries += more
        failures += refused
    for failure in failures:
        err(f"error: {failure.message}")
    results = engine.run(queries, options) if queries else []
    scope = f"cell line {args.cell}" if args.cell else "all cell lines"
    kind = f", {args.pert_type}" if args.pert_type else ""
    score_columns = {
        "wtcs": ["wtcs", "ncs", "tau"],
        "ncs": ["ncs", "wtcs", "tau"],
        "tau": ["tau", "ncs", "wtcs"],
        "mwu": ["score", "z_up", "z_down", "fdr_up", "fdr_down", "tau"],
        "embedding": ["similarity", "wtcs", "tau"],
    }[args.method]
    frames = []
    for result in results:
        q = result.query
        genes = q.genes_report()
        err(
            f"{q.name} ({', '.join(str(f) for f in q.files)}): "
            + "; ".join(
                f"{side} {len(genes[f'{side}_valid'])} valid, "
                f"{len(genes[f'{side}_outside'])} outside the {engine.store.gene_space} space, "
                f"{len(genes[f'{side}_invalid'])} invalid"
                + (
                    f" ({', '.join(genes[f'{side}_invalid'][:5])})"
                    if genes[f"{side}_invalid"]
                    else ""
                )
                for side, given in (("up", q.up), ("down", q.down))
                if given is not None
            )
        )
        hits = result.hits.assign(cell=lambda d: d["cell_id"].fillna(scope))
        columns = ["rank", "pert_id", "pert_iname", "pert_type", "moa", "target", "cell"]
        columns += [c for c in score_columns if c in hits.columns]
        columns += ["n_cell_lines"] if args.level == "perturbagen" and not args.cell else []
        print(
            f"\n{q.name}: top {args.top} {options.direction} by {args.method} "
            f"({args.level} level, {scope}{kind}; store {engine.store.version})"
        )
        fdr = {c: (lambda v: f"{v:.1e}" if v == v else "") for c in ("fdr_up", "fdr_down")}
        print(
            hits[columns].to_string(
                index=False, float_format=lambda v: f"{v:.3f}", formatters=fdr, na_rep=""
            )
        )
        if args.enrich and len(result.enrichment):
            terms = result.enrichment[result.enrichment["fdr"] <= args.max_fdr]
            print(f"\n{q.name}: MOAs and targets enriched (FDR <= {args.max_fdr})")
            if len(terms):
                shown = terms.assign(hits=terms["hits"].map(lambda h: ", ".join(h[:6])))
                print(
                    shown[
                        ["test", "term_kind", "term", "n_hits_term", "n_term", "fdr", "hits"]
                    ].to_string(index=False, float_format=lambda v: f"{v:.2g}")
                )
            else:
                print("  none")
        frames.append(
            result.hits.assign(
                query_name=q.name,
                query_file=q.path.name,
                method=args.method,
                direction=options.direction,
                level=args.level,
            )
        )
    if args.out and frames:
        table = pd.concat(frames, ignore_index=True)
        if args.out.suffix.lower() == ".parquet":
            table.to_parquet(args.out, index=False)
        else:
            table.to_csv(args.out, index=False, sep="\t" if args.out.suffix == ".tsv" else ",")
        err(f"wrote {args.out}")
    return 1 if failures else 0


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
        "--max-missing",
        type=int,
        default=50,
        help="landmark genes a file may lack, set to 0 (default 50 of 978)",
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

    qu = sub.add_parser(
        "query",
        help="find perturbagens that mimic or reverse up/down gene sets (CMap-style)",
        description="Score up and down gene sets (GRP files, or GMT / gene-direction CSV/TSV "
        "files of many queries) against the lake's level-5 signatures in the BING gene space "
        "and print the strongest mimickers (or, with --reverse, reversers). Genes are symbols "
        "(any case), Entrez ids, or aliases where the gene table has them; each set needs "
        "10 to 150 valid genes. Needs connectivity_signatures and, for tau, "
        "connectivity_reference (both in `make demo`).",
    )
    qu.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="GMT, GRP or CSV/TSV gene-set files"
    )
    qu.add_argument("--up", type=Path, default=None, help="GRP file of the up-regulated genes")
    qu.add_argument("--down", type=Path, default=None, help="GRP file of the down-regulated genes")
    qu.add_argument("--reverse", action="store_true", help="list reversers (most negative first)")
    qu.add_argument(
        "--method",
        choices=["wtcs", "ncs", "tau", "mwu", "embedding"],
        default="tau",
        help="what ranks the hits (default tau; mwu: SigCom's rank test)",
    )
    qu.add_argument(
        "--level",
        choices=["perturbagen", "cell", "signature"],
        default="perturbagen",
        help="one row per perturbagen (summarized over cell lines; default), per "
        "perturbagen and cell line, or per signature",
    )
    qu.add_argument("--cell", default=None, help="only this cell line's signatures")
    qu.add_argument("--pert-type", default=None, help="only this type (trt_cp, trt_sh, ...)")
    qu.add_argument("--top", type=int, default=20, help="hits shown per query (default 20)")
    qu.add_argument("--min-genes", type=int, default=10, help="valid genes a set needs (10)")
    qu.add_argument("--max-genes", type=int, default=150, help="valid genes a set may have (150)")
    qu.add_argument(
        "--enrich", action="store_true", help="print the MOA and target enrichment of the hits"
    )
    qu.add_argument(
        "--enrich-top", type=int, default=50, help="top perturbagens tested (default 50)"
    )
    qu.add_argument(
        "--prerank", action="store_true", help="also GSEA's ranked-list test (with --enrich)"
    )
    qu.add_argument(
        "--max-fdr", type=float, default=0.05, help="enriched terms shown up to this FDR"
    )
    qu.add_argument(
        "--out", type=Path, default=None, help="also write the hits (.csv, .tsv or .parquet)"
    )
    qu.add_argument(
        "--data-root",
        default=os.environ.get("L1000_DATA_ROOT", "data"),
        help="data root (default $L1000_DATA_ROOT or ./data)",
    )
    qu.set_defaults(func=_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "profiles", 1) < 1:
        print("error: --profiles must be at least 1", file=sys.stderr)
        return 2
    if getattr(args, "top", 1) < 1 or getattr(args, "max_missing", 0) < 0:
        print("error: --top must be at least 1 and --max-missing at least 0", file=sys.stderr)
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

"""The l1000 command line: synthetic releases, calibration, the end-to-end demo,
read-across with your own profiles, gene-set queries (CMap-style) and the perturbagens
most like a known one.

Commands that only read (read-across, query, similar) never import Dagster, and rank
without TensorFlow when the model's weights are exported beside it (the embedding_model
asset exports them; l1000 export-weights does it for a model saved before)."""

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


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _read_across(args: argparse.Namespace) -> int:
    from l1000_assets.core.layout import DataRoot
    from l1000_assets.core.progress import ProgressReporter
    from l1000_assets.core.readacross.query_files import QueryOptions
    from l1000_assets.core.readacross.ranking import ReadAcross

    err = _err
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's chatter, if it loads
    lake = DataRoot.at(args.data_root)
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
    synthetic = lake.synthetic_releases()
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
        if engine.forward == "keras":  # loaded here, once: a model problem ends the command
            err(
                f"note: {engine.model_dir} has no exported weights: ranking through "
                "TensorFlow (slow to start); `l1000 export-weights` exports them once"
            )
        try:
            result = engine.rank_query(q, top=args.top, progress=progress("embedded"))
        except L1000InputError as exc:
            err(f"error: {exc}")
            failed += 1
            continue
        err(
            f"{path}: {len(q.profile_ids):,} profile(s), {q.n_landmarks_used}/978 landmark genes"
            + (
                f"; missing (set to 0): {engine.genes.describe_list(q.missing)}"
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

        from l1000_assets.core.output import write_table

        write_table(pd.concat(frames, ignore_index=True), args.out)
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
        from l1000_assets.core.output import write_table

        write_table(pd.concat(frames, ignore_index=True), args.out)
        err(f"wrote {args.out}")
    return 1 if failures else 0


def _similar(args: argparse.Namespace) -> int:
    import duckdb

    from l1000_assets.core.catalog.build import connect_read_only
    from l1000_assets.core.layout import DataRoot

    catalog = DataRoot.at(args.data_root).catalog_path
    macro = "similar_zscore_perturbagens" if args.zscore else "similar_perturbagens"
    con = connect_read_only(catalog)
    try:
        hits = con.execute(
            f"SELECT * FROM {macro}(?, k := ?, in_cell := ?, of_type := ?, shrna := ?)",
            [args.name, args.top, args.cell, args.pert_type, args.shrna],
        ).df()
    except duckdb.Error as exc:
        _err(f"error: {catalog}: {_sql_message(exc)}")
        return 1
    finally:
        con.close()
    method = "mean z-score cosine" if args.zscore else "embedding cosine"
    for query_id, group in hits.groupby("query_pert_id", sort=False):
        name = group["query_pert_iname"].iloc[0]
        cell = group["cell_id"].iloc[0]
        scope = f"in {cell}" if cell else "over all cell lines"
        kind = f", {group['pert_type'].iloc[0]} only" if args.pert_type else ""
        print(f"\n{name} ({query_id}): top {args.top} perturbagens {scope}{kind}, by {method}")
        table = group[["rank", "similarity", "pert_id", "pert_iname", "pert_type", "moa", "target"]]
        print(table.fillna("").to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        from l1000_assets.core.output import write_table

        write_table(hits, args.out)
        _err(f"wrote {args.out}")
    return 0


def _sql_message(exc: Exception) -> str:
    """A DuckDB error without its class prefix (e.g. 'Invalid Input Error: ')."""
    text = str(exc).strip()
    head, sep, rest = text.partition("Error: ")
    return rest if sep and len(head) < 40 else text


def _export_weights(args: argparse.Namespace) -> int:
    from l1000_assets.core.layout import DataRoot

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model_dir = Path(args.model_dir) if args.model_dir else DataRoot.at(args.data_root).model_dir
    if not (model_dir / "embedding.keras").exists():
        _err(f"error: {model_dir}: no embedding.keras: materialize embedding_model first")
        return 1
    from l1000_assets.core.model.store import export_model_weights

    path = export_model_weights(model_dir)
    print(f"wrote {path}")
    return 0


def _data_root(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--data-root",
        default=os.environ.get("L1000_DATA_ROOT", "data"),
        help=f"data root with {what} (default $L1000_DATA_ROOT, else ./data)",
    )


def _out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the hits to FILE, in the format its extension names: .csv, .tsv, "
        ".parquet, .json (records) or .jsonl (one record a line)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l1000",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = sub.add_parser(
        "synth",
        help="write a synthetic LINCS release in GEO layout",
        description="Write a synthetic LINCS L1000 release (level-4 GCTX and the inst, gene, "
        "pert and cell info tables, GEO GSE92742 layout) with known ground truth, into a "
        "temporary directory swapped in whole.",
    )
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
        description="Generate synthetic releases in memory and print every published z-score "
        "figure (same perturbagen, replicates, drug level, the structure baseline) on held-out "
        "perturbagens beside the paper's figures on real L1000, to check the synthetic "
        "release is about as hard.",
    )
    cal.add_argument(
        "--profiles", type=int, default=36_000, help="profiles per release (default 36,000)"
    )
    cal.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="one release per seed (default 0 1 2)",
    )
    cal.add_argument(
        "--details", action="store_true", help="also print every retrieval (Table-1 layout)"
    )
    cal.set_defaults(func=_calibrate)

    demo = sub.add_parser(
        "demo",
        help="generate the synthetic release and materialize every asset",
        description="Generate the synthetic release and materialize every asset and check, "
        "stage by stage, on the Dagster instance in $DAGSTER_HOME (the runs show in the UI), "
        "then print where the outputs are and the evaluation table.",
    )
    _data_root(demo, "the releases, lake, models and catalog to write")
    demo.add_argument(
        "--profiles", type=int, default=36_000, help="synthetic profiles (default 36,000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="synthetic release seed (default 0)")
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
    _data_root(ra, "the model and embeddings")
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
    _out(ra)
    ra.add_argument(
        "--progress-from",
        type=int,
        default=1000,
        help="show progress for inputs of at least this many profiles (default 1,000)",
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
        "connectivity_reference (both built by make demo).",
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
    _out(qu)
    _data_root(qu, "the signature store")
    qu.set_defaults(func=_query)

    sim = sub.add_parser(
        "similar",
        help="the perturbagens most like a known one",
        description="Print the perturbagens whose embeddings are most like NAME's, from the "
        "DuckDB catalog (opened read-only; materialize warehouse first). NAME is a pert_id "
        "or a perturbagen name (pert_iname, or a gene symbol for shRNAs and cDNAs), in "
        "any case; an unknown name is refused with the closest known names.",
    )
    sim.add_argument("name", metavar="NAME", help="pert_id or name, e.g. BRD-K12345 or a drug")
    sim.add_argument("--top", type=int, default=20, help="perturbagens shown (default 20)")
    sim.add_argument(
        "--cell", default=None, help="compare within one cell line (default: over all)"
    )
    sim.add_argument("--pert-type", default=None, help="only hits of this type (trt_cp, trt_sh...)")
    sim.add_argument(
        "--shrna",
        choices=["gene", "hairpin"],
        default="gene",
        help="shRNAs collapsed to their gene, CMap's consensus gene signature trt_sh.cgs "
        "(default), or each hairpin",
    )
    sim.add_argument(
        "--zscore",
        action="store_true",
        help="the baseline: cosine of mean z-score profiles instead of the embedding",
    )
    _data_root(sim, "the catalog")
    _out(sim)
    sim.set_defaults(func=_similar)

    ex = sub.add_parser(
        "export-weights",
        help="export the model's weights so ranking runs without TensorFlow",
        description="Write embedding_weights.npz beside embedding.keras, checked against the "
        "Keras model, so read-across embeds profiles in numpy. The embedding_model asset "
        "does this at save time; this is for a model directory saved before.",
    )
    _data_root(ex, "the model")
    ex.add_argument(
        "--model-dir", default=None, help="a model directory (default: the data root's model)"
    )
    ex.set_defaults(func=_export_weights)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("l1000_assets")
    except PackageNotFoundError:
        return "unknown (not installed)"


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
    if getattr(args, "out", None) is not None and args.func is not _synth:
        from l1000_assets.core.output import table_format

        try:
            table_format(args.out)
        except ValueError as exc:
            print(f"error: --out {exc}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except L1000InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

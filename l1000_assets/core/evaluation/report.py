"""The evaluation's report: the ranks of one split as a table, the tidy metrics table of
ranks pooled over splits (with the per-split spread), recall curves and their plot, and a
summary laid out like the paper's Table 1 beside the published figures.

Pooling is the paper's: every positive's rank quantile from every split goes into one set
before the median, recalls and AUC are taken; MCC pools every split's balanced (positive,
paired negative) scores and thresholds them at their median
(:func:`~l1000_assets.core.evaluation.retrieval.balanced_mcc`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.evaluation.metrics import SUMMARY_METRICS, recall_at, summarize_quantiles
from l1000_assets.core.evaluation.protocols import (
    DIRECT_PROTOCOLS,
    DRUG_LEVEL,
    METHODS,
    PROTOCOLS,
    ProtocolRun,
)
from l1000_assets.core.evaluation.retrieval import balanced_mcc

METRICS = (*SUMMARY_METRICS, "mcc")
"""The metric names of the tidy table (``evaluation_metrics.parquet``, the SQL view)."""
QUANTILE_GRID = np.concatenate([[0.0], np.logspace(-4, 0, 81)])


# Donner et al. 2018, GSE92742 + GSE70138, 41 splits, held-out perturbagens.
PUBLISHED = pd.DataFrame(
    [
        ("all", "zscore_cosine", 0.170, 0.064, 0.265, 0.430, 0.696),
        ("all", "embedding", 0.0056, 0.360, 0.557, 0.782, 0.902),
        ("small_molecules", "zscore_cosine", 0.196, 0.051, 0.265, 0.412, 0.682),
        ("small_molecules", "embedding", 0.0120, 0.295, 0.480, 0.738, 0.904),
    ],
    columns=["group", "method", *SUMMARY_METRICS],
)
PUBLISHED_AUC = {
    ("replicates", "zscore_cosine"): 0.843,
    ("replicates", "embedding"): 0.965,
    ("target", "zscore_cosine"): 0.826,
    ("target", "embedding"): 0.901,  # held out (Table 2's holdout variant)
    ("target_direct", "zscore_cosine"): 0.826,
    ("target_direct", "embedding"): 0.906,  # direct training
}
PUBLISHED_MCC = {"zscore_cosine": "0.262", "embedding": "0.648"}


RANK_COLUMNS = [
    "split",
    "protocol",
    "method",
    "query",
    "cluster",
    "kind",
    "cell_id",
    "quantile",
    "positive_score",
    "negative_score",
    "pair_tanimoto",
]
"""One row per positive: the ranks one split contributes (``evaluation_ranks``);
``pair_tanimoto`` (drug level, with fingerprints) is the ECFP4 Tanimoto of the query and
the positive, NaN elsewhere."""


def ranks_table(runs: Sequence[ProtocolRun], split: str) -> pd.DataFrame:
    """Every positive of ``runs`` (one split) as a row of :data:`RANK_COLUMNS`: its rank
    quantile, its score and its paired negative's score (for the pooled MCC), and its
    query's index, perturbagen, kind and cell line (``None`` at drug level)."""
    frames = []
    for run in runs:
        r = run.result
        qi = r.query_index
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "protocol": run.protocol,
                    "method": run.method,
                    "query": qi.astype(np.int32),
                    "cluster": run.query_clusters[qi],
                    "kind": run.query_kinds[qi],
                    "cell_id": run.query_cells[qi] if run.query_cells is not None else None,
                    "quantile": r.quantiles,
                    "positive_score": r.positive_scores.astype(np.float32),
                    "negative_score": r.negative_scores.astype(np.float32),
                    "pair_tanimoto": (
                        run.pair_tanimoto
                        if run.pair_tanimoto is not None
                        else np.full(len(qi), np.nan, np.float32)
                    ),
                }
            )
        )
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RANK_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    for column in ("split", "protocol", "method", "kind", "cell_id"):
        out[column] = out[column].astype("category")
    return out


def _groups(sub: pd.DataFrame, per_cell_line: bool) -> dict[str, NDArray[np.bool_]]:
    """Query groups of one protocol's ranks: ``all``; at profile level also each kind and,
    with ``per_cell_line``, each cell line (drug-level ranks are compounds only)."""
    groups = {"all": np.ones(len(sub), bool)}
    cells = sub["cell_id"]
    if cells.isna().all():
        return groups
    kinds = sub["kind"].astype(str).to_numpy()
    for kind in ("small_molecules", "genetic"):
        if (kinds == kind).any():
            groups[kind] = kinds == kind
    if per_cell_line:
        values = cells.astype(str).to_numpy()
        for cell in sorted(set(values)):
            groups[f"cell:{cell}"] = values == cell
    return groups


def pooled_metrics(sub: pd.DataFrame) -> dict[str, float]:
    """:data:`METRICS` of ranks pooled over every split and query in ``sub``."""
    out = summarize_quantiles(sub["quantile"].to_numpy())
    out["mcc"] = balanced_mcc(sub["positive_score"].to_numpy(), sub["negative_score"].to_numpy())
    return out


def _bootstrap(sub: pd.DataFrame, n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap (95%) of the summary metrics over query perturbagens."""
    q = sub["quantile"].to_numpy()
    _, cid = np.unique(sub["cluster"].astype(str).to_numpy(), return_inverse=True)
    order = np.argsort(q, kind="stable")
    qs, cs = q[order], cid[order]
    k = int(cid.max()) + 1
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in SUMMARY_METRICS}
    for _ in range(n_boot):
        w = rng.multinomial(k, np.full(k, 1.0 / k))[cs].astype(np.float64)
        if w.sum() == 0:
            continue
        for m, v in summarize_quantiles(qs, w).items():
            draws[m].append(v)
    return {m: tuple(np.percentile(d, [2.5, 97.5])) for m, d in draws.items() if d}


def _t_interval(values: NDArray[np.float64]) -> tuple[float, float]:
    from scipy.stats import t as student_t

    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return math.nan, math.nan
    half = student_t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1) / math.sqrt(len(finite))
    centre = finite.mean()
    return centre - half, centre + half


def metrics_table(
    ranks: pd.DataFrame, *, n_boot: int = 200, seed: int = 0, per_cell_line: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy table and the per-split table of ranks pooled over splits.

    ``value`` is computed from the ranks of every split pooled (as the paper pools its 41
    splits): every positive's quantile, and for MCC every (positive, paired negative) pair.
    ``n_queries`` and ``n_positives`` count what was pooled. The interval shows the spread
    over splits when there are several (a 95% t interval of the per-split values), else a
    95% percentile bootstrap over query perturbagens (none for MCC).

    Returns
    -------
    (table, per_split)
        ``table``: protocol, group, method, metric, value, ci_low, ci_high, ci_method,
        n_splits, n_queries, n_positives. ``per_split``: protocol, group, method, split,
        metric, value, n_queries, n_positives.
    """
    rows, split_rows = [], []
    for (protocol, method), sub in ranks.groupby(["protocol", "method"], observed=True, sort=False):
        sub = sub.reset_index(drop=True)
        for group, mask in _groups(sub, per_cell_line).items():
            g = sub[mask]
            if g.empty:
                continue
            splits = g.groupby("split", observed=True, sort=True)
            per_split = {}
            for split, s in splits:
                per_split[split] = pooled_metrics(s)
                split_rows += [
                    {
                        "protocol": protocol,
                        "group": group,
                        "method": method,
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "n_queries": int(s["query"].nunique()),
                        "n_positives": len(s),
                    }
                    for metric, value in per_split[split].items()
                ]
            pooled = pooled_metrics(g)
            k = len(per_split)
            boot = _bootstrap(g, n_boot, seed) if k == 1 and n_boot and len(g) > 1 else {}
            n_queries = int(g.groupby("split", observed=True)["query"].nunique().sum())
            for metric in METRICS:
                if k > 1:
                    lo, hi = _t_interval(np.array([v[metric] for v in per_split.values()]))
                    ci_method = f"t95 over {k} splits"
                elif metric in boot:
                    (lo, hi), ci_method = boot[metric], "bootstrap95 over perturbagens"
                else:
                    lo = hi = math.nan
                    ci_method = ""
                rows.append(
                    {
                        "protocol": protocol,
                        "group": group,
                        "method": method,
                        "metric": metric,
                        "value": pooled[metric],
                        "ci_low": lo,
                        "ci_high": hi,
                        "ci_method": ci_method,
                        "n_splits": k,
                        "n_queries": n_queries,
                        "n_positives": len(g),
                    }
                )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS), pd.DataFrame(
        split_rows, columns=PER_SPLIT_COLUMNS
    )


TABLE_COLUMNS = [
    "protocol",
    "group",
    "method",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "n_splits",
    "n_queries",
    "n_positives",
]
PER_SPLIT_COLUMNS = [
    "protocol",
    "group",
    "method",
    "split",
    "metric",
    "value",
    "n_queries",
    "n_positives",
]


STRUCTURE_BINS = (0.0, 0.2, 0.4, 1.0)
"""Edges of the pair-Tanimoto bins of :func:`structure_breakdown` (ECFP4: pairs below 0.2
are structurally unrelated, from 0.4 close analogues); the last bin is closed."""
BREAKDOWN_COLUMNS = [
    "protocol",
    "method",
    "tanimoto_bin",
    "metric",
    "value",
    "n_splits",
    "n_queries",
    "n_positives",
]


def _bin_labels(bins: Sequence[float]) -> list[str]:
    edges = list(bins)
    return [
        f"[{lo:g}, {hi:g}{']' if k == len(edges) - 2 else ')'}"
        for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:]))
    ]


def structure_breakdown(
    ranks: pd.DataFrame, bins: Sequence[float] = STRUCTURE_BINS
) -> pd.DataFrame:
    """Drug-level retrieval broken down by the structural similarity of the pair: for every
    drug-level protocol and method, :data:`METRICS` of the positives whose (query, positive)
    ECFP4 Tanimoto falls in each bin (``[lo, hi)``, the last closed), ranks pooled over
    splits, each positive ranked among all of its query's negatives. Does a method find
    pharmacologically similar compounds that are structurally dissimilar (the first bin)?"""
    rows = []
    if "pair_tanimoto" not in ranks.columns:
        return pd.DataFrame(columns=BREAKDOWN_COLUMNS)
    sub = ranks[ranks["protocol"].astype(str).isin(DRUG_LEVEL) & ranks["pair_tanimoto"].notna()]
    edges = np.asarray(bins, np.float64)
    labels = _bin_labels(bins)
    for (protocol, method), g in sub.groupby(["protocol", "method"], observed=True, sort=False):
        pair = g["pair_tanimoto"].to_numpy(np.float64)
        k = np.clip(np.searchsorted(edges, pair, side="right") - 1, 0, len(labels) - 1)
        for b, label in enumerate(labels):
            part = g[k == b]
            values = pooled_metrics(part) if len(part) else dict.fromkeys(METRICS, math.nan)
            n_queries = (
                int(part.groupby("split", observed=True)["query"].nunique().sum())
                if len(part)
                else 0
            )
            rows += [
                {
                    "protocol": protocol,
                    "method": method,
                    "tanimoto_bin": label,
                    "metric": metric,
                    "value": value,
                    "n_splits": int(part["split"].nunique()) if len(part) else 0,
                    "n_queries": n_queries,
                    "n_positives": len(part),
                }
                for metric, value in values.items()
            ]
    return pd.DataFrame(rows, columns=BREAKDOWN_COLUMNS)


def breakdown_markdown(breakdown: pd.DataFrame) -> str:
    """AUC per pair-Tanimoto bin, one row per drug-level protocol and bin, a column per
    method, with the queries / positives of each bin."""
    auc = breakdown[breakdown["metric"] == "auc"]
    if auc.empty:
        return ""
    methods = [m for m in METHODS if m in set(auc["method"])]
    lines = [
        "Drug level by the structural similarity of the pair: AUC of the positives whose "
        "ECFP4 Tanimoto with the query is in the bin (each ranked among all of its query's "
        "negatives); queries / positives per bin.",
        "",
        "| protocol | pair Tanimoto | " + " | ".join(methods) + " | queries / positives |",
        "|" + "---|" * (len(methods) + 3),
    ]
    for (protocol, label), g in auc.groupby(["protocol", "tanimoto_bin"], sort=False):
        value = g.set_index("method")["value"]
        cells = [
            "-" if m not in value.index or math.isnan(value[m]) else f"{value[m]:.3f}"
            for m in methods
        ]
        first = g.set_index("method").loc[methods[0]] if methods[0] in set(g["method"]) else None
        counts = (
            f"{int(first['n_queries']):,} / {int(first['n_positives']):,}"
            if first is not None
            else "-"
        )
        lines.append(f"| {protocol} | {label} | " + " | ".join(cells) + f" | {counts} |")
    return "\n".join(lines) + "\n"


def recall_curves(
    ranks: pd.DataFrame, protocol: str = "same_perturbagen", group: str = "all"
) -> pd.DataFrame:
    """Recall (:func:`~l1000_assets.core.evaluation.metrics.recall_at`: ``q = x`` counting
    one half) on :data:`QUANTILE_GRID`, per method, ranks pooled over splits; ``group`` is
    ``all`` or a kind."""
    rows = []
    sub = ranks[ranks["protocol"] == protocol]
    if group != "all":
        sub = sub[sub["kind"] == group]
    for method, m in sub.groupby("method", observed=True, sort=False):
        q = np.sort(m["quantile"].to_numpy())
        if len(q) == 0:
            continue
        recall = recall_at(q, QUANTILE_GRID)
        rows += [
            {"method": method, "quantile": float(x), "recall": float(y)}
            for x, y in zip(QUANTILE_GRID, recall)
        ]
    return pd.DataFrame(rows, columns=["method", "quantile", "recall"])


def plot_recall_curves(ranks: pd.DataFrame, path: Path) -> None:
    """Recall versus rank quantile, one panel per protocol (group ``all``, ranks pooled over
    splits), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = set(ranks["protocol"].astype(str))
    protocols = [p for p in (*PROTOCOLS, *DIRECT_PROTOCOLS) if p in present]
    fig, axes = plt.subplots(
        1, max(len(protocols), 1), figsize=(4.2 * max(len(protocols), 1), 3.6), squeeze=False
    )
    for ax, protocol in zip(axes[0], protocols):
        curves = recall_curves(ranks, protocol)
        for method, df in curves.groupby("method", sort=False):
            ax.plot(df["quantile"].clip(lower=1e-4), df["recall"], label=method)
        ax.set_xscale("log")
        ax.set_xlim(1e-4, 1)
        ax.set_ylim(0, 1)
        ax.set_title(protocol.replace("_", " "))
        ax.set_xlabel("rank quantile")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("recall")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float, lo: float, hi: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    s = f"{value:.{digits}f}"
    if not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _counts(sub: pd.DataFrame) -> str:
    """``n_queries / n_positives`` of a table slice (every metric row has the same)."""
    row = sub.iloc[0]
    return f"{int(row['n_queries']):,} / {int(row['n_positives']):,}"


def table1_markdown(table: pd.DataFrame) -> str:
    """A summary laid out like the paper's Table 1, the published figures beside ours, with
    the queries and positives behind every figure."""
    cols = SUMMARY_METRICS
    head = [
        "group",
        "method",
        "source",
        "median q",
        "top-0.001",
        "top-0.01",
        "top-0.1",
        "AUC",
        "MCC",
        "queries / positives",
    ]
    same = table[(table["protocol"] == "same_perturbagen")]
    n_splits = int(same["n_splits"].max()) if len(same) else 0
    spread = (
        f"ranks pooled over {n_splits} splits; in brackets the 95% t interval of the "
        "per-split values"
        if n_splits > 1
        else "one split; in brackets a 95% bootstrap interval over perturbagens"
    )
    lines = [
        f"Held-out perturbagens, same-perturbagen positives ({spread}). MCC: each positive "
        "paired with a seeded negative of its query, thresholded at the pooled median.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for group in ("all", "small_molecules", "genetic"):
        for method in METHODS:
            sub = same[(same["group"] == group) & (same["method"] == method)].set_index("metric")
            if sub.empty:
                continue
            cells = [
                _fmt(
                    sub.loc[c, "value"],
                    sub.loc[c, "ci_low"],
                    sub.loc[c, "ci_high"],
                    4 if c == "median_quantile" else 3,
                )
                for c in cols
            ]
            mcc_cell = _fmt(
                sub.loc["mcc", "value"], sub.loc["mcc", "ci_low"], sub.loc["mcc", "ci_high"]
            )
            lines.append(
                f"| {group} | {method} | ours | "
                + " | ".join(cells)
                + f" | {mcc_cell} | {_counts(sub)} |"
            )
            pub = PUBLISHED[(PUBLISHED["group"] == group) & (PUBLISHED["method"] == method)]
            if len(pub):
                p = pub.iloc[0]
                lines.append(
                    f"| {group} | {method} | paper | "
                    + " | ".join(
                        f"{p[c]:.4f}" if c == "median_quantile" else f"{p[c]:.3f}" for c in cols
                    )
                    + f" | {PUBLISHED_MCC.get(method, '-')} | 41 splits |"
                )
    other = table[
        (table["protocol"] != "same_perturbagen")
        & (table["group"] == "all")
        & (table["metric"] == "auc")
    ]
    methods = [m for m in METHODS if m in set(other["method"])]
    if len(other):
        lines += [
            "",
            "Other protocols, all queries: AUC (paper in parentheses; its drug-level figure is "
            "for ChEMBL targets) and queries / positives. Drug level: compounds only; "
            "*_direct: the model trained on every perturbagen (the paper's direct training), "
            "over every compound.",
            "",
            "| protocol | " + " | ".join(methods) + " |",
            "|" + "---|" * (len(methods) + 1),
        ]
        for protocol in [p for p in (*PROTOCOLS, *DIRECT_PROTOCOLS) if p != "same_perturbagen"]:
            sub = other[other["protocol"] == protocol].set_index("method")
            if sub.empty:
                continue
            cells = []
            for m in methods:
                if m not in sub.index:
                    cells.append("-")
                    continue
                cell = _fmt(sub.loc[m, "value"], sub.loc[m, "ci_low"], sub.loc[m, "ci_high"])
                published = PUBLISHED_AUC.get((protocol, m))
                if published is not None:
                    cell += f" ({published:.3f})"
                cell += f"; {int(sub.loc[m, 'n_queries']):,} / {int(sub.loc[m, 'n_positives']):,}"
                cells.append(cell)
            lines.append(f"| {protocol} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

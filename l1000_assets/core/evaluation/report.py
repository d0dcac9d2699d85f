"""The evaluation's report: the tidy metrics table with intervals, recall curves and their
plot, and a summary laid out like the paper's Table 1 beside the published figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.evaluation.metrics import SUMMARY_METRICS, summarize_quantiles
from l1000_assets.core.evaluation.protocols import METHODS, PROTOCOLS, ProtocolRun

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
    ("target", "embedding"): 0.906,
}


def run_metrics(
    run: ProtocolRun, mask: NDArray[np.bool_], n_boot: int, seed: int
) -> dict[str, tuple[float, float, float]]:
    """metric -> (value, bootstrap low, bootstrap high) over the queries in ``mask``."""
    r = run.result
    sel = mask[r.query_index]
    q = r.quantiles[sel]
    out = {m: (v, math.nan, math.nan) for m, v in summarize_quantiles(q).items()}
    out["mcc"] = (r.mcc if mask.all() else math.nan, math.nan, math.nan)
    if n_boot and len(q) > 1:
        clusters = run.query_clusters[r.query_index[sel]]
        _, cid = np.unique(clusters, return_inverse=True)
        rng = np.random.default_rng(seed)
        order = np.argsort(q, kind="stable")
        qs, cs = q[order], cid[order]
        k = cid.max() + 1
        draws = {m: [] for m in SUMMARY_METRICS}
        for _ in range(n_boot):
            w = rng.multinomial(k, np.full(k, 1.0 / k))[cs].astype(np.float64)
            if w.sum() == 0:
                continue
            for m, v in summarize_quantiles(qs, w).items():
                draws[m].append(v)
        for m, d in draws.items():
            if d:
                lo, hi = np.percentile(d, [2.5, 97.5])
                out[m] = (out[m][0], float(lo), float(hi))
    return out


def metrics_table(
    splits: Sequence[list[ProtocolRun]], *, n_boot: int = 200, seed: int = 0
) -> pd.DataFrame:
    """The tidy table: protocol, group, method, metric, value, ci_low, ci_high, ci_method,
    n_splits, n_queries, n_positives.

    With one split the interval is a percentile bootstrap over held-out perturbagens;
    with several, ``value`` is the mean over splits and the interval a 95% t interval.
    """
    per_split: dict[tuple, list] = {}
    for runs in splits:
        for run in runs:
            for group, mask in run.query_groups.items():
                sel = mask[run.result.query_index]
                values = run_metrics(run, mask, n_boot if len(splits) == 1 else 0, seed)
                key = (run.protocol, group, run.method)
                per_split.setdefault(key, []).append((values, int(mask.sum()), int(sel.sum())))
    rows = []
    for (protocol, group, method), entries in per_split.items():
        k = len(entries)
        for metric in METRICS:
            vals = np.array([e[0][metric][0] for e in entries], np.float64)
            if k == 1:
                value, lo, hi = entries[0][0][metric]
                ci_method = "bootstrap95 over perturbagens" if not math.isnan(lo) else ""
            else:
                finite = vals[np.isfinite(vals)]
                value = float(finite.mean()) if len(finite) else math.nan
                if len(finite) > 1:
                    from scipy.stats import t as student_t

                    half = (
                        student_t.ppf(0.975, len(finite) - 1)
                        * finite.std(ddof=1)
                        / math.sqrt(len(finite))
                    )
                    lo, hi = value - half, value + half
                else:
                    lo = hi = math.nan
                ci_method = f"t95 over {len(finite)} splits"
            rows.append(
                {
                    "protocol": protocol,
                    "group": group,
                    "method": method,
                    "metric": metric,
                    "value": value,
                    "ci_low": lo,
                    "ci_high": hi,
                    "ci_method": ci_method,
                    "n_splits": k,
                    "n_queries": int(np.mean([e[1] for e in entries])),
                    "n_positives": int(np.mean([e[2] for e in entries])),
                }
            )
    return pd.DataFrame(rows)


def recall_curves(
    runs: Sequence[ProtocolRun], protocol: str = "same_perturbagen", group: str = "all"
) -> pd.DataFrame:
    """Recall (fraction of positives with q <= x) on :data:`QUANTILE_GRID`, per method."""
    rows = []
    for run in runs:
        if run.protocol != protocol or group not in run.query_groups:
            continue
        q = np.sort(run.result.quantiles[run.query_groups[group][run.result.query_index]])
        if len(q) == 0:
            continue
        recall = np.searchsorted(q, QUANTILE_GRID, side="right") / len(q)
        rows += [
            {"method": run.method, "quantile": float(x), "recall": float(y)}
            for x, y in zip(QUANTILE_GRID, recall)
        ]
    return pd.DataFrame(rows, columns=["method", "quantile", "recall"])


def plot_recall_curves(runs: Sequence[ProtocolRun], path: Path) -> None:
    """Recall versus rank quantile, one panel per protocol (group ``all``), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [p for p in PROTOCOLS if any(r.protocol == p for r in runs)]
    fig, axes = plt.subplots(
        1, max(len(protocols), 1), figsize=(4.2 * max(len(protocols), 1), 3.6), squeeze=False
    )
    for ax, protocol in zip(axes[0], protocols):
        curves = recall_curves(runs, protocol)
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


def table1_markdown(table: pd.DataFrame) -> str:
    """A summary laid out like the paper's Table 1, the published figures beside ours."""
    cols = SUMMARY_METRICS
    head = ["group", "method", "source", "median q", "top-0.001", "top-0.01", "top-0.1", "AUC"]
    lines = [
        "Held-out perturbagens, same-perturbagen positives (95% interval in brackets).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    same = table[(table["protocol"] == "same_perturbagen")]
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
            lines.append(f"| {group} | {method} | ours | " + " | ".join(cells) + " |")
            pub = PUBLISHED[(PUBLISHED["group"] == group) & (PUBLISHED["method"] == method)]
            if len(pub):
                p = pub.iloc[0]
                lines.append(
                    f"| {group} | {method} | paper | "
                    + " | ".join(
                        f"{p[c]:.4f}" if c == "median_quantile" else f"{p[c]:.3f}" for c in cols
                    )
                    + " |"
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
            "Other protocols, all queries: AUC (paper in parentheses; its drug-level "
            "figure is for ChEMBL targets).",
            "",
            "| protocol | " + " | ".join(methods) + " |",
            "|" + "---|" * (len(methods) + 1),
        ]
        for protocol in [p for p in PROTOCOLS if p != "same_perturbagen"]:
            sub = other[other["protocol"] == protocol].set_index("method")
            if sub.empty:
                continue
            cells = []
            for m in methods:
                if m not in sub.index:
                    cells.append("-")
                    continue
                cell = _fmt(sub.loc[m, "value"], sub.loc[m, "ci_low"], sub.loc[m, "ci_high"])
                if (protocol, m) in PUBLISHED_AUC:
                    cell += f" ({PUBLISHED_AUC[(protocol, m)]:.3f})"
                cells.append(cell)
            lines.append(f"| {protocol} | " + " | ".join(cells) + " |")
    mcc_rows = table[
        (table["metric"] == "mcc")
        & (table["group"] == "all")
        & (table["protocol"] == "same_perturbagen")
    ]
    if len(mcc_rows):
        lines += [
            "",
            "MCC at the median similarity (same perturbagen, all): "
            + ", ".join(f"{r.method} {r.value:.3f}" for r in mcc_rows.itertuples()),
        ]
    return "\n".join(lines) + "\n"

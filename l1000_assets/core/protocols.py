"""The paper's evaluation protocols, every method on the same queries, as a tidy table.

Protocols (Donner et al. 2018; ``../shared/docs/science.md`` section 3):

``same_perturbagen``
    Every held-out profile is a query; positives are the other held-out profiles of the
    same perturbagen, negatives the held-out profiles of other perturbagens.
``replicates``
    Positives are biological replicates: same perturbagen, cell line, dose and time;
    negatives every held-out profile of another condition.
``moa`` / ``target`` (drug level)
    A perturbagen's vector is the mean of its profiles' vectors (re-normalized for the
    embedding; the mean z-score profile for the baselines); positives share the
    annotation, negatives do not. Perturbagens without the annotation are left out.

Methods: ``embedding`` (cosine of the deep embedding), ``zscore_cosine``,
``zscore_euclidean``, ``wtcs`` (CMap connectivity of the query's top and bottom 150
landmark genes; on at most ``max_wtcs_queries`` seeded queries against every candidate,
because it costs about a thousand times more than a dot product) and, on request,
``ncs`` (WTCS normalized within the candidates' cell line and perturbagen type, with the
held-out candidates as the reference set; twice the cost of WTCS). CMap's tau is not
offered: it needs a fixed reference set of queries (CMap's Touchstone) that a held-out
evaluation does not have.

Groups: queries of ``all`` types, ``small_molecules`` (``trt_cp``), ``genetic`` and, for
profile-level protocols, each cell line (``cell:<id>``). Candidates are always every
held-out profile, whatever the group.

Confidence intervals: over several splits (a t interval of the per-split values) when
more than one split is given, else a percentile bootstrap over the held-out perturbagens
(query clusters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from l1000_assets.core.evaluation import RetrievalResult, retrieval
from l1000_assets.core.ingest import VALUES_COLUMN, iter_profile_batches, landmark_matrix
from l1000_assets.core.metadata import GENETIC_PERT_TYPES
from l1000_assets.core.metrics import l2_normalize

PROTOCOLS = ("same_perturbagen", "replicates", "moa", "target")
METHODS = ("embedding", "zscore_cosine", "zscore_euclidean", "wtcs", "ncs")
DEFAULT_METHODS = ("embedding", "zscore_cosine", "zscore_euclidean", "wtcs")
METRICS = ("median_quantile", "recall_top_0.001", "recall_top_0.01", "recall_top_0.1",
           "auc", "mcc")
QUANTILE_GRID = np.concatenate([[0.0], np.logspace(-4, 0, 81)])
META_COLUMNS = ["inst_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                "pert_time"]
LOG = Callable[[str], None]

# Donner et al. 2018, GSE92742 + GSE70138, 41 splits, held-out perturbagens.
PUBLISHED = pd.DataFrame(
    [("all", "zscore_cosine", 0.170, 0.064, 0.265, 0.430, 0.696),
     ("all", "embedding", 0.0056, 0.360, 0.557, 0.782, 0.902),
     ("small_molecules", "zscore_cosine", 0.196, 0.051, 0.265, 0.412, 0.682),
     ("small_molecules", "embedding", 0.0120, 0.295, 0.480, 0.738, 0.904)],
    columns=["group", "method", "median_quantile", "recall_top_0.001", "recall_top_0.01",
             "recall_top_0.1", "auc"])
PUBLISHED_AUC = {("replicates", "zscore_cosine"): 0.843, ("replicates", "embedding"): 0.965,
                 ("target", "zscore_cosine"): 0.826, ("target", "embedding"): 0.906}


@dataclass
class HeldOut:
    """Held-out profiles in memory: ``values`` (n, 978) float32 and their metadata."""

    values: np.ndarray
    meta: pd.DataFrame


def load_heldout(files: Sequence[Path], pert_ids: set[str], perturbagens: pd.DataFrame,
                 *, max_profiles: int | None = None, seed: int = 0) -> HeldOut:
    """Profiles of ``pert_ids`` from the lake with MOA and target from ``perturbagens``
    (streamed by batch; a seeded subsample of ``max_profiles`` when there are more)."""
    wanted = pa.array(sorted(pert_ids), type=pa.string())
    values, metas = [], []
    for batch in iter_profile_batches(files, [*META_COLUMNS, VALUES_COLUMN], batch_size=32_768):
        batch = batch.filter(pc.is_in(batch.column("pert_id"), value_set=wanted))
        if batch.num_rows:
            values.append(landmark_matrix(batch).copy())
            metas.append(batch.select(META_COLUMNS).to_pandas())
    if not values:
        return HeldOut(np.zeros((0, 978), np.float32), pd.DataFrame(columns=META_COLUMNS))
    x = np.concatenate(values)
    meta = pd.concat(metas, ignore_index=True)
    if max_profiles is not None and len(x) > max_profiles:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_profiles, replace=False))
        x, meta = x[keep], meta.iloc[keep].reset_index(drop=True)
    annotations = (perturbagens.drop_duplicates("pert_id")
                   .set_index("pert_id")[["moa", "target"]])
    meta = meta.join(annotations, on="pert_id")
    return HeldOut(x, meta)


def pert_group(pert_type: pd.Series) -> np.ndarray:
    """``small_molecules``, ``genetic`` or ``other`` for each perturbagen type."""
    t = pert_type.astype(str).to_numpy()
    return np.where(t == "trt_cp", "small_molecules",
                    np.where(np.isin(t, sorted(GENETIC_PERT_TYPES)), "genetic", "other"))


@dataclass
class ProtocolRun:
    """One protocol for one method on one split: the retrieval result and its queries."""

    protocol: str
    method: str
    result: RetrievalResult
    query_groups: dict[str, np.ndarray]    # group -> boolean mask over queries
    query_clusters: np.ndarray             # perturbagen of each query (bootstrap unit)


@dataclass
class EvaluationConfig:
    protocols: Sequence[str] = PROTOCOLS
    methods: Sequence[str] = DEFAULT_METHODS
    mode: str = "exact"
    n_sampled: int = 10_000
    max_wtcs_queries: int = 1000
    wtcs_k: int = 150
    per_cell_line: bool = True
    seed: int = 0


def run_protocols(heldout: HeldOut, embeddings: np.ndarray | None, config: EvaluationConfig,
                  log: LOG = lambda m: None) -> list[ProtocolRun]:
    """Every protocol x method on one split's held-out profiles.

    ``embeddings`` are the model's (n, d) vectors of ``heldout.values`` (None: the
    embedding method is skipped).
    """
    runs: list[ProtocolRun] = []
    meta = heldout.meta
    n = len(meta)
    if n == 0:
        return runs
    kinds = pert_group(meta["pert_type"])
    vectors = {"embedding": embeddings, "zscore_cosine": heldout.values,
               "zscore_euclidean": heldout.values, "wtcs": heldout.values,
               "ncs": heldout.values}
    metric_of = {"embedding": "cosine", "zscore_cosine": "cosine",
                 "zscore_euclidean": "euclidean", "wtcs": "wtcs", "ncs": "ncs"}
    ncs_groups = (meta["cell_id"].astype(str) + "|" + meta["pert_type"].astype(str)).to_numpy()
    for protocol in config.protocols:
        if protocol in ("same_perturbagen", "replicates"):
            if protocol == "same_perturbagen":
                labels = meta["pert_id"].astype(str).to_numpy()
            else:
                labels = (meta["pert_id"].astype(str) + "|" + meta["cell_id"].astype(str) + "|"
                          + meta["pert_dose"].astype(str) + "|"
                          + meta["pert_time"].astype(str)).to_numpy()
            groups = _groups(kinds, meta["cell_id"].astype(str).to_numpy()
                             if config.per_cell_line else None)
            clusters = meta["pert_id"].astype(str).to_numpy()
            for method in config.methods:
                x = vectors[method]
                if x is None:
                    continue
                queries = np.arange(n)
                if method in ("wtcs", "ncs") and n > config.max_wtcs_queries:
                    queries = np.sort(np.random.default_rng(config.seed).choice(
                        n, config.max_wtcs_queries, replace=False))
                log(f"{protocol} / {method}: {len(queries):,} queries x {n:,} candidates")
                result = retrieval(x[queries], labels[queries], x, labels,
                                   metric=metric_of[method], self_index=queries,
                                   mode=config.mode, n_sampled=config.n_sampled,
                                   seed=config.seed, wtcs_k=config.wtcs_k,
                                   candidate_groups=ncs_groups if method == "ncs" else None,
                                   block_size=len(queries) if method in ("wtcs", "ncs")
                                   else 256)
                runs.append(ProtocolRun(protocol, method, result,
                                        {g: m[queries] for g, m in groups.items()},
                                        clusters[queries]))
        elif protocol in ("moa", "target"):
            runs.extend(_drug_level(heldout, embeddings, protocol, kinds, config, log,
                                    metric_of))
        else:
            raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    return runs


def _groups(kinds: np.ndarray, cells: np.ndarray | None) -> dict[str, np.ndarray]:
    groups = {"all": np.ones(len(kinds), bool)}
    for g in ("small_molecules", "genetic"):
        if (kinds == g).any():
            groups[g] = kinds == g
    if cells is not None:
        for c in sorted(set(cells)):
            groups[f"cell:{c}"] = cells == c
    return groups


def perturbagen_means(values: np.ndarray, pert_ids: np.ndarray, *, normalize: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector of each perturbagen's rows (re-normalized when ``normalize``)."""
    ids, inverse = np.unique(pert_ids, return_inverse=True)
    sums = np.zeros((len(ids), values.shape[1]), np.float64)
    np.add.at(sums, inverse, values)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    return ids, (l2_normalize(means) if normalize else means)


def _drug_level(heldout, embeddings, protocol, kinds, config, log, metric_of):
    meta = heldout.meta
    per_pert = meta.drop_duplicates("pert_id").set_index("pert_id")
    runs = []
    pert_ids = meta["pert_id"].astype(str).to_numpy()
    for method in config.methods:
        x = embeddings if method == "embedding" else heldout.values
        if x is None:
            continue
        ids, means = perturbagen_means(x, pert_ids, normalize=method == "embedding")
        annotation = per_pert.loc[ids, protocol].astype("string")
        ok = annotation.notna().to_numpy() & (annotation.fillna("").str.len() > 0).to_numpy()
        if ok.sum() < 2:
            log(f"{protocol}: fewer than 2 annotated held-out perturbagens; skipped")
            return []
        labels = annotation.to_numpy()[ok].astype(str)
        vecs = means[ok]
        log(f"{protocol} / {method}: {len(vecs):,} perturbagens")
        pkinds = pert_group(per_pert.loc[ids[ok], "pert_type"])
        result = retrieval(vecs, labels, vecs, labels, metric=metric_of[method],
                           self_index=np.arange(len(vecs)), mode="exact",
                           seed=config.seed, wtcs_k=config.wtcs_k,
                           candidate_groups=pkinds if method == "ncs" else None)
        runs.append(ProtocolRun(protocol, method, result, _groups(pkinds, None), ids[ok]))
    return runs


# ------------------------------------------------------------------------------ tables


def run_metrics(run: ProtocolRun, mask: np.ndarray, n_boot: int, seed: int
                ) -> dict[str, tuple[float, float, float]]:
    """metric -> (value, bootstrap low, bootstrap high) over the queries in ``mask``."""
    r = run.result
    sel = mask[r.query_index]
    q = r.quantiles[sel]
    out = {m: (v, math.nan, math.nan) for m, v in _point(q).items()}
    out["mcc"] = (r.mcc if mask.all() else math.nan, math.nan, math.nan)
    if n_boot and len(q) > 1:
        clusters = run.query_clusters[r.query_index[sel]]
        _, cid = np.unique(clusters, return_inverse=True)
        rng = np.random.default_rng(seed)
        order = np.argsort(q, kind="stable")
        qs, cs = q[order], cid[order]
        k = cid.max() + 1
        draws = {m: [] for m in out if m != "mcc"}
        for _ in range(n_boot):
            w = rng.multinomial(k, np.full(k, 1.0 / k))[cs].astype(np.float64)
            total = w.sum()
            if total == 0:
                continue
            cw = np.cumsum(w)
            draws["median_quantile"].append(qs[np.searchsorted(cw, total / 2)])
            for x, name in ((0.001, "recall_top_0.001"), (0.01, "recall_top_0.01"),
                            (0.1, "recall_top_0.1")):
                draws[name].append(w[qs <= x].sum() / total)
            draws["auc"].append(1.0 - (w * qs).sum() / total)
        for m, d in draws.items():
            if d:
                lo, hi = np.percentile(d, [2.5, 97.5])
                out[m] = (out[m][0], float(lo), float(hi))
    return out


def _point(q: np.ndarray) -> dict[str, float]:
    if len(q) == 0:
        return {m: math.nan for m in METRICS if m != "mcc"}
    return {"median_quantile": float(np.median(q)),
            "recall_top_0.001": float(np.mean(q <= 0.001)),
            "recall_top_0.01": float(np.mean(q <= 0.01)),
            "recall_top_0.1": float(np.mean(q <= 0.1)),
            "auc": float(1.0 - np.mean(q))}


def metrics_table(splits: Sequence[list[ProtocolRun]], *, n_boot: int = 200, seed: int = 0
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
                per_split.setdefault(key, []).append(
                    (values, int(mask.sum()), int(sel.sum())))
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

                    half = (student_t.ppf(0.975, len(finite) - 1) * finite.std(ddof=1)
                            / math.sqrt(len(finite)))
                    lo, hi = value - half, value + half
                else:
                    lo = hi = math.nan
                ci_method = f"t95 over {len(finite)} splits"
            rows.append({"protocol": protocol, "group": group, "method": method,
                         "metric": metric, "value": value, "ci_low": lo, "ci_high": hi,
                         "ci_method": ci_method, "n_splits": k,
                         "n_queries": int(np.mean([e[1] for e in entries])),
                         "n_positives": int(np.mean([e[2] for e in entries]))})
    return pd.DataFrame(rows)


def recall_curves(runs: Sequence[ProtocolRun], protocol: str = "same_perturbagen",
                  group: str = "all") -> pd.DataFrame:
    """Recall (fraction of positives with q <= x) on :data:`QUANTILE_GRID`, per method."""
    rows = []
    for run in runs:
        if run.protocol != protocol or group not in run.query_groups:
            continue
        q = np.sort(run.result.quantiles[run.query_groups[group][run.result.query_index]])
        if len(q) == 0:
            continue
        recall = np.searchsorted(q, QUANTILE_GRID, side="right") / len(q)
        rows += [{"method": run.method, "quantile": float(x), "recall": float(y)}
                 for x, y in zip(QUANTILE_GRID, recall)]
    return pd.DataFrame(rows, columns=["method", "quantile", "recall"])


def plot_recall_curves(runs: Sequence[ProtocolRun], path: Path) -> None:
    """Recall versus rank quantile, one panel per protocol (group ``all``), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = [p for p in PROTOCOLS if any(r.protocol == p for r in runs)]
    fig, axes = plt.subplots(1, max(len(protocols), 1), figsize=(4.2 * max(len(protocols), 1),
                                                                  3.6), squeeze=False)
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
    cols = ["median_quantile", "recall_top_0.001", "recall_top_0.01", "recall_top_0.1", "auc"]
    head = ["group", "method", "source", "median q", "top-0.001", "top-0.01", "top-0.1", "AUC"]
    lines = ["Held-out perturbagens, same-perturbagen positives (95% interval in brackets).",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    same = table[(table["protocol"] == "same_perturbagen")]
    for group in ("all", "small_molecules", "genetic"):
        for method in METHODS:
            sub = same[(same["group"] == group) & (same["method"] == method)].set_index("metric")
            if sub.empty:
                continue
            cells = [_fmt(sub.loc[c, "value"], sub.loc[c, "ci_low"], sub.loc[c, "ci_high"],
                          4 if c == "median_quantile" else 3) for c in cols]
            lines.append(f"| {group} | {method} | ours | " + " | ".join(cells) + " |")
            pub = PUBLISHED[(PUBLISHED["group"] == group) & (PUBLISHED["method"] == method)]
            if len(pub):
                p = pub.iloc[0]
                lines.append(f"| {group} | {method} | paper | " + " | ".join(
                    f"{p[c]:.4f}" if c == "median_quantile" else f"{p[c]:.3f}" for c in cols)
                    + " |")
    other = table[(table["protocol"] != "same_perturbagen") & (table["group"] == "all")
                  & (table["metric"] == "auc")]
    methods = [m for m in METHODS if m in set(other["method"])]
    if len(other):
        lines += ["", "Other protocols, all queries: AUC (paper in parentheses; its drug-level "
                  "figure is for ChEMBL targets).", "",
                  "| protocol | " + " | ".join(methods) + " |", "|" + "---|" * (len(methods) + 1)]
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
    mcc_rows = table[(table["metric"] == "mcc") & (table["group"] == "all")
                     & (table["protocol"] == "same_perturbagen")]
    if len(mcc_rows):
        lines += ["", "MCC at the median similarity (same perturbagen, all): " + ", ".join(
            f"{r.method} {r.value:.3f}" for r in mcc_rows.itertuples())]
    return "\n".join(lines) + "\n"


__all__ = ["HeldOut", "EvaluationConfig", "ProtocolRun", "load_heldout", "run_protocols",
           "metrics_table", "recall_curves", "plot_recall_curves", "table1_markdown",
           "perturbagen_means", "PUBLISHED", "PROTOCOLS", "METHODS", "METRICS"]

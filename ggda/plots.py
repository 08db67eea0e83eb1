"""Every figure of the reproduction, drawn with seaborn from the tidy tables only.

The tables are the ones the workflow writes to ``results/tables/`` (one row per measurement):

==================  ================================================================================
table               columns used here
==================  ================================================================================
retraining          dataset, model, method, grouping, group_size, kind, fraction, seed, accuracy
runtime             dataset, model, method, grouping, group_size, variant, total_s
pruning             dataset, model, method, grouping, group_size, kind, fraction, seed, accuracy
noisy_labels        dataset, model, method, grouping, group_size, fraction_inspected, fraction_found, auroc
noisy_retraining    dataset, model, method, grouping, group_size, kind, seed, accuracy
lds                 dataset, model, method, grouping, group_size, lds, lds_se
==================  ================================================================================

``kind`` is "attribution" (the ranking under test), "random" (random removal of the same fraction),
"none" (no removal) or "oracle" (noisy labels: the flipped points removed). Error bars are the standard
error of the mean over retraining seeds. Each function returns a matplotlib Figure; :func:`save` writes it
atomically with a provenance JSON beside it.

    import pandas as pd
    from ggda import plots
    ret, rt = pd.read_csv("results/tables/retraining.csv"), pd.read_csv("results/tables/runtime.csv")
    fig = plots.tradeoff(ret, rt, removal=0.2)
    plots.save(fig, ["tradeoff.png"], inputs=["results/tables/retraining.csv", "results/tables/runtime.csv"])
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import provenance
from ._io import atomic_path
from .stats import standard_error

__all__ = ["ablation", "removal_curves", "tradeoff", "pruning", "noisy_labels", "lds", "save", "label", "FIGURES",
           "GROUPING_ORDER", "METHOD_NAMES"]

#: The order groupings appear in (legends, bars).
GROUPING_ORDER = ("individual", "random", "kmeans", "repr-kmeans", "grad-kmeans")
#: Display names of the attribution methods.
METHOD_NAMES = {"if": "Influence functions", "tracin": "TracIn", "trak": "TRAK"}
BASELINE_COLOR = "0.6"


def _theme() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def _need(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the {table} table lacks the column(s) {missing}; expected the tidy table written by "
                         f"the workflow (results/tables/{table}.csv)")


def label(grouping: str, group_size: Any) -> str:
    """'individual', or 'grad-kmeans (16)' for a grouping at group size 16."""
    if grouping == "individual" or pd.isna(group_size):
        return str(grouping)
    return f"{grouping} ({int(group_size)})"


def _method_title(method: str) -> str:
    return METHOD_NAMES.get(method, str(method))


def _fmt_seconds(s: float) -> str:
    if not np.isfinite(s):
        return ""
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 100:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _grouping_rank(name: str) -> tuple[int, str]:
    """Sort key of a grouping name: the methods in GROUPING_ORDER first, then named variants by name."""
    return (GROUPING_ORDER.index(name), "") if name in GROUPING_ORDER else (len(GROUPING_ORDER), name)


def _colors(n: int) -> list:
    """n distinct colours: seaborn's "deep" palette, or "tab20" when more than its 10 are needed."""
    return sns.color_palette("deep" if n <= 10 else "tab20", max(n, 1))


def _sorted_groupings(frame: pd.DataFrame) -> list[tuple[str, int]]:
    pairs = {(g, int(s)) for g, s in frame[["grouping", "group_size"]].dropna().itertuples(index=False)}
    return sorted(pairs, key=lambda p: (*_grouping_rank(p[0]), p[1]))


def _zoom(ax, frame: pd.DataFrame, column: str = "accuracy", axis: str = "y") -> float:
    """Limit the value axis to the data (bars would otherwise squeeze differences of a few points into a
    sliver near 1); returns the lower limit."""
    v = frame[column].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return 0.0
    lo = max(0.0, np.floor((v.min() - 0.03) * 50) / 50)
    hi = min(1.0, v.max() + 0.01) if v.max() <= 1 else v.max() * 1.02
    (ax.set_ylim if axis == "y" else ax.set_xlim)(lo, max(hi, lo + 0.02))
    return lo


def _log_seconds_axis(ax) -> None:
    """Log-scale x axis in seconds with readable ticks at 1, 2, 5 x 10^k (no overlapping minor labels)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def _grid(n_rows: int, n_cols: int, width: float = 3.4, height: float = 2.8, **kw):
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(width * n_cols, height * n_rows), squeeze=False, **kw)
    return fig, axes


def _empty(message: str):
    _theme()
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------------------------- figures


def ablation(retraining: pd.DataFrame, runtime: pd.DataFrame, dataset: str, removal: float = 0.2,
             group_size: int = 16) -> plt.Figure:
    """Grouping ablation (the paper's figures 1, 3-5) for one data set.

    One panel per model (rows) and method (columns); one bar per grouping at ``group_size`` (plus
    individual), then the random-removal and no-removal baselines: mean accuracy on the targets after
    removing the top ``removal`` of the training points (lower = a more faithful attribution), error bars
    = standard error over retraining seeds, the attribution's runtime written on each bar.
    """
    _need(retraining, ["dataset", "model", "method", "grouping", "group_size", "kind", "fraction", "accuracy"],
          "retraining")
    _need(runtime, ["dataset", "model", "method", "grouping", "group_size", "total_s"], "runtime")
    ret = retraining[retraining["dataset"] == dataset]
    if ret.empty:
        return _empty(f"no retraining rows for data set {dataset!r}")
    rt = runtime[(runtime["dataset"] == dataset) & (runtime.get("variant", "main") == "main")]
    models = list(dict.fromkeys(ret["model"]))
    methods = [m for m in METHOD_NAMES if m in set(ret["method"].dropna())]
    shown = ret[(ret["kind"] == "attribution") & ((ret["grouping"] == "individual") | (ret["group_size"] == group_size))]
    n_bars = len(set(zip(shown["grouping"], shown["group_size"]))) + 2  # and the two baselines
    _theme()
    fig, axes = _grid(len(models), max(len(methods), 1), width=max(3.8, 0.3 * n_bars + 1.0), height=3.2)
    for i, model in enumerate(models):
        base = ret[(ret["model"] == model) & ret["kind"].isin(["random", "none"])]
        base = base[((base["kind"] == "random") & np.isclose(base["fraction"], removal)) | (base["kind"] == "none")]
        for j, method in enumerate(methods):
            ax = axes[i, j]
            sel = ret[(ret["model"] == model) & (ret["method"] == method) & (ret["kind"] == "attribution")
                      & np.isclose(ret["fraction"], removal)]
            sel = sel[(sel["grouping"] == "individual") | (sel["group_size"] == group_size)]
            bars = sel.assign(bar=[label(g, s) for g, s in zip(sel["grouping"], sel["group_size"])])
            base_rows = base.assign(bar=base["kind"].map({"random": "random removal", "none": "no removal"}))
            frame = pd.concat([bars, base_rows], ignore_index=True)
            order = [label(g, s) for g, s in _sorted_groupings(bars)] + \
                [b for b in ("random removal", "no removal") if b in set(base_rows["bar"])]
            named = order[:len(order) - len(set(base_rows["bar"]))]
            palette = dict(zip(named, _colors(len(named))))
            palette.update({"random removal": BASELINE_COLOR, "no removal": "0.8"})
            sns.barplot(data=frame, x="bar", y="accuracy", hue="bar", order=order, hue_order=order, palette=palette,
                        errorbar="se", capsize=0.2, err_kws={"linewidth": 1}, legend=False, ax=ax)
            lo = _zoom(ax, frame)
            times = rt[(rt["model"] == model) & (rt["method"] == method)]
            for k, name in enumerate(order):
                t = times[[label(g, s) == name for g, s in zip(times["grouping"], times["group_size"])]]
                if len(t):
                    ax.text(k, lo + 0.002, _fmt_seconds(float(t["total_s"].iloc[0])), rotation=90, ha="center",
                            va="bottom", fontsize=7, color="white", fontweight="bold")
            ax.set_title(f"{_method_title(method)} - {model}")
            ax.set_xlabel("")
            ax.set_ylabel(f"accuracy after removing top {removal:.0%}" if j == 0 else "")
            ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    fig.suptitle(f"{dataset}: grouping ablation (lower = more faithful; runtime on each bar)")
    fig.tight_layout()
    return fig


def removal_curves(retraining: pd.DataFrame, group_size: int = 16, grouping: str = "grad-kmeans") -> plt.Figure:
    """Accuracy on the targets vs fraction removed (the paper's figure 2): individual attribution against
    ``grouping`` at ``group_size``, per method (columns) and data set/model (rows), with the random-removal
    baseline; fraction 0 is the no-removal model. Error bands: standard error over seeds."""
    _need(retraining, ["dataset", "model", "method", "grouping", "group_size", "kind", "fraction", "accuracy"],
          "retraining")
    pairs = list(dict.fromkeys(zip(retraining["dataset"], retraining["model"])))
    methods = [m for m in METHOD_NAMES if m in set(retraining["method"].dropna())]
    if not pairs or not methods:
        return _empty("no retraining rows")
    _theme()
    fig, axes = _grid(len(pairs), len(methods), sharex=True)
    for i, (dataset, model) in enumerate(pairs):
        sub = retraining[(retraining["dataset"] == dataset) & (retraining["model"] == model)]
        none = sub[sub["kind"] == "none"]
        for j, method in enumerate(methods):
            ax = axes[i, j]
            parts = []
            att = sub[(sub["method"] == method) & (sub["kind"] == "attribution")]
            for g, s in (("individual", 1), (grouping, group_size)):
                rows = att[(att["grouping"] == g) & (att["group_size"] == s)]
                if len(rows):
                    parts += [rows.assign(line=label(g, s)), none.assign(line=label(g, s))]
            _accuracy_lines(ax, parts, sub[sub["kind"] == "random"], none, "random removal",
                            legend=(i == 0 and j == len(methods) - 1))
            ax.set_title(f"{_method_title(method)} - {dataset}/{model}")
            ax.set_xlabel("fraction removed (top ranked)")
            ax.set_ylabel("accuracy on targets" if j == 0 else "")
            ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), title="")
    fig.suptitle("Accuracy on the targets after removing the top-ranked points (lower = more faithful)")
    fig.tight_layout()
    return fig


def fidelity(retraining: pd.DataFrame, group_size: int = 16, grouping: str = "grad-kmeans") -> plt.Figure:
    """Deprecated old name of :func:`removal_curves` (``fidelity`` is the grouping metric
    :func:`ggda.grouping.fidelity`)."""
    warnings.warn("ggda.plots.fidelity is deprecated: use ggda.plots.removal_curves", FutureWarning, stacklevel=2)
    return removal_curves(retraining, group_size, grouping)


def tradeoff(retraining: pd.DataFrame, runtime: pd.DataFrame, removal: float = 0.2) -> plt.Figure:
    """Efficiency-fidelity trade-off: attribution time (log scale) vs accuracy after removing the top
    ``removal`` (the retraining score; lower = more faithful) for every grouping and group size, one panel
    per method (columns) and data set/model (rows); the dashed line is random removal."""
    _need(retraining, ["dataset", "model", "method", "grouping", "group_size", "kind", "fraction", "accuracy"],
          "retraining")
    _need(runtime, ["dataset", "model", "method", "grouping", "group_size", "total_s"], "runtime")
    rt = runtime[runtime["variant"] == "main"] if "variant" in runtime else runtime
    keys = ["dataset", "model", "method", "grouping", "group_size"]
    att = retraining[(retraining["kind"] == "attribution") & np.isclose(retraining["fraction"], removal)]
    score = att.groupby(keys, as_index=False).agg(accuracy=("accuracy", "mean"),
                                                  se=("accuracy", standard_error))
    frame = score.merge(rt[keys + ["total_s"]], on=keys, how="inner")
    if frame.empty:
        return _empty("no attribution has both a retraining score and a runtime")
    present = set(zip(frame["dataset"], frame["model"]))
    pairs = [p for p in dict.fromkeys(zip(retraining["dataset"], retraining["model"])) if p in present]
    methods = [m for m in METHOD_NAMES if m in set(frame["method"])]
    hue_order = sorted(set(frame["grouping"]), key=_grouping_rank)
    palette = dict(zip(hue_order, _colors(len(hue_order))))
    _theme()
    fig, axes = _grid(len(pairs), len(methods))
    for i, (dataset, model) in enumerate(pairs):
        rnd = retraining[(retraining["dataset"] == dataset) & (retraining["model"] == model)
                         & (retraining["kind"] == "random") & np.isclose(retraining["fraction"], removal)]
        for j, method in enumerate(methods):
            ax = axes[i, j]
            sub = frame[(frame["dataset"] == dataset) & (frame["model"] == model) & (frame["method"] == method)]
            for g in hue_order:  # connect the sizes of one grouping (individual is size 1)
                line = pd.concat([sub[sub["grouping"] == "individual"], sub[sub["grouping"] == g]]) \
                    if g != "individual" else sub[sub["grouping"] == g]
                line = line.sort_values("group_size")
                if len(line) > 1 and g in ("grad-kmeans", "random"):
                    ax.plot(line["total_s"], line["accuracy"], color=palette[g], linewidth=1, alpha=0.6)
            sns.scatterplot(data=sub, x="total_s", y="accuracy", hue="grouping", hue_order=hue_order,
                            palette=palette, s=45, ax=ax, legend=(i == 0 and j == len(methods) - 1), zorder=3)
            ax.errorbar(sub["total_s"], sub["accuracy"], yerr=sub["se"], fmt="none", ecolor="0.3", elinewidth=0.8,
                        zorder=2)
            for _, r in sub.iterrows():
                ax.annotate(str(int(r["group_size"])), (r["total_s"], r["accuracy"]), textcoords="offset points",
                            xytext=(4, 3), fontsize=7)
            if len(rnd):
                ax.axhline(rnd["accuracy"].mean(), color=BASELINE_COLOR, linestyle="--", linewidth=1,
                           label="random removal")
            _log_seconds_axis(ax)
            ax.set_title(f"{_method_title(method)} - {dataset}/{model}")
            ax.set_xlabel("attribution time (s, log scale)")
            ax.set_ylabel(f"accuracy after removing top {removal:.0%}" if j == 0 else "")
    if axes[0, -1].get_legend() is not None:
        sns.move_legend(axes[0, -1], "upper left", bbox_to_anchor=(1.02, 1), title="grouping (size)")
    fig.suptitle("Efficiency-fidelity trade-off (numbers: group size; lower = more faithful)")
    fig.tight_layout()
    return fig


def _accuracy_lines(ax, parts: list[pd.DataFrame], random_rows: pd.DataFrame, none: pd.DataFrame, baseline: str,
                    legend: bool = True) -> None:
    """Accuracy vs fraction, one line per ``line`` of ``parts`` (rows already labelled, each with the
    no-removal rows at fraction 0), plus the random baseline named ``baseline`` in grey; errors = se."""
    parts = [*parts, random_rows.assign(line=baseline), none.assign(line=baseline)]
    frame = pd.concat(parts, ignore_index=True)
    lines = list(dict.fromkeys(frame["line"]))
    palette = dict(zip([x for x in lines if x != baseline], sns.color_palette("deep")))
    palette[baseline] = BASELINE_COLOR
    sns.lineplot(data=frame, x="fraction", y="accuracy", hue="line", hue_order=lines, palette=palette,
                 errorbar="se", marker="o", ax=ax, legend=legend)


def pruning(pruning_rows: pd.DataFrame) -> plt.Figure:
    """Dataset pruning curves: test accuracy vs fraction of the training set pruned (least important
    first, importance for a validation split), per method and grouping, with random pruning and the
    unpruned model (fraction 0). Higher = a better ranking. One panel per data set/model."""
    _need(pruning_rows, ["dataset", "model", "method", "grouping", "group_size", "kind", "fraction", "accuracy"],
          "pruning")
    pairs = list(dict.fromkeys(zip(pruning_rows["dataset"], pruning_rows["model"])))
    if not pairs:
        return _empty("no pruning rows")
    _theme()
    fig, axes = _grid(1, len(pairs), width=6.5, height=3.8)
    for j, (dataset, model) in enumerate(pairs):
        ax = axes[0, j]
        sub = pruning_rows[(pruning_rows["dataset"] == dataset) & (pruning_rows["model"] == model)]
        none = sub[sub["kind"] == "none"].drop_duplicates(["seed"])
        parts = []
        for (method, g, s), rows in sub[sub["kind"] == "attribution"].groupby(["method", "grouping", "group_size"]):
            name = f"{_method_title(method)}, {label(g, s)}"
            parts += [rows.assign(line=name), none.assign(line=name)]
        _accuracy_lines(ax, parts, sub[sub["kind"] == "random"].drop_duplicates(["fraction", "seed"]), none,
                        "random pruning")
        ax.set_title(f"{dataset}/{model}")
        ax.set_xlabel("fraction of training data pruned (least important first)")
        ax.set_ylabel("test accuracy")
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
        if j == len(pairs) - 1:
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), title="", fontsize=7)
        else:
            ax.get_legend().remove()
    fig.suptitle("Dataset pruning (higher = better)")
    fig.tight_layout()
    return fig


def noisy_labels(curves: pd.DataFrame, retraining: pd.DataFrame | None = None) -> plt.Figure:
    """Noisy-label detection: fraction of the flipped labels found vs fraction of the training set
    inspected (most suspicious first), per method and grouping (AUROC in the legend), against random
    inspection (the diagonal); with ``retraining``, a second panel shows test accuracy after removing the
    flagged points next to no removal, random removal and the oracle (the flipped points removed)."""
    _need(curves, ["dataset", "model", "method", "grouping", "group_size", "fraction_inspected", "fraction_found",
                   "auroc"], "noisy_labels")
    if curves.empty:
        return _empty("no noisy-label rows")
    _theme()
    n_cols = 2 if retraining is not None and len(retraining) else 1
    fig, axes = _grid(1, n_cols, width=5.0, height=4.2)
    ax = axes[0, 0]
    frame = curves.copy()
    frame["line"] = [f"{_method_title(m)}, {label(g, s)} (AUROC {a:.2f})" for m, g, s, a in
                     zip(frame["method"], frame["grouping"], frame["group_size"], frame["auroc"])]
    start = frame.drop_duplicates("line").assign(fraction_inspected=0.0, fraction_found=0.0)
    frame = pd.concat([start, frame], ignore_index=True)
    sns.lineplot(data=frame, x="fraction_inspected", y="fraction_found", hue="line", marker="o", ax=ax,
                 errorbar=None)
    top = float(frame["fraction_inspected"].max())
    ax.plot([0, top], [0, top], color=BASELINE_COLOR, linestyle="--", linewidth=1, label="random inspection")
    ax.set_xlabel("fraction of training data inspected")
    ax.set_ylabel("fraction of flipped labels found")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=1, frameon=False)
    first = curves.iloc[0]
    ax.set_title(f"{first['dataset']}/{first['model']}: detection")
    if n_cols == 2:
        _need(retraining, ["method", "grouping", "group_size", "kind", "accuracy"], "noisy_retraining")
        ax = axes[0, 1]
        rows = retraining.copy()
        rows["bar"] = [f"{_method_title(m)}, {label(g, s)}" if k == "attribution" else
                       {"none": "no removal", "random": "random removal", "oracle": "oracle"}.get(k, k)
                       for m, g, s, k in zip(rows["method"], rows["grouping"], rows["group_size"], rows["kind"])]
        rows = rows.drop_duplicates(["bar", "seed"]) if "seed" in rows else rows
        order = list(dict.fromkeys(rows.loc[rows["kind"] == "attribution", "bar"])) + \
            [b for b in ("no removal", "random removal", "oracle") if b in set(rows["bar"])]
        palette = {b: c for b, c in zip(order, sns.color_palette("deep"))}
        palette.update({"no removal": "0.8", "random removal": BASELINE_COLOR, "oracle": "0.3"})
        sns.barplot(data=rows, y="bar", x="accuracy", hue="bar", order=order, hue_order=order, palette=palette,
                    errorbar="se", capsize=0.2, legend=False, ax=ax, orient="h")
        _zoom(ax, rows, axis="x")
        ax.set_ylabel("")
        ax.set_xlabel("test accuracy after removing the flagged points")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title("retrained without the most suspicious points")
    fig.suptitle("Noisy-label detection")
    fig.tight_layout()
    return fig


#: name -> (function, the tables it takes in order)
def lds(lds_rows: pd.DataFrame, runtime: pd.DataFrame | None = None) -> plt.Figure:
    """Group linear datamodeling score per grouping and group size: one bar per grouping (higher = the
    scores predict retraining on random subsets of the groups better), error bars = standard error over
    targets, one panel per method (columns) and data set/model (rows); with ``runtime``, the attribution
    time (grouping included) is written on each bar."""
    _need(lds_rows, ["dataset", "model", "method", "grouping", "group_size", "lds", "lds_se"], "lds")
    pairs = list(dict.fromkeys(zip(lds_rows["dataset"], lds_rows["model"])))
    methods = [m for m in METHOD_NAMES if m in set(lds_rows["method"])]
    if not pairs or not methods:
        return _empty("no LDS rows")
    rt = None
    if runtime is not None:
        _need(runtime, ["dataset", "model", "method", "grouping", "group_size", "total_s"], "runtime")
        rt = runtime[runtime["variant"] == "main"] if "variant" in runtime else runtime
    order = [label(g, s) for g, s in _sorted_groupings(lds_rows)]
    colors = dict(zip(order, _colors(len(order))))
    _theme()
    fig, axes = _grid(len(pairs), len(methods), width=max(3.4, 0.3 * len(order) + 1.2), height=3.2)
    for i, (dataset, model) in enumerate(pairs):
        for j, method in enumerate(methods):
            ax = axes[i, j]
            sub = lds_rows[(lds_rows["dataset"] == dataset) & (lds_rows["model"] == model)
                           & (lds_rows["method"] == method)]
            names = [label(g, s) for g, s in zip(sub["grouping"], sub["group_size"])]
            sub = sub.assign(bar=names).set_index("bar").reindex([o for o in order if o in names])
            x = np.arange(len(sub))
            ax.bar(x, sub["lds"], yerr=sub["lds_se"], color=[colors[b] for b in sub.index], capsize=2,
                   error_kw={"linewidth": 0.8})
            if rt is not None:
                times = rt[(rt["dataset"] == dataset) & (rt["model"] == model) & (rt["method"] == method)]
                seconds = {label(g, s): t for g, s, t in zip(times["grouping"], times["group_size"], times["total_s"])}
                for k, b in enumerate(sub.index):
                    if b in seconds:
                        ax.text(k, 0, _fmt_seconds(float(seconds[b])), rotation=90, ha="center", va="bottom",
                                fontsize=7, color="white", fontweight="bold")
            ax.axhline(0, color="0.3", linewidth=0.8)
            ax.set_xticks(x, sub.index, rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{_method_title(method)} - {dataset}/{model}")
            ax.set_ylabel("group LDS (Spearman)" if j == 0 else "")
    fig.suptitle("Linear datamodeling score over groups (higher = more faithful; runtime on each bar)")
    fig.tight_layout()
    return fig


FIGURES = {
    "ablation": (ablation, ("retraining", "runtime")),
    "removal-curves": (removal_curves, ("retraining",)),
    "tradeoff": (tradeoff, ("retraining", "runtime")),
    "pruning": (pruning, ("pruning",)),
    "noisy-labels": (noisy_labels, ("noisy_labels", "noisy_retraining")),
    "lds": (lds, ("lds", "runtime")),
}


# --------------------------------------------------------------------------------------------- saving


def save(fig: plt.Figure, paths: Iterable[str | os.PathLike], provenance_path: str | os.PathLike | None = None,
         inputs: Iterable[str | os.PathLike] = (), config_hash: str | None = None, dpi: int = 150,
         **extra: Any) -> dict[str, Any]:
    """Write ``fig`` to every path (format from the suffix: png, pdf, svg), each atomically, and a
    provenance JSON (git commit, config hash, package versions, device, sha256 of ``inputs``) to
    ``provenance_path`` (default: beside the first path, ``<stem>.provenance.json``). Closes the figure
    and returns the provenance record."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("save needs at least one output path")
    for path in paths:
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("png", "pdf", "svg"):
            raise ValueError(f"unsupported figure format {path.suffix!r} for {path}: use .png, .pdf or .svg")
        # no creation dates in the files: the same tables give the same bytes
        metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
                    "svg": {"Date": None}}[fmt]
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight", metadata=metadata)
    plt.close(fig)
    record = provenance.collect(inputs=inputs, config_hash=config_hash, files=[str(p) for p in paths], **extra)
    prov = Path(provenance_path) if provenance_path is not None else \
        paths[0].with_name(f"{paths[0].stem}.provenance.json")
    provenance.write(record, prov)
    return record

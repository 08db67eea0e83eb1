"""Markdown tables of the grouping study from the workflow's tidy tables (docs/grouping-study.md).

    snakemake --configfile config/grouping_study.yaml      # writes results/tables/*.csv
    python benchmarks/study_tables.py results/tables       # prints the tables of docs/grouping-study.md

Removal: mean accuracy on the targets after removing the top ``--removal`` and retraining, with its
standard error over seeds (lower = more faithful). LDS: mean Spearman over targets with its standard error
over targets (higher = more faithful). Cost: the grouping's seconds (features and clustering, measured in
the job) and its share of the individual attribution's total time, per method.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ggda.evaluation.results import _se

METHODS = ["if", "tracin", "trak"]


def _order(frame: pd.DataFrame) -> list[tuple[str, int]]:
    from ggda.plots import _grouping_rank

    pairs = {(g, int(s)) for g, s in frame[["grouping", "group_size"]].drop_duplicates().itertuples(index=False)}
    return sorted(pairs, key=lambda p: (*_grouping_rank(p[0]), p[1]))


def _mean_se_table(stats: pd.DataFrame, mean: str, se: str) -> dict[str, list[dict]]:
    """{"dataset/model": rows}: one row per grouping and size (in the figures' order), one "mean ± se"
    cell per method."""
    out = {}
    for (dataset, model), sub in stats.groupby(["dataset", "model"], sort=False):
        rows = []
        for g, s in _order(sub):
            cells = sub[(sub["grouping"] == g) & (sub["group_size"] == s)].set_index("method")
            rows.append({"grouping": g, "size": s, **{m: f"{cells.loc[m, mean]:.3f} ± {cells.loc[m, se]:.3f}"
                                                      for m in METHODS if m in cells.index}})
        out[f"{dataset}/{model}"] = rows
    return out


def removal_table(retraining: pd.DataFrame, removal: float) -> dict[str, pd.DataFrame]:
    at = retraining[np.isclose(retraining["fraction"], removal) | (retraining["kind"] == "none")]
    stats = at.groupby(["dataset", "model", "method", "grouping", "group_size", "kind"], dropna=False)["accuracy"]
    stats = stats.agg(accuracy="mean", se=_se).reset_index()
    tables = _mean_se_table(stats[stats["kind"] == "attribution"], "accuracy", "se")
    for key, rows in tables.items():
        dataset, model = key.split("/")
        for kind in ("random", "none"):
            b = stats[(stats["dataset"] == dataset) & (stats["model"] == model) & (stats["kind"] == kind)]
            if len(b):
                cell = f"{b['accuracy'].iloc[0]:.3f} ± {b['se'].iloc[0]:.3f}"
                rows.append({"grouping": f"({kind} removal)", "size": "", **{m: cell for m in METHODS}})
    return {k: pd.DataFrame(v) for k, v in tables.items()}


def lds_table(lds: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {k: pd.DataFrame(v) for k, v in _mean_se_table(lds, "lds", "lds_se").items()}


def cost_table(runtime: pd.DataFrame) -> dict[str, pd.DataFrame]:
    out = {}
    for (dataset, model), sub in runtime.groupby(["dataset", "model"], sort=False):
        rows = []
        for g, s in _order(sub):
            cells = sub[(sub["grouping"] == g) & (sub["group_size"] == s)].set_index("method")
            first = cells.iloc[0]
            row = {"grouping": g, "size": s, "groups k": int(first["groups_k"]),
                   "sizes min/median/max": f"{int(first['groups_min'])}/{first['groups_median']:g}/{int(first['groups_max'])}",
                   "grouping s": f"{first['grouping_s']:.3f}"}
            for m in METHODS:
                if m in cells.index:
                    row[f"{m} total s"] = f"{cells.loc[m, 'total_s']:.2f}"
                    if "grouping_share" in cells and g != "individual":
                        row[f"{m} share"] = f"{cells.loc[m, 'grouping_share']:.1%}"
            rows.append(row)
        out[f"{dataset}/{model}"] = pd.DataFrame(rows)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tables", type=Path, nargs="?", default=Path("results/tables"))
    ap.add_argument("--removal", type=float, default=0.2)
    args = ap.parse_args(argv)
    retraining = pd.read_csv(args.tables / "retraining.csv")
    runtime = pd.read_csv(args.tables / "runtime.csv")
    sections = [("Accuracy on the targets after removing the top {:.0%}".format(args.removal),
                 removal_table(retraining, args.removal)),
                ("Grouping cost", cost_table(runtime[runtime["variant"] == "main"]))]
    if (args.tables / "lds.csv").exists():
        sections.insert(1, ("Group LDS", lds_table(pd.read_csv(args.tables / "lds.csv"))))
    for title, tables in sections:
        for name, table in tables.items():
            print(f"### {title}: {name}\n")
            print(table.to_markdown(index=False))
            print()


if __name__ == "__main__":
    main()

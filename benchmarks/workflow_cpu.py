"""CPU and wall seconds of a workflow run, per rule family, from Snakemake's benchmark files.

    python benchmarks/workflow_cpu.py results/benchmarks                  # one run
    python benchmarks/workflow_cpu.py before/results/benchmarks after/results/benchmarks --families attribute,cache

Each rule writes results/benchmarks/<rule>/.../<job>.tsv (``benchmark:``); a family is the first folder
(attribute, cache, groups, train, ...). Prints, per run and family, the number of jobs and the sums of
``cpu_time`` (user + system CPU seconds of the job's processes) and ``s`` (wall seconds), then, for two
runs, the ratio first / second of the chosen families' total CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def family_totals(folder: str | Path) -> pd.DataFrame:
    """(family, jobs, cpu_s, wall_s) from every benchmark .tsv below ``folder``."""
    rows = []
    for tsv in sorted(Path(folder).rglob("*.tsv")):
        frame = pd.read_csv(tsv, sep="\t")
        rows.append({"family": tsv.relative_to(folder).parts[0], "cpu_s": frame["cpu_time"].sum(),
                     "wall_s": frame["s"].sum()})
    if not rows:
        raise SystemExit(f"no benchmark files below {folder}")
    out = pd.DataFrame(rows).groupby("family").agg(jobs=("cpu_s", "size"), cpu_s=("cpu_s", "sum"),
                                                     wall_s=("wall_s", "sum"))
    return out.reset_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", help="results/benchmarks folders (one or two runs)")
    ap.add_argument("--families", default="attribute,attribute_pruning,cache",
                    help="the families summed for the comparison (comma-separated)")
    args = ap.parse_args()
    families = args.families.split(",")
    totals = []
    for folder in args.folders:
        table = family_totals(folder)
        print(f"\n{folder}\n{table.to_markdown(index=False, floatfmt='.1f')}")
        chosen = table[table["family"].isin(families)]
        totals.append(chosen["cpu_s"].sum())
        print(f"{'+'.join(families)}: {len(chosen)} families, {chosen['jobs'].sum()} jobs, "
              f"{chosen['cpu_s'].sum():.1f} CPU s, {chosen['wall_s'].sum():.1f} wall s")
    if len(totals) == 2:
        print(f"\nCPU ratio first / second: {totals[0] / totals[1]:.2f}x")


if __name__ == "__main__":
    main()

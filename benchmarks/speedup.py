"""Speed and memory of group attribution against individual attribution, measured in one run.

    python benchmarks/speedup.py                                  # digits ann-s (bundled, offline)
    python benchmarks/speedup.py --dataset mnist --model ann-m --root path/to/mnist   # the MNIST IDX files
    python benchmarks/speedup.py --dataset mnist --model cnn --root path/to/mnist \
        --methods trak,tracin --projections dense,factored --groupings random --sizes 64 --targets 10000

For each method, projection and grouping at group sizes 1 (individual), 4, 16, 64, 256 it records the time
breakdown (grouping, training-side gradients, target gradients, kernel/Hessian solve, scoring), the
speedups over individual attribution (training side; end to end without grouping; with grouping),
the ratio to one training epoch, the peak resident memory added by the call, and fidelity (per target,
the correlation of each point's inherited share with its individual score, averaged over targets), and for
IF and TracIn the largest relative gap between a group's score and the sum of its members' individual
scores (``sum_rel_err``: both are linear in the group gradient, so it checks that grouping changed nothing).
Projections (TracIn, TRAK; IF only with ``factored``): ``dense`` = vectorised per-sample (individual) or
group gradients and a dense Gaussian projection, the paper's kind of baseline; ``factored`` = per-layer
Kronecker-factored features from one batched forward/backward pass (ggda.factored). Speedups are
against individual attribution with the same projection, and ``x_vs_individual_dense`` against the
dense individual baseline. Every timing is the median of ``--repeats`` runs.
Writes a CSV (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import statistics
import threading
import time

import numpy as np
import pandas as pd
import torch

import ggda
from ggda import grouping, train
from bench_output import parse_args, write_and_show

log = logging.getLogger("speedup")


class PeakRSS:
    """Peak resident set size (bytes) above the level at entry, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * self.page

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.added = self.peak - self.base


def epoch_seconds(model: str, data, repeats: int, device: str) -> float:
    """Median wall time of one training epoch with the model's default hyper-parameters."""
    times = [train.fit(model, data, {"epochs": 1}, seed=r, checkpoints=1, device=device, progress=False).wall_s
             for r in range(repeats)]
    return statistics.median(times)


def run_config(method, runs, data, targets, groups, options, repeats):
    """Median timing over repeats (the attribution of the last repeat is returned)."""
    timings, mems = [], []
    for _ in range(repeats):
        with PeakRSS() as mem:
            attr = ggda.attribute(method, runs if method == "trak" else runs[0], data.train, targets, groups,
                                  progress=False, **options)
        timings.append(attr.timing)
        mems.append(mem.added)
    med = {k: statistics.median(t[k] for t in timings) for k in timings[0]}
    return attr, med, statistics.median(mems)


def mean_fidelity(groups, group_scores, individual_scores, sample: int = 2000) -> float:
    if groups.k == groups.n:
        return 1.0
    return float(np.nanmean(grouping.fidelity(groups, group_scores, individual_scores, sample=sample, seed=0)))


def sum_error(method: str, groups, group_scores: np.ndarray, individual_scores: np.ndarray) -> float:
    """IF and TracIn: max |group score - sum of its members' individual scores| / max |group score| (0 up
    to rounding and solver tolerance: both are linear in the group gradient); NaN for TRAK (no such identity)."""
    if method == "trak":
        return float("nan")
    summed = np.zeros_like(group_scores)
    np.add.at(summed.T, groups.labels, individual_scores.T)
    return float(np.abs(group_scores - summed).max() / np.abs(group_scores).max())


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="ann-s")
    ap.add_argument("--root", default=None, help="folder with the data set's files (mnist: the IDX files)")
    ap.add_argument("--n-train", type=int, default=10_000, help="training points (first-n subset for mnist)")
    ap.add_argument("--targets", type=int, default=500, help="number of test points attributed")
    ap.add_argument("--methods", default="tracin,trak,if")
    ap.add_argument("--projections", default="dense",
                    help="comma-separated: dense, factored (IF: dense = exact curvature, factored = Gauss-Newton "
                         "in the factored space)")
    ap.add_argument("--groupings", default="random,grad-kmeans")
    ap.add_argument("--sizes", default="4,16,64,256")
    ap.add_argument("--proj-dim", type=int, default=512, help="projection dimension for TracIn and TRAK")
    ap.add_argument("--trak-models", type=int, default=1, help="TRAK ensemble size")
    ap.add_argument("--checkpoints", type=int, default=3, help="TracIn checkpoints")
    ap.add_argument("--grouping-dim", "--feature-dim", dest="grouping_dim", type=int, default=64,
                    help="grad-kmeans and kmeans projection dimension (grouping proj_dim)")
    ap.add_argument("--if-params", default="auto", help="IF parameters: all, last, or auto (last when p > 5000)")
    ap.add_argument("--cg-max-iter", type=int, default=None, help="IF: cap on conjugate-gradient iterations")
    ap.add_argument("--device", default="auto")
    args = parse_args(ap, argv, "benchmarks/out/speedup.csv")

    # mnist: the first n training images in file order (the files measured in benchmarks/README.md held
    # exactly the first 10,000)
    data = ggda.data.load(args.dataset, root=args.root, download=args.root is None)
    if args.n_train < len(data.train):
        keep = torch.arange(args.n_train)
        data = dataclasses.replace(data, train=torch.utils.data.TensorDataset(*(t[keep] for t in data.train.tensors)))
    targets = torch.utils.data.TensorDataset(*(t[: args.targets] for t in data.test.tensors))
    n, m = len(data.train), len(targets)
    log.info("%s/%s: n=%d, targets=%d, device=%s, threads=%d", args.dataset, args.model, n, m,
             train.resolve_device(args.device), torch.get_num_threads())

    runs = [train.fit(args.model, data, seed=s, checkpoints=args.checkpoints, device=args.device, progress=False)
            for s in range(max(1, args.trak_models))]
    p = ggda.gradients.num_parameters(runs[0].model)
    epoch_s = epoch_seconds(args.model, data, args.repeats, args.device)
    log.info("trained: test acc %.4f, p=%d, one epoch %.3f s", runs[0].test_acc, p, epoch_s)

    rows = []
    groupings = {}  # (name, size) -> Groups, made once for every method and projection
    for gname in args.groupings.split(","):
        for size in map(int, args.sizes.split(",")):
            groupings[gname, size] = grouping.make(gname, runs[0], data, size, seed=0, proj_dim=args.grouping_dim,
                                                   device=args.device)
    dense_individual_total = {}
    for method, projection in [(m, pr) for m in args.methods.split(",") for pr in args.projections.split(",")]:
        options = {"device": args.device, "projection": projection}
        if method in ("tracin", "trak") or projection == "factored":
            options["proj_dim"] = args.proj_dim
        if method == "tracin":
            options["checkpoints"] = list(range(args.checkpoints))
        if method == "if" and projection == "dense":
            options["params"] = ("last" if p > 5000 else "all") if args.if_params == "auto" else args.if_params
            if args.cg_max_iter is not None:
                options["cg_max_iter"] = args.cg_max_iter
        passes = args.trak_models if method == "trak" else (args.checkpoints if method == "tracin" else 1)
        ind, ind_t, ind_mem = run_config(method, runs, data, targets, None, options, args.repeats)
        ind_scores = ind.point_scores()
        if projection == "dense":
            dense_individual_total[method] = ind_t["total_s"]
        configs = [("individual", 1, None)] + [(g, s, groups) for (g, s), groups in groupings.items()]
        for gname, size, groups in configs:
            if groups is None:
                attr, t, mem = ind, ind_t, ind_mem
            else:
                attr, t, mem = run_config(method, runs, data, targets, groups, options, args.repeats)
                # grouping time: median of fresh groupings, features included
                t["grouping_s"] = statistics.median(
                    grouping.make(gname, runs[0], data, size, seed=0, proj_dim=args.grouping_dim,
                                  device=args.device).seconds for _ in range(args.repeats))
                t["total_s"] = sum(t[k] for k in ("grouping_s", "train_gradients_s", "target_gradients_s",
                                                  "solve_s", "scoring_s"))
            train_side = t["train_gradients_s"] + t["solve_s"] + t["scoring_s"]
            ind_train_side = ind_t["train_gradients_s"] + ind_t["solve_s"] + ind_t["scoring_s"]
            summary = attr.groups.size_summary()
            rows.append({
                "dataset": args.dataset, "model": args.model, "method": method, "projection": projection,
                "grouping": gname,
                "group_size": size, "k": attr.groups.k, "size_min": summary["min"], "size_median": summary["median"],
                "size_max": summary["max"], "n": n, "targets": m, "params": options.get("params", "all"),
                "proj_dim": options.get("proj_dim"), **{k: t[k] for k in ("grouping_s", "train_gradients_s",
                                                                            "target_gradients_s", "solve_s",
                                                                            "scoring_s", "total_s")},
                "train_side_s": train_side, "epoch_s": epoch_s,
                "speedup_train_side": ind_train_side / train_side,
                "speedup_no_grouping": (ind_t["total_s"] - ind_t["grouping_s"]) / (t["total_s"] - t["grouping_s"]),
                "speedup_with_grouping": ind_t["total_s"] / t["total_s"],
                "x_vs_individual_dense": dense_individual_total.get(method, np.nan) / t["total_s"],
                "train_grad_per_pass_over_epoch": t["train_gradients_s"] / passes / epoch_s,
                "total_over_epoch": t["total_s"] / epoch_s,
                "peak_mem_mb": mem / 2**20,
                "fidelity": mean_fidelity(attr.groups, attr.scores, ind_scores),
                "sum_rel_err": sum_error(method, attr.groups, attr.scores, ind.scores),
                "solve_for": attr.options.get("solve_for"), "cg_iterations": attr.options.get("cg_iterations"),
                "repeats": args.repeats, "device": str(train.resolve_device(args.device)),
                "threads": torch.get_num_threads(), "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            })
            log.info("%s %s %s-%d: total %.3f s, speedup %.1fx (train side %.1fx)", method, projection, gname, size,
                     t["total_s"], rows[-1]["speedup_with_grouping"], rows[-1]["speedup_train_side"])
    df = pd.DataFrame(rows)
    cols = ["method", "projection", "grouping", "group_size", "k", "size_median", "size_max", "grouping_s", "train_gradients_s",
            "target_gradients_s", "solve_s", "scoring_s", "total_s", "speedup_train_side", "speedup_no_grouping",
            "speedup_with_grouping", "x_vs_individual_dense", "train_grad_per_pass_over_epoch", "total_over_epoch",
            "peak_mem_mb", "fidelity", "sum_rel_err"]
    write_and_show(df, args.out, cols, f"{args.dataset}/{args.model}: n={n}, targets={m}, p={p}, one epoch "
                                       f"{epoch_s:.3f} s (median of {args.repeats})")
    return df


if __name__ == "__main__":
    main()

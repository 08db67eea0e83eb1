"""TRAK's group forms against leave-one-group-out retraining on a convex model.

For every group G of a grouping, logistic regression (full-batch L-BFGS to a tight optimum, so retraining
is deterministic) is retrained without G, and the actual effect on each target's margin,
margin(theta) - margin(theta without G), is compared with TRAK's group score tau(z, G) for each kernel
(``ggda.attribution.trak``: "groups", "groups-unscaled", "individual") and damping. Reported: the mean
over targets of the Spearman correlation across groups, and the Pearson correlation of the group
importances (scores summed over targets) with the summed actual effects.

    python benchmarks/trak_group_forms.py --dataset digits --proj-dim 256
    python benchmarks/trak_group_forms.py --dataset breast_cancer --proj-dim none
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import pandas as pd
import torch

import ggda
from ggda import grouping, train
from ggda.evaluation import spearman_columns
from ggda.gradients import per_sample_output
from ggda.stats import standard_error

KERNELS = ("groups", "groups-unscaled", "individual")


@torch.no_grad()
def margins(model, tensors) -> np.ndarray:
    inputs, y = train.split_batch(tuple(tensors), model, torch.device("cpu"))
    return per_sample_output(model(*inputs), y, "margin").double().numpy()


def leave_one_group_out(run, data, groups, targets) -> np.ndarray:
    """(m, k): each target's margin under the full model minus under the model retrained without group G."""
    full = margins(run.model, targets.tensors)
    out = np.empty((len(full), groups.k))
    for g, members in enumerate(groups.members):
        keep = np.setdiff1d(np.arange(groups.n), members)
        new = train.fit(run.model_name, data, run.hparams, seed=0, keep=keep, checkpoints=1, progress=False)
        out[:, g] = full - margins(new.model, targets.tensors)
    return out


def main(argv=None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--grouping", default="grad-kmeans")
    ap.add_argument("--group-size", type=int, default=16)
    ap.add_argument("--proj-dim", default="256", help="TRAK's projection dimension, or 'none' for raw gradients")
    ap.add_argument("--dampings", default="1e-6,1e-2,1e-1,1")
    ap.add_argument("--targets", type=int, default=100)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = ggda.data.load(args.dataset)
    run = train.fit("lr", data, seed=0, progress=False)
    targets = torch.utils.data.TensorDataset(*(t[:args.targets] for t in data.test.tensors))
    groups = grouping.make(args.grouping, run, data, args.group_size, seed=0)
    proj_dim = None if args.proj_dim == "none" else int(args.proj_dim)
    start = time.perf_counter()
    actual = leave_one_group_out(run, data, groups, targets)
    logo_s = time.perf_counter() - start
    rows = []
    for kernel, damping in itertools.product(KERNELS, [float(d) for d in args.dampings.split(",")]):
        attr = ggda.attribute("trak", run, data.train, targets, groups, proj_dim=proj_dim, projection="dense",
                              kernel=kernel, relative_damping=damping, progress=False)
        rho = spearman_columns(attr.scores.T, actual.T)
        r = np.corrcoef(attr.scores.sum(0), actual.sum(0))[0, 1]
        rows.append({"kernel": kernel, "damping": damping, "spearman_mean": float(np.nanmean(rho)),
                     "spearman_se": standard_error(rho),
                     "importance_pearson": float(r), "seconds": attr.timing["total_s"]})
    table = pd.DataFrame(rows)
    print(f"{args.dataset} lr, {args.grouping} size {args.group_size}: n={groups.n}, k={groups.k} groups "
          f"(sizes {groups.size_summary()}), proj_dim={proj_dim}, {len(targets)} targets; "
          f"{groups.k} leave-one-group-out retrainings in {logo_s:.1f} s")
    print(table.to_markdown(index=False, floatfmt=".4g"))
    return table


if __name__ == "__main__":
    main()

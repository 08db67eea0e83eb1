"""Determinism and peak memory of attribution on one device (part of benchmarks/gpu_check.sh).

Trains a model, then runs group TracIn and TRAK (factored and dense projections) and individual IF twice
each with the same seeds, and reports whether the two runs gave bitwise-identical scores (else the largest
relative difference), the time of each, and the peak GPU memory (CUDA only).

    python benchmarks/gpu_check.py --device cuda --out benchmarks/out/gpu_check/determinism.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import ggda
from ggda import grouping, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="ann-s")
    ap.add_argument("--root", default=None, help="folder with the data set's files (mnist: the IDX files)")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA device")
    data = ggda.data.load(args.dataset, root=args.root, n_train=args.n_train, download=False)
    targets, _ = ggda.data.target_subset(data.test, args.targets, seed=0)
    run = train.fit(args.model, data, seed=0, checkpoints=2, device=device, progress=False)
    groups = grouping.make("grad-kmeans", run, data, 16, device=device)
    cases = {"tracin-factored": ("tracin", groups, {"proj_dim": 512, "projection": "factored"}),
             "tracin-dense": ("tracin", groups, {"proj_dim": 512, "projection": "dense"}),
             "trak-factored": ("trak", groups, {"proj_dim": 512, "projection": "factored"}),
             "if-individual": ("if", None, {"params": "last"})}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    report = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "dataset": args.dataset, "model": args.model, "n_train": len(data.train),
              "n_targets": len(targets), "torch": torch.__version__, "cases": {}}
    for name, (method, g, opts) in cases.items():
        scores, seconds = [], []
        for _ in range(2):
            start = time.perf_counter()
            attr = ggda.attribute(method, run, data.train, targets, g, device=device, progress=False, **opts)
            seconds.append(time.perf_counter() - start)
            scores.append(np.asarray(attr.scores))
        diff = float(np.max(np.abs(scores[0] - scores[1])) / max(np.max(np.abs(scores[0])), 1e-30))
        report["cases"][name] = {"bitwise_identical": bool(np.array_equal(scores[0], scores[1])),
                                 "max_rel_diff": diff, "seconds": seconds}
    report["peak_gpu_memory_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                    else None)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

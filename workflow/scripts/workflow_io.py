"""What every workflow script shares: logging to the rule's log, threads, and atomic file I/O.

No science here: the scripts call ggda; this module only moves data between files and Python objects.
A prepared data set is kept as one torch file (``save_bundle`` / ``load_bundle``) so that later jobs
read tensors instead of parsing (and possibly downloading) the published files again.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("ggda.workflow")


#: Environment variables read by the BLAS and OpenMP runtimes when they load (numpy's OpenBLAS, MKL,
#: scikit-learn's OpenMP, numexpr): set before any of them is imported by the job.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(threads: int) -> None:
    """Hold every thread pool of this process to ``threads``: torch's, and the OpenMP and BLAS pools of
    numpy and scikit-learn (K-Means), both those already loaded (threadpoolctl) and those loaded later
    (environment variables). Without it, jobs running side by side each start one thread per core in
    scikit-learn and oversubscribe the machine."""
    threads = max(1, int(threads))
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    import torch

    torch.set_num_threads(threads)


def setup(snakemake, torch_threads: bool = True) -> logging.Logger:
    """Send logging, warnings, stdout and stderr of this job to its log file; limit every thread pool of
    the job to its ``threads`` (:func:`limit_threads`; torch only where ``torch_threads``)."""
    logfile = Path(snakemake.log[0])
    logfile.parent.mkdir(parents=True, exist_ok=True)
    stream = open(logfile, "a", buffering=1)
    sys.stdout = sys.stderr = stream
    logging.basicConfig(level=logging.INFO, stream=stream, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated")
    if torch_threads:
        limit_threads(snakemake.threads)
        # The first optimiser step or torch.func call of a process imports torch._dynamo (about 2 s):
        # import it now, so that this one-time cost of a fresh process is not counted in the training,
        # attribution or retraining times the job records.
        import torch._dynamo  # noqa: F401

        log.info("rule %s, wildcards %s, threads %d", snakemake.rule, dict(snakemake.wildcards),
                 snakemake.threads)
    return log


def atomic_path(path: str | os.PathLike):
    """ggda's atomic output (temporary name, then rename), imported only once logging is set up."""
    from ggda._io import atomic_path as _atomic_path

    return _atomic_path(path)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_csv(frame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _jsonable(obj: Any):
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# --------------------------------------------------------------------------------------------- bundles


def save_bundle(bundle, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write a ggda DataBundle (and named extra TensorDatasets, e.g. a validation split) to one file."""
    import torch

    extra = extra or {}
    payload = {
        "name": bundle.name,
        "train": list(bundle.train.tensors),
        "test": list(bundle.test.tensors),
        "num_classes": int(bundle.num_classes),
        "class_names": list(bundle.class_names),
        "feature_names": None if bundle.feature_names is None else list(bundle.feature_names),
        "flipped": torch.as_tensor(bundle.flipped, dtype=torch.int64),
        "clean_labels": torch.as_tensor(bundle.clean_labels, dtype=torch.int64),
        "meta": json.dumps(bundle.meta, sort_keys=True, default=_jsonable),
        "extra": {k: list(v.tensors) for k, v in extra.items()},
    }
    from ggda._io import save_torch  # through memory: the same payload is the same bytes

    save_torch(payload, path)


def load_bundle(path: str | os.PathLike):
    """(DataBundle, {name: TensorDataset}) from a file written by :func:`save_bundle`."""
    import torch
    from torch.utils.data import TensorDataset

    from ggda.data import DataBundle

    p = torch.load(path, weights_only=True)
    bundle = DataBundle(p["name"], TensorDataset(*p["train"]), TensorDataset(*p["test"]), p["num_classes"],
                        p["class_names"], p["feature_names"], p["flipped"].numpy(), p["clean_labels"].numpy(),
                        json.loads(p["meta"]))
    return bundle, {k: TensorDataset(*v) for k, v in p["extra"].items()}


def target_subset(dataset, m: int | None, seed: int):
    """The attribution targets: ``dataset`` itself, or a seeded subset of m of its points (sorted); an m
    above the split's size uses all of it, with a warning naming both sizes."""
    if m is not None and m > len(dataset):
        logging.getLogger("ggda.workflow").warning(
            "attribution.targets=%d exceeds the %d points of the split: using all %d", m, len(dataset), len(dataset))
    if m is None or m >= len(dataset):
        return dataset, None
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    idx = np.sort(np.random.default_rng(seed).choice(len(dataset), m, replace=False))
    return TensorDataset(*(t[torch.from_numpy(idx)] for t in dataset.tensors)), idx


def load_runs(metrics_files):
    """TrainRuns from the metrics.json files of their folders."""
    from ggda.train import TrainRun

    return [TrainRun.load(Path(f).parent) for f in metrics_files]

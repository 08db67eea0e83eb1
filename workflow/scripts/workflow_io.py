"""What every workflow script shares: logging to the rule's log, threads, and atomic file I/O.

No science here: the scripts call ggda; this module only moves data between files and Python objects.
A prepared data set is kept as one torch file (``ggda.data.save_bundle`` / ``load_bundle``) so that later
jobs read tensors instead of parsing (and possibly downloading) the published files again.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import output_checksums

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


def record_outputs_on_success(snakemake) -> None:
    """Once the script has run to its end without an exception, record the checksums of the job's outputs
    (:mod:`output_checksums`): a later change to any of them makes the workflow rebuild it."""
    failed = []
    hook = sys.excepthook

    def note_failure(*exc_info):
        failed.append(True)
        hook(*exc_info)

    def finish():
        if not failed and all(os.path.exists(f) for f in snakemake.output):
            output_checksums.record(snakemake.output, snakemake.rule)

    sys.excepthook = note_failure
    atexit.register(finish)


def setup(snakemake, torch_threads: bool = True) -> logging.Logger:
    """Send logging, warnings, stdout and stderr of this job to its log file; limit every thread pool of
    the job to its ``threads`` (:func:`limit_threads`; torch only where ``torch_threads``); record the
    checksums of its outputs when it succeeds (:func:`record_outputs_on_success`)."""
    record_outputs_on_success(snakemake)
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
    from ggda._io import jsonable

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def write_csv(frame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_rows(frame, path: str | os.PathLike, timing: dict | None = None) -> None:
    """Write the rows of an evaluation to ``path`` without their timing columns (seconds, named ``*_s``),
    which go with ``timing`` to its sidecar (``ggda._io.timing_path``): identical runs give identical tables."""
    from ggda._io import timing_path

    seconds = [c for c in frame.columns if c.endswith("_s")]
    write_csv(frame.drop(columns=seconds), path)
    write_json({**(timing or {}), **{c: frame[c].tolist() for c in seconds}}, timing_path(path))


def load_runs(metrics_files):
    """TrainRuns from the metrics.json files of their folders."""
    from ggda.train import TrainRun

    return [TrainRun.load(Path(f).parent) for f in metrics_files]

"""Memory and run time to request for a job on a cluster, scaled from the data and model sizes.

Plain Python (the workflow loads it when it is parsed, without torch). A job's work is counted in
*trainings*: one training run of the model on the data set with its hyper-parameters (a retraining job
of 3 fractions is 3 trainings; a feature or attribution job a fraction of one). A training takes
``passes x rows / throughput`` seconds, where ``passes`` are the epochs (L-BFGS: its iterations) and
``throughput`` the training examples per second of the model on one data-centre GPU, in float32 (a
full-batch L-BFGS pass is far faster per example: FULL_BATCH_THROUGHPUT). The
throughputs are planning estimates with a margin (order of magnitude: an MLP step on a few hundred
thousand examples a second, a ResNet-9 step on CIFAR-10 a few thousand, BERT-base at 128 tokens about a
hundred), not measurements of any one cluster: the request is ``SAFETY`` times the estimate plus a
start-up allowance, and doubles with each retry (Snakemake's ``attempt``), so an estimate that is too
low costs one retry, not a failed run.
"""

from __future__ import annotations

import math

#: Examples per second of one training step on one GPU (float32).
THROUGHPUT = {"lr": 200_000, "ann-s": 200_000, "ann-m": 100_000, "cnn": 20_000, "resnet9": 4_000, "bert": 100}
#: Examples per second of a full-batch L-BFGS pass (lr: one large matrix product, no per-step overhead).
FULL_BATCH_THROUGHPUT = 20_000_000
#: Parameter counts of the models whose size does not follow from the data (the MLPs' do).
PARAMETERS = {"cnn": 100_000, "resnet9": 6_600_000, "bert": 110_000_000}
SAFETY = 3.0          # requested run time = SAFETY x estimate + STARTUP_MIN
STARTUP_MIN = 5       # importing torch, loading data and models, writing results
BASE_MB = 3000        # the Python process with torch (and a CUDA context's host memory)
FEATURE_DIMS_MAX = 4096  # features are projected or cut to at most this many numbers per example


def parameters(model: str, example_size: int, classes: int, hidden: tuple[int, ...] = ()) -> int:
    """Approximate parameter count: exact for the MLPs (``hidden`` their hidden sizes), else the table."""
    if model in PARAMETERS:
        return PARAMETERS[model]
    widths = [example_size, *hidden, classes]
    return sum((a + 1) * b for a, b in zip(widths, widths[1:]))


def training_minutes(model: str, rows: int, passes: int, full_batch: bool = False) -> float:
    """Estimated minutes of one training run over ``rows`` examples for ``passes`` epochs (``full_batch``:
    L-BFGS iterations)."""
    return passes * rows / (FULL_BATCH_THROUGHPUT if full_batch else THROUGHPUT[model]) / 60.0


def runtime_minutes(trainings: float, minutes_per_training: float, attempt: int = 1) -> int:
    """The run time to request (minutes) for a job of ``trainings`` trainings; doubled per retry."""
    return int(math.ceil((SAFETY * trainings * minutes_per_training + STARTUP_MIN) * 2 ** (attempt - 1)))


def memory_mb(params: int, rows: int, example_size: int, feature_copies: int = 0, attempt: int = 1) -> int:
    """The memory to request (MB): the process, the model with its gradients and optimiser state (4 copies),
    the data set twice (float32), and ``feature_copies`` float64 feature matrices of ``rows`` examples
    (attribution: per-example or group features, at most FEATURE_DIMS_MAX numbers each); doubled per retry."""
    model_mb = 4 * params * 4 / 1e6
    data_mb = 2 * rows * example_size * 4 / 1e6
    features_mb = feature_copies * rows * min(params, FEATURE_DIMS_MAX) * 8 / 1e6
    return int(math.ceil((BASE_MB + model_mb + data_mb + features_mb) * 2 ** (attempt - 1)))


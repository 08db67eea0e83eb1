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

import csv
import math
from pathlib import Path

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


#: Strings pandas reads as missing by default (pandas.read_csv's na_values), which a table's scan skips.
MISSING = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
           "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def table_facts(path: str | Path, label: str, features: list[str] | None = None,
                categorical: list[str] | None = None, test: str | None = None,
                test_fraction: float = 0.2) -> tuple[int, int, int] | None:
    """(training rows, numbers per example, classes) of a CSV/TSV table as ggda.data.load_table will encode
    it (arguments as there): a numeric column is one number, a categorical one (named, or by default any
    column holding a non-number, as pandas' booleans and strings do) one per distinct value in the file (an
    upper bound on the training part's), the classes the distinct labels. One pass with the csv module, no
    pandas or torch. None where the file is not a readable CSV/TSV (Parquet, missing file, no such column):
    the caller then plans with a default, and the data job reports the problem."""
    path = Path(path)
    if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:  # as pandas, drop a BOM
        reader = csv.reader(f, delimiter="," if path.suffix.lower() == ".csv" else "\t")
        header = next(reader, None)
        if header is None or label not in header:
            return None
        columns = [c for c in header if c != label] if features is None else list(features)
        if any(c not in header for c in columns):
            return None
        where = {c: header.index(c) for c in [label, *columns]}
        values: dict[str, set[str]] = {c: set() for c in [label, *columns]}
        numeric = {c: True for c in columns}
        rows = 0
        for row in reader:
            if not row:
                continue
            rows += 1
            for c, i in where.items():
                value = row[i].strip() if i < len(row) else ""
                if value in MISSING:
                    continue
                values[c].add(value)
                if c != label and numeric[c] and not _is_number(value):
                    numeric[c] = False
    if categorical is None:
        categorical = [c for c in columns if not numeric[c]]
    example_size = sum(max(1, len(values[c])) if c in categorical else 1 for c in columns)
    train_rows = rows if test is not None else rows - round(test_fraction * rows)
    return max(1, train_rows), max(1, example_size), max(2, len(values[label]))

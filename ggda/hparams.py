"""Training hyper-parameters and the default for each (data set, model): the one place they live.

The objective is the mean-form J = (1/n) sum_i loss_i + (weight_decay / 2) |theta|^2 over all
parameters (docs/methods.md, "Training objective"), whatever the optimiser; the attribution methods
assume it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("sgd", "adam", "lbfgs")
SCHEDULES = ("constant", "cosine", "linear", "triangle")


@dataclass(frozen=True)
class HParams:
    """Hyper-parameters of one training run.

    optimizer: "sgd" (with ``momentum``), "adam", or "lbfgs" (full batch, strong-Wolfe line search;
        for convex models that must reach a tight optimum).
    lr: peak learning rate (lbfgs: its step size, normally 1).
    schedule: "constant", "cosine" (to 0), "linear" (to 0) or "triangle" (linear warm-up over
        ``warmup`` of the steps to ``lr``, then linear decay to 0). Ignored by lbfgs.
    epochs, batch_size: passes over the training data and mini-batch size (sgd, adam).
    weight_decay: lambda of the L2 term (lambda/2)|theta|^2 added to the mean loss.
    max_iter, tol: lbfgs iteration budget and gradient tolerance (max |dJ/dtheta|).
    dtype: "float32" or "float64" (model parameters; inputs are cast to it).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup: float = 0.25
    epochs: int = 30
    batch_size: int = 64
    weight_decay: float = 1e-4
    max_iter: int = 1000
    tol: float = 1e-6
    dtype: str = "float32"

    def __post_init__(self) -> None:
        checks = [
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("schedule", self.schedule in SCHEDULES, f"one of {SCHEDULES}"),
            ("lr", self.lr > 0, "positive"),
            ("epochs", isinstance(self.epochs, int) and self.epochs > 0, "a positive integer"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size > 0, "a positive integer"),
            ("weight_decay", self.weight_decay >= 0, "non-negative"),
            ("max_iter", isinstance(self.max_iter, int) and self.max_iter > 0, "a positive integer"),
            ("tol", self.tol > 0, "positive"),
            ("warmup", 0 <= self.warmup < 1, "in [0, 1)"),
            ("dtype", self.dtype in ("float32", "float64"), "float32 or float64"),
        ]
        for key, ok, want in checks:
            if not ok:
                raise ValueError(f"hparams.{key} must be {want}, got {getattr(self, key)!r}")

    def replace(self, **overrides: Any) -> HParams:
        """A copy with some fields changed; an unknown field raises ValueError naming it."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)}; known: "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_LBFGS = HParams(optimizer="lbfgs", lr=1.0, schedule="constant", weight_decay=1e-3, dtype="float64")

#: Defaults per model, then per (data set, model) where they differ. Measured accuracies on full
#: data are in tests/test_train.py (bundled data) and the README.
MODEL_DEFAULTS: dict[str, HParams] = {
    "lr": _LBFGS,
    "ann-s": HParams(optimizer="adam", lr=3e-3, epochs=40, batch_size=64, weight_decay=1e-4),
    "ann-m": HParams(optimizer="adam", lr=2e-3, epochs=30, batch_size=64, weight_decay=1e-4),
    "cnn": HParams(optimizer="adam", lr=2e-3, epochs=10, batch_size=64, weight_decay=1e-4),
    "resnet9": HParams(optimizer="sgd", lr=0.4, momentum=0.9, schedule="triangle", warmup=0.2,
                       epochs=24, batch_size=512, weight_decay=5e-4),
    # The tiny random BERT used offline; fine-tuning bert-base-uncased wants lr=2e-5, epochs=3 (paper.yaml).
    "bert": HParams(optimizer="adam", lr=1e-3, schedule="linear", epochs=3, batch_size=32, weight_decay=0.0),
}
DATASET_MODEL_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("breast_cancer", "lr"): {"weight_decay": 1e-2},
    ("heloc", "lr"): {"weight_decay": 1e-3},
    ("heloc", "ann-s"): {"epochs": 20, "batch_size": 128},
    ("heloc", "ann-m"): {"epochs": 20, "batch_size": 128},
    # affairs (6,366 rows, 8 features): test accuracy lr 0.718, ann-s 0.721, ann-m 0.717 (seed 0, CPU)
    ("affairs", "lr"): {"weight_decay": 1e-3},
    ("affairs", "ann-s"): {"epochs": 20, "batch_size": 128},
    ("affairs", "ann-m"): {"epochs": 20, "batch_size": 128},
    ("mnist", "cnn"): {"epochs": 8},
}


def default_hparams(dataset: str, model: str, **overrides: Any) -> HParams:
    """The documented default hyper-parameters of ``model`` on ``dataset``, with ``overrides`` applied."""
    if model not in MODEL_DEFAULTS:
        raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODEL_DEFAULTS)}")
    # overrides win over the data set's defaults (e.g. epochs=1 for mnist/cnn, which defaults to 8)
    return MODEL_DEFAULTS[model].replace(**{**DATASET_MODEL_DEFAULTS.get((dataset, model), {}), **overrides})

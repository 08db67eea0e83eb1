"""ggda: Generalized Group Data Attribution.

Attribute a PyTorch classifier's predictions to groups of training points (or to single points):
group and individual Influence Functions, TracIn and TRAK, grouping methods, and the retraining
evaluation of Ley et al. (2024), "Generalized Group Data Attribution".

Sub-modules: ``ggda.data`` (data sets), ``ggda.models`` (model zoo), ``ggda.train`` (seeded training),
``ggda.hparams`` (default hyper-parameters).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ggda")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

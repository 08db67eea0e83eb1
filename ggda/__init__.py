"""ggda: Generalized Group Data Attribution.

Attribute a PyTorch classifier's predictions to groups of training points (or to single points):
group and individual Influence Functions, TracIn and TRAK, grouping methods, and the retraining
evaluation of Ley et al. (2024), "Generalized Group Data Attribution".

Sub-modules: ``ggda.data`` (data sets), ``ggda.models`` (model zoo), ``ggda.train`` (seeded training),
``ggda.hparams`` (default hyper-parameters), ``ggda.grouping`` (groups of training points),
``ggda.gradients`` (per-sample and group gradients), ``ggda.attribution`` (IF, TracIn, TRAK).

    import ggda
    bundle = ggda.data.load("digits")
    run = ggda.train.fit("ann-s", bundle)
    groups = ggda.grouping.make("grad-kmeans", run, bundle, group_size=16)
    attr = ggda.attribute("trak", run, bundle.train, bundle.test, groups)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ggda")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

from . import data, grouping, models, train  # noqa: E402
from .attribution import Attribution, Features, attribute, featurize  # noqa: E402
from .external import ModelRun  # noqa: E402

__all__ = ["attribute", "featurize", "Attribution", "Features", "ModelRun", "data", "grouping", "models", "train", "__version__"]

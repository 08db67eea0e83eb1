"""Attribution methods behind one interface: ``ggda.attribute(method, run, train, targets, groups)``.

=======  =========================================================================================
method   what it computes (DESIGN.md section 4; each module's docstring has the details)
=======  =========================================================================================
if       influence functions: grad L(z)^T H^-1 (g_G - |G| g_bar), exact Hessian or CG
tracin   TracInCP: sum over checkpoints of eta_t grad L(z; theta_t) . g_G(theta_t)
trak     TRAK: projected margin gradients, kernel from (group) features, Q weighting, ensemble
=======  =========================================================================================
"""

from __future__ import annotations

from typing import Any

from .base import Attribution
from .features import Features, FeaturesMismatch
from .influence import Influence, influence
from .tracin import TracIn, tracin
from .trak import Trak, trak

METHODS = {"if": influence, "tracin": tracin, "trak": trak}
#: The featurize-then-score core of each method.
CORES = {"if": Influence, "tracin": TracIn, "trak": Trak}

__all__ = ["attribute", "featurize", "has_train_features", "Attribution", "Features", "FeaturesMismatch",
           "METHODS", "influence", "tracin", "trak"]


def attribute(method: str, run, train, targets, groups=None, **options: Any) -> Attribution:
    """Attribute the targets' predictions to the training points, grouped by ``groups``.

    method: "if", "tracin" or "trak".
    run: a ggda.train.TrainRun (trak: one or a list of independently trained runs, the ensemble).
    train: the training data the run was fitted on (TensorDataset or DataBundle).
    targets: the attribution targets (TensorDataset, e.g. ``bundle.test``).
    groups: a ggda.grouping.Groups over the training points; None = individual attribution.
    options: method options (see ``influence``, ``tracin``, ``trak``): e.g. damping, proj_dim, params
        ("all" or "last"), batch_size, device, progress; ``features``: artifacts from :func:`featurize`
        made with the same options, reused instead of recomputed (checked against this call's inputs).
    Returns an Attribution: ``.scores`` (m, k), ``.point_scores()`` (m, n), ``.importance()`` (n,),
    ``.timing``.
    """
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}") from None
    return fn(run, train, targets, groups, **options)


def _core(method: str, run, options: dict):
    try:
        cls = CORES[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(CORES)}") from None
    return cls(run, **options)


def has_train_features(method: str, run, **options: Any) -> bool:
    """Whether ``method`` with these options has training-side features worth caching: always for IF
    (its curvature), for TracIn and TRAK only with the factored projection (a group's feature is then the
    sum of its members'; otherwise group gradients are computed directly for each grouping, and the
    training side holds nothing (TracIn) or only Q (TRAK))."""
    core = _core(method, run, options)
    return method == "if" or core.train_side


def featurize(method: str, run, train, targets=None, *, features=None, solve: bool = True,
              **options: Any) -> Features:
    """The grouping-independent part of an attribution, to save and reuse (ggda.attribution.features).

    Without ``targets``: the training side (IF: the curvature, its factorisation and the mean gradient;
    TracIn / TRAK: every training point's factored feature). With ``targets``: the target side (IF: the
    target gradients and, with ``solve``, their solutions H^-1 grad L(z), made from the curvature in
    ``features`` when given, else computed; TracIn / TRAK: the target features).
    options: the method's options, as for :func:`attribute` (those that do not change features, e.g.
    ``kernel`` or ``centre``, may differ later). Save with ``.save(path)``, reuse with
    ``attribute(..., features=[paths])``.
    """
    core = _core(method, run, options)
    if targets is None:
        return core.featurize_train(train)
    if method == "if":
        return core.featurize_targets(targets, train, features, solve=solve)
    return core.featurize_targets(targets)

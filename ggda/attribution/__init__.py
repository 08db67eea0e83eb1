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
from .influence import influence
from .tracin import tracin
from .trak import trak

METHODS = {"if": influence, "tracin": tracin, "trak": trak}

__all__ = ["attribute", "Attribution", "METHODS", "influence", "tracin", "trak"]


def attribute(method: str, run, train, targets, groups=None, **options: Any) -> Attribution:
    """Attribute the targets' predictions to the training points, grouped by ``groups``.

    method: "if", "tracin" or "trak".
    run: a ggda.train.TrainRun (trak: one or a list of independently trained runs, the ensemble).
    train: the training data the run was fitted on (TensorDataset or DataBundle).
    targets: the attribution targets (TensorDataset, e.g. ``bundle.test``).
    groups: a ggda.grouping.Groups over the training points; None = individual attribution.
    options: method options (see ``influence``, ``tracin``, ``trak``): e.g. damping, proj_dim, params
        ("all" or "last"), batch_size, device, progress.
    Returns an Attribution: ``.scores`` (m, k), ``.point_scores()`` (m, n), ``.importance()`` (n,),
    ``.timing``.
    """
    try:
        fn = METHODS[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}") from None
    return fn(run, train, targets, groups, **options)

"""Attribution methods behind one interface: ``ggda.attribute(method, run, train, targets, groups)``.

=======  =========================================================================================
method   what it computes (docs/methods.md; each module's docstring has the details)
=======  =========================================================================================
if       influence functions: grad L(z)^T H^-1 (g_G - |G| g_bar), exact Hessian or CG
tracin   TracInCP: sum over checkpoints of eta_t grad L(z; theta_t) . g_G(theta_t)
trak     TRAK: projected margin gradients, kernel from (group) features, Q weighting, ensemble
=======  =========================================================================================
"""

from __future__ import annotations

import inspect
from typing import Any

from .base import Attribution, SelfInfluence, Timer, checked_tensors, resolve_groups
from .features import Features, FeaturesMismatch
from .influence import Influence, influence, influence_self
from .tracin import TracIn, tracin, tracin_self
from .trak import Trak, trak, trak_self
from ..grouping import Groups
from ..devices import resolve_device

METHODS = {"if": influence, "tracin": tracin, "trak": trak}
#: The featurize-then-score core of each method.
CORES = {"if": Influence, "tracin": TracIn, "trak": Trak}

__all__ = ["attribute", "featurize", "has_train_features", "self_influence", "Attribution", "Features",
           "FeaturesMismatch", "SelfInfluence", "METHODS", "SELF_INFLUENCE", "influence", "tracin", "trak"]


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


def self_influence(method: str, run, train, groups: Groups | None = None, **options) -> SelfInfluence:
    """Self-influence S(G) of every group of the training points: the method's own score of G for the
    targets that are G's members, summed over them, S(G) = sum_{i in G} score(z_i, G), i.e. the predicted
    effect of removing G on G's own summed loss (each point inherits the share S(G) / |G|; singleton groups
    give the usual individual self-influence). Every score is linear in the target's gradient and the
    members' gradients sum to the group gradient, so S(G) needs the k group gradients only:

    - if: (H^-1 g_G)^T (g_G - |G| g_bar) (``centre=False``: g_G^T H^-1 g_G), :func:`influence_self`;
    - tracin: sum_t eta_t |g_G(theta_t)|^2 over the checkpoints, :func:`tracin_self`;
    - trak: mean_m [phi_G^T K_m^-1 phi_G] * mean_m Q_G with the group kernel, :func:`trak_self`.

    Mislabelled points are fitted against the rest of the data, so their self-influence is high; a group
    that collects them keeps that signal, a group mixing them with clean points dilutes it.

    method: "if", "tracin" or "trak". run: a TrainRun (trak: one or a list, the ensemble).
    train: the training data (TensorDataset or DataBundle). groups: None = individual.
    options: as for ``attribute(method, ...)``, so that the result equals the group-summed diagonal of
        ``attribute(method, run, train, train, groups, **options)`` (tested); not ``features``, nor TRAK's
        ``kernel`` (S(G) uses the group kernel); IF's ``solve_for`` is accepted and has no effect.
    Returns a SelfInfluence: ``.scores`` float64 (k,), ``.point_scores()`` (n,), ``.timing``.
    """
    try:
        fn = SELF_INFLUENCE[method]
    except KeyError:
        raise ValueError(f"unknown attribution method {method!r}: choose one of {', '.join(METHODS)}") from None
    # an unknown option would otherwise surface as a TypeError deep in a solver's constructor
    taken = [name for name, p in inspect.signature(fn).parameters.items()
             if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("timer",)]
    unknown = sorted(set(options) - set(taken))
    if unknown:
        raise TypeError(f"self_influence({method!r}) got unexpected option(s) {', '.join(map(repr, unknown))}; "
                        f"it takes: {', '.join(taken)}")
    model = (run[0] if isinstance(run, (list, tuple)) and run else run).model
    tr = checked_tensors(train, "train", model)
    groups = resolve_groups(groups, len(tr[0]))
    device = resolve_device(options.pop("device", "auto"))
    timer = Timer(device)
    scores, opts = fn(run, tr, groups, timer=timer, device=device, **options)
    return SelfInfluence(method, scores, groups, timer.finish(groups.seconds), opts)


#: The self-influence of each method; its keyword parameters are the options it takes.
SELF_INFLUENCE = {"if": influence_self, "tracin": tracin_self, "trak": trak_self}

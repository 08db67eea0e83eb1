"""Influence functions, individual and group (definitions: docs/methods.md, "Influence functions").

score(z, G) = grad L(z)^T H^-1 (g_G - |G| g_bar), with
  H     = sum_i hess loss_i(theta) + n (weight_decay + damping) I   (the sum-form Hessian of the
          training objective J = mean loss + weight_decay/2 |theta|^2, damped; by default the
          Gauss-Newton part of hess loss_i, which is positive semi-definite and exact for lr),
  g_G   = sum_{i in G} grad loss_i(theta)                              (a group gradient),
  g_bar = (1/n) sum_i grad loss_i(theta)  (= -weight_decay theta at the optimum; ``centre=False`` drops it).
It predicts the increase of the target's loss when G is removed and the model retrained on the mean
loss of the n - |G| kept points. Solvers: "exact" (Hessian by vectorised Hessian-vector products,
Cholesky) up to ``exact_max_params`` parameters, else "cg" (conjugate gradients on Hessian-vector
products over the training data). ``params="last"`` restricts everything to the last layer.

Factored (``projection="factored"``, ggda.factored): gradients are replaced by their per-layer
Kronecker-factored features phi (D dimensions) and the curvature by its projection into that space,
H_f = C + n (weight_decay + damping) I (D x D, Cholesky in float64), with C the Gauss-Newton matrix of
the loss, sum_i sum_c p_ic g_ic g_ic^T (g_ic the feature of the loss with label c; one forward and
1 + C backward passes per batch), or the empirical Fisher sum_i phi_i phi_i^T (``curvature=
"empirical-fisher"``: free, from the same pass, but a poorer approximation). score = phi_z^T H_f^-1
(phi_G - |G| phi_bar). For large models where the exact Hessian is out of reach; the exact path is the
default. (Measured on digits against exact Gauss-Newton IF, Spearman per target: lr, where D covers
all parameters, 1.0 with Gauss-Newton, 0.60 with the empirical Fisher; ann-s at D = 4,096, 0.85 / 0.71.)

Featurize, then score (ggda.attribution.features): the curvature side (the Cholesky factor, g_bar, and
the factored features) is made once per model, the target side (grad L(z) and H^-1 grad L(z)) once per
target set; a grouping then costs one pass of group gradients and a matrix product.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.func import functional_call, grad, jvp, vjp, vmap
from tqdm.auto import tqdm

from ..gradients import GradientEngine, per_sample_output
from ..grouping import Groups
from ..devices import resolve_device
from .base import (Attribution, Timer, check_damping, check_finite_scores, checked_tensors, fingerprint,
                   group_sum, make_engine, make_projector, parameter_names, projection_options, resolve_groups,
                   resolve_projection, timed)
from .features import Features, loaded, pick

log = logging.getLogger(__name__)

#: Parameter count up to which solver="auto" forms the exact Hessian (float64, p x p).
EXACT_MAX_PARAMS = 5000
#: The sides the curvature can be inverted on (``solve_for``).
SOLVE_SIDES = ("auto", "targets", "groups")


def _logits_fn(engine: GradientEngine):
    """Logits as a function of the flat selected-parameter vector."""
    shapes = [engine.selected[n].shape for n in engine.names]
    sizes = [math.prod(s) for s in shapes]

    def f(flat: torch.Tensor, xs) -> torch.Tensor:
        sel = {n: t.reshape(s) for n, t, s in zip(engine.names, torch.split(flat, sizes), shapes)}
        return functional_call(engine.model, (sel, engine.frozen), tuple(xs))

    return f


def _batches(engine: GradientEngine, tensors, batch_size: int):
    n = len(tensors[0])
    for lo in range(0, n, batch_size):
        yield engine._inputs(tensors, torch.arange(lo, min(lo + batch_size, n)))


def curvature_vector_products(engine: GradientEngine, tensors, vectors: torch.Tensor, batch_size: int,
                              curvature: str = "gauss-newton") -> torch.Tensor:
    """(r, p) -> (r, p): each row times the curvature of the summed training loss (no regulariser).

    curvature: "hessian" (the exact Hessian, by forward-over-reverse differentiation) or "gauss-newton"
        (J^T H_out J with H_out = diag(p) - p p^T the Hessian of cross-entropy in the logits: positive
        semi-definite, and equal to the Hessian for logistic regression).
    """
    logits_fn = _logits_fn(engine)
    theta = torch.cat([engine.selected[n].reshape(-1) for n in engine.names])
    out = torch.zeros_like(vectors)
    for xs, y in _batches(engine, tensors, batch_size):
        if curvature == "hessian":
            gf = grad(lambda t: per_sample_output(logits_fn(t, xs), y, "loss").sum())
            out += vmap(lambda v: jvp(gf, (theta,), (v,))[1])(vectors)
        else:
            f = lambda t: logits_fn(t, xs)  # noqa: E731
            logits, pullback = vjp(f, theta)
            prob = logits.softmax(-1).detach()

            def gnvp(v):
                jv = jvp(f, (theta,), (v,))[1]
                return pullback(prob * jv - prob * (prob * jv).sum(-1, keepdim=True))[0]

            out += vmap(gnvp)(vectors)
    return out


def curvature_matrix(engine: GradientEngine, tensors, curvature: str = "gauss-newton", batch_size: int = 512,
                     col_chunk: int = 256, progress: bool = False) -> torch.Tensor:
    """The (p, p) curvature (see :func:`curvature_vector_products`) of the summed training loss, by
    chunks of curvature-vector products with the identity's columns."""
    p = engine.dim
    eye = torch.eye(p, dtype=engine.dtype, device=engine.device)
    cols = []
    with torch.no_grad():
        for lo in tqdm(range(0, p, col_chunk), desc="hessian", disable=not progress, leave=False):
            with torch.enable_grad():
                cols.append(curvature_vector_products(engine, tensors, eye[lo:lo + col_chunk], batch_size,
                                                      curvature))
    h = torch.cat(cols)
    return 0.5 * (h + h.T)  # symmetric up to rounding


def conjugate_gradients(matvec, b: torch.Tensor, tol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Solve A x = b for each row of b (r, p) with A symmetric positive definite given by ``matvec``."""
    x = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rs = (r * r).sum(1)
    b_norm = b.norm(dim=1).clamp_min(1e-30)
    for it in range(1, max_iter + 1):
        ad = matvec(d)
        curv = (d * ad).sum(1)
        if (curv <= 0).any():
            raise ValueError("conjugate gradients met non-positive curvature: the damped Hessian is not "
                             "positive definite; increase damping")
        alpha = rs / curv
        x += alpha[:, None] * d
        r -= alpha[:, None] * ad
        rs_new = (r * r).sum(1)
        if (rs_new.sqrt() / b_norm).max() <= tol:
            return x, it
        d = r + (rs_new / rs)[:, None] * d
        rs = rs_new
    log.warning("conjugate gradients did not reach tol=%.1e in %d iterations (relative residual %.2e)",
                tol, max_iter, (rs.sqrt() / b_norm).max().item())
    return x, max_iter


def default_damping(model_name: str) -> float:
    """0 for the convex lr (its weight decay suffices), 0.1 otherwise: MLP Hessians have negative
    eigenvalues, and 0.1 (not 0.01) was needed for exact and CG solutions to agree (measured on an MLP
    on MNIST)."""
    return 0.0 if model_name == "lr" else 0.1


def resolve_damping(run, damping: float | None) -> float:
    """``damping``, or :func:`default_damping` for the run's model when None; checked non-negative."""
    if damping is not None:
        check_damping(damping, " or None (the model's default)")
    damping = default_damping(run.model_name) if damping is None else float(damping)
    return damping


class InverseCurvature:
    """Applies (H + n (weight_decay + damping) I)^-1 to rows of vectors, H the curvature of the summed
    training loss at ``engine``'s parameters (see :func:`influence` for the options).

    ``solve(b)``: (r, p) -> (r, p). The exact solver factorises once (Cholesky) on construction, or
    takes that ``factor`` (the lower Cholesky factor of the damped curvature, ``.factor``) made earlier;
    CG runs per call. ``iterations`` counts CG iterations of the last call (0 for exact).
    """

    def __init__(self, run, engine: GradientEngine, tensors, *, damping: float | None = None, solver: str = "auto",
                 curvature: str = "gauss-newton", exact_max_params: int = EXACT_MAX_PARAMS, cg_tol: float = 1e-6,
                 cg_max_iter: int = 200, batch_size: int = 256, progress: bool = False,
                 factor: torch.Tensor | None = None):
        if solver not in ("auto", "exact", "cg"):
            raise ValueError(f"solver must be 'auto', 'exact' or 'cg', got {solver!r}")
        if curvature not in ("gauss-newton", "hessian"):
            raise ValueError(f"curvature must be 'gauss-newton' or 'hessian', got {curvature!r}")
        self.damping = resolve_damping(run, damping)
        self.engine, self.tensors, self.curvature = engine, tensors, curvature
        self.solver = ("exact" if engine.dim <= exact_max_params else "cg") if solver == "auto" else solver
        self.ridge = len(tensors[0]) * (run.hparams.weight_decay + self.damping)
        self.cg_tol, self.cg_max_iter, self.batch_size = cg_tol, cg_max_iter, batch_size
        self.iterations = 0
        self._chol = factor
        if self.solver == "exact" and factor is None:
            h = curvature_matrix(engine, tensors, curvature, batch_size=max(batch_size, 512), progress=progress)
            h.diagonal().add_(self.ridge)
            chol, info = torch.linalg.cholesky_ex(h)
            if info.item() != 0:
                raise ValueError(f"the damped Hessian is not positive definite (damping={self.damping}); "
                                 "increase damping, e.g. damping=0.1")
            self._chol = chol

    @property
    def factor(self) -> torch.Tensor | None:
        """The Cholesky factor of the damped curvature (exact solver), else None."""
        return self._chol

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return curvature_vector_products(self.engine, self.tensors, v, self.batch_size, self.curvature) + self.ridge * v

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        if self._chol is not None:
            return torch.cholesky_solve(b.T, self._chol).T
        with torch.enable_grad():  # callers may be inside the gradient engine's no_grad blocks
            x, self.iterations = conjugate_gradients(self._matvec, b, self.cg_tol, self.cg_max_iter)
        return x.detach()

    def describe(self) -> dict:
        return {"damping": self.damping, "solver": self.solver, "curvature": self.curvature,
                "num_params": self.engine.dim, "cg_iterations": self.iterations}


class Influence:
    """Influence functions for one run and one set of options (see :func:`influence`):
    ``featurize_train`` (the curvature), ``featurize_targets`` and ``attribute``."""

    def __init__(self, run, *, damping: float | None = None, solver: str = "auto", curvature: str = "gauss-newton",
                 projection: str = "dense", proj_dim: int | None = None, proj_kind: str = "gaussian",
                 proj_seed: int = 0, params: str | Sequence[str] = "all", centre: bool = True,
                 exact_max_params: int = EXACT_MAX_PARAMS, cg_tol: float = 1e-6, cg_max_iter: int = 200,
                 solve_for: str = "auto", batch_size: int = 256, device="auto", progress: bool = True):
        self.run, self.params, self.centre, self.batch_size, self.progress = run, params, centre, batch_size, progress
        self.device = resolve_device(device)
        self.damping = resolve_damping(run, damping)
        if solve_for not in SOLVE_SIDES:
            raise ValueError(f"solve_for must be one of {', '.join(map(repr, SOLVE_SIDES))}, got {solve_for!r}")
        self.solve_for = solve_for
        resolved = resolve_projection(run.model, params, proj_dim, projection, dense=False)
        self.factored = resolved == "factored"
        if resolved == "none":  # "auto" with proj_dim >= the parameter count: the exact path, unprojected
            proj_dim = None
        if self.factored:
            if curvature not in ("gauss-newton", "empirical-fisher"):
                raise ValueError(f"the factored projection supports curvature 'gauss-newton' or 'empirical-fisher', "
                                 f"got {curvature!r}")
            self.projector = make_projector(run.model, params, proj_dim, proj_kind, proj_seed, "factored")
            self.engine = make_engine(run.model, params, "loss", self.projector, batch_size, self.device)
            self.solver = "exact"
        else:
            if proj_dim is not None:
                raise ValueError("influence projects only with projection='factored' (the dense path is exact); "
                                 "drop proj_dim or set projection='factored'")
            if solver not in ("auto", "exact", "cg"):
                raise ValueError(f"solver must be 'auto', 'exact' or 'cg', got {solver!r}")
            if curvature not in ("gauss-newton", "hessian"):
                raise ValueError(f"curvature must be 'gauss-newton' or 'hessian', got {curvature!r}")
            self.projector = None
            self.engine = GradientEngine(run.model, params, "loss", None, batch_size, self.device)
            self.solver = ("exact" if self.engine.dim <= exact_max_params else "cg") if solver == "auto" else solver
        self.curvature, self.cg_tol, self.cg_max_iter = curvature, cg_tol, cg_max_iter
        self.proj_dim, self.proj_kind, self.proj_seed = proj_dim, proj_kind, proj_seed
        self.iterations = 0  # CG iterations of the last group-side solve

    # ----------------------------------------------------------------------------------- identity
    def feature_options(self) -> dict:
        """The options the features' values depend on."""
        opts = {"damping": self.damping, "solver": self.solver, "curvature": self.curvature,
                "weight_decay": self.run.hparams.weight_decay, "params": parameter_names(self.params),
                **projection_options(self.projector)}
        if self.solver == "cg":
            opts.update(cg_tol=self.cg_tol, cg_max_iter=self.cg_max_iter)
        if self.factored:
            opts.update(proj_dim=self.proj_dim, proj_kind=self.proj_kind, proj_seed=self.proj_seed)
        return opts

    def key(self, tr, te=None) -> dict:
        """What the features depend on: the model, the training data (the curvature: both sides), the
        targets (target side) and the options."""
        out = {"model": fingerprint(self.run.model.state_dict()), "train": fingerprint(list(tr)),
               "options": self.feature_options()}
        if te is not None:
            out["targets"] = fingerprint(list(te))
        return out

    def _inverse(self, tr, train_f: Features) -> InverseCurvature:
        """The solver, with the curvature side's Cholesky factor when it has one."""
        return InverseCurvature(self.run, self.engine, tr, damping=self.damping, solver=self.solver,
                                curvature=self.curvature, cg_tol=self.cg_tol, cg_max_iter=self.cg_max_iter,
                                batch_size=self.batch_size, progress=self.progress,
                                factor=train_f.tensor("factor", self.device) if train_f.has("factor") else None)

    # ------------------------------------------------------------------------------------ featurize
    def featurize_train(self, train) -> Features:
        """The curvature side: ``factor`` (the Cholesky factor of the damped curvature; exact solver and
        factored projection; CG has no factorisation to keep and solves on demand) and ``mean`` (g_bar,
        the mean training gradient or feature); factored: also ``features`` (n, D), every point's feature."""
        tr = checked_tensors(train, "train", self.run.model)
        n = len(tr[0])
        timer = Timer(self.device)
        arrays = {}
        if self.factored:
            with timer("train_gradients_s"):
                res = self.engine.pass_over(tr, moment=self.curvature, progress=self.progress,
                                            desc="IF train features")
                arrays["features"] = res["features"].cpu().numpy()
                arrays["mean"] = (res["features"].double().sum(0) / n).cpu().numpy()
            with timer("solve_s"):
                moment = res["moment"]
                moment.diagonal().add_(n * (self.run.hparams.weight_decay + self.damping))
                chol, info = torch.linalg.cholesky_ex(moment)
                if info.item() != 0:
                    raise ValueError(f"the damped {self.curvature} matrix is not positive definite "
                                     f"(damping={self.damping}); increase damping")
                arrays["factor"] = chol.cpu().numpy()
        else:
            with timer("train_gradients_s"):  # one pass, the whole training set as a single group
                arrays["mean"] = (self.engine.compute(tr, np.zeros(n, dtype=np.int64)) / n)[0].cpu().numpy()
            if self.solver == "exact":
                with timer("solve_s"):
                    inverse = InverseCurvature(self.run, self.engine, tr, damping=self.damping, solver="exact",
                                               curvature=self.curvature, batch_size=self.batch_size,
                                               progress=self.progress)
                    arrays["factor"] = inverse.factor.cpu().numpy()
        return Features("if", "train", self.key(tr), arrays, timer.seconds)

    def featurize_targets(self, targets, train, train_features=None, solve: bool = True) -> Features:
        """The target side: ``gradients`` grad L(z) (m, p) (factored: phi_z (m, D)); with ``solve``, also
        ``solutions`` H^-1 grad L(z) (m, p) and ``solution_dot_mean`` (m,), their products with g_bar.
        The solve needs the curvature: ``train_features`` (from :meth:`featurize_train`) or made now."""
        tr, te = checked_tensors(train, "train", self.run.model), checked_tensors(targets, "targets", self.run.model)
        train_f = self._checked(train_features, "train", self.key(tr)) or self.featurize_train(tr)
        timer = Timer(self.device)
        arrays = {}
        with timer("target_gradients_s"):
            gz = self.engine.compute(te, progress=self.progress, desc="IF target gradients")
            arrays["gradients"] = (gz.double() if self.factored else gz).cpu().numpy()
        if solve or self.factored:  # factored: one small Cholesky solve, always done
            with timer("solve_s"):
                arrays.update(self._solve_targets(tr, train_f, arrays["gradients"]))
        return Features("if", "targets", self.key(tr, te), arrays, timer.seconds)

    def _solve_targets(self, tr, train_f: Features, gradients: np.ndarray) -> dict[str, np.ndarray]:
        gz = torch.from_numpy(gradients).to(self.device)
        iterations = 0
        if self.factored:
            s = torch.cholesky_solve(gz.T, train_f.tensor("factor", self.device)).T
        else:
            inverse = self._inverse(tr, train_f)
            s, iterations = inverse.solve(gz), inverse.iterations
        return {"solutions": s.cpu().numpy(), "cg_iterations": np.array(iterations),
                "solution_dot_mean": (s @ train_f.tensor("mean", self.device).to(s.dtype)).cpu().numpy()}

    @staticmethod
    def _checked(features, side: str, key: dict) -> Features | None:
        found = pick(loaded(features), side)
        if found is not None:
            found.require("if", side, key, f"the {'curvature' if side == 'train' else 'target'} features")
        return found

    # ---------------------------------------------------------------------------------------- score
    def attribute(self, train, targets, groups=None, features=None) -> Attribution:
        """Scores (m, k); ``features`` (Features or paths, either side) are reused after their check."""
        dev = self.device
        timer = Timer(dev)
        tr, te = checked_tensors(train, "train", self.run.model), checked_tensors(targets, "targets", self.run.model)
        n, m = len(tr[0]), len(te[0])
        groups = resolve_groups(groups, n)
        features = loaded(features)
        given = self._checked(features, "train", self.key(tr))
        train_f = given or self.featurize_train(tr)
        timer.add(train_f.timing, cached=given is not None)
        target_f = self._checked(features, "targets", self.key(tr, te))
        side = self.solve_for
        if side == "auto":
            solved = target_f is not None and target_f.has("solutions")
            side = "targets" if solved or self.factored or groups.k + int(self.centre) >= m else "groups"
        if target_f is None:
            target_f = self.featurize_targets(te, tr, train_f, solve=side == "targets")
            timer.add(target_f.timing, cached=False)
        else:
            timer.add(target_f.timing, cached=True)
            if side == "targets" and not target_f.has("solutions"):
                with timer("solve_s"):
                    target_f = Features("if", "targets", target_f.key, {
                        **target_f.arrays, **self._solve_targets(tr, train_f, target_f.arrays["gradients"])})
        sizes = torch.as_tensor(groups.sizes, dtype=torch.float64, device=dev)
        if self.factored:
            with timer("scoring_s"):
                phi = group_sum(train_f.tensor("features", dev), groups.labels, groups.k).double()
                s = target_f.tensor("solutions", dev)
                scores = s @ phi.T
                if self.centre:
                    scores -= torch.outer(target_f.tensor("solution_dot_mean", dev), sizes)
        elif side == "targets":
            scores = self._score_targets(tr, groups, target_f, sizes, timer)
        else:
            scores = self._score_groups(tr, groups, train_f, target_f, sizes, timer)
        check_finite_scores(scores, "if")
        iterations = int(target_f.arrays["cg_iterations"]) if side == "targets" else self.iterations
        opts = {**self.feature_options(), "solve_for": side, "centre": self.centre, "cg_iterations": iterations,
                "num_params": self.engine.dim}
        return Attribution("if", scores.cpu().double().numpy(), groups, timer.finish(groups.seconds), opts)

    def _score_targets(self, tr, groups, target_f: Features, sizes, timer: Timer) -> torch.Tensor:
        """score(z, G) = (H^-1 grad L(z)) . g_G, from the targets' solutions and one pass of group gradients."""
        dev = self.device
        s = target_f.tensor("solutions", dev)  # (m, p)
        scores = torch.zeros(len(s), groups.k, dtype=s.dtype, device=dev)
        blocks = self.engine.iter_groups(tr, groups.labels, progress=self.progress, desc="IF train gradients")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            with timer("scoring_s"):
                scores[:, torch.from_numpy(ids).to(dev)] = s @ block.T
        with timer("scoring_s"):
            if self.centre:
                scores -= torch.outer(target_f.tensor("solution_dot_mean", dev), sizes.to(s.dtype))
        return scores

    def _score_groups(self, tr, groups, train_f: Features, target_f: Features, sizes, timer: Timer) -> torch.Tensor:
        """score(z, G) = grad L(z) . (H^-1 g_G): k (+ 1 for g_bar) solves instead of m."""
        dev, k = self.device, groups.k
        rhs = torch.zeros(k + 1, self.engine.dim, dtype=self.engine.dtype, device=dev)  # g_G rows, then g_bar
        blocks = self.engine.iter_groups(tr, groups.labels, progress=self.progress, desc="IF train gradients")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            rhs[torch.from_numpy(ids).to(dev)] = block
        with timer("solve_s"):
            rhs[-1] = train_f.tensor("mean", dev)
            inverse = self._inverse(tr, train_f)
            x = inverse.solve(rhs if self.centre else rhs[:-1])  # (k [+ 1], p)
            self.iterations = inverse.iterations
        with timer("scoring_s"):
            gz = target_f.tensor("gradients", dev)
            scores = gz @ x[:k].T
            if self.centre:
                scores -= torch.outer(gz @ x[-1], sizes.to(gz.dtype))
        return scores


def influence(run, train, targets, groups=None, *, damping: float | None = None, solver: str = "auto",
              curvature: str = "gauss-newton", projection: str = "dense", proj_dim: int | None = None,
              proj_kind: str = "gaussian", proj_seed: int = 0,
              params: str | Sequence[str] = "all", centre: bool = True, exact_max_params: int = EXACT_MAX_PARAMS,
              cg_tol: float = 1e-6, cg_max_iter: int = 200, solve_for: str = "auto", features=None,
              batch_size: int = 256, device="auto", progress: bool = True) -> Attribution:
    """Influence-function scores (m targets x k groups) at the final model of ``run``.

    damping: added to the weight decay in the mean-form objective's Hessian (so n * damping in the
        sum-form one); None takes :func:`default_damping`.
    solver: "auto" (exact up to ``exact_max_params`` selected parameters, else CG), "exact" or "cg".
    curvature: "gauss-newton" (default: positive semi-definite, so damping keeps the system solvable on
        non-convex models; equal to the Hessian for lr) or "hessian" (exact second derivatives).
    centre: subtract |G| times the mean training gradient (retraining averages over the kept points).
    projection: "dense" (default: the exact curvature of the unprojected gradients, as above) or
        "factored" (features and curvature in a proj_dim-dimensional Kronecker-factored space, see the
        module docstring; curvature "gauss-newton" or "empirical-fisher"; solver does not apply).
        "auto" is the exact path (``options["projection"]`` "none") when proj_dim is None or at least
        the number of selected parameters (a projection could only lose information), else "factored"
        when every selected parameter is in a supported layer (IF has no dense projection).
    solve_for: which side the curvature is inverted on; the scores are the same (H is symmetric), the
        cost is one solve per row: "targets" solves H^-1 grad L(z) for the m targets, "groups" solves
        H^-1 g_G for the k groups (and H^-1 g_bar when centring), "auto" the side with fewer rows, or
        "targets" when given target features already hold the solutions. With CG the solve is most of
        IF's cost, so grouping then pays off: k = n / 64 groups against 500 targets is about 3x fewer
        solves, n / 256 about 12x. The group side holds the k group gradients (k x p) in memory.
    features: the curvature (training side) and target features made earlier by ``ggda.featurize("if",
        ...)`` with the same options (Features objects or paths); checked against this call's model,
        data and options, then reused: with the targets' solutions cached, a grouping costs one pass of
        group gradients and a product.
    """
    core = Influence(run, damping=damping, solver=solver, curvature=curvature, projection=projection,
                     proj_dim=proj_dim, proj_kind=proj_kind, proj_seed=proj_seed, params=params, centre=centre,
                     exact_max_params=exact_max_params, cg_tol=cg_tol, cg_max_iter=cg_max_iter, solve_for=solve_for,
                     batch_size=batch_size, device=device, progress=progress)
    return core.attribute(train, targets, groups, features)


def influence_self(run, tr, groups: Groups, *, timer: Timer, device: torch.device, damping: float | None = None,
             solver: str = "auto", curvature: str = "gauss-newton", projection: str = "dense",
             proj_dim: int | None = None, proj_kind: str = "gaussian", proj_seed: int = 0,
             params: str | Sequence[str] = "all", centre: bool = True, exact_max_params: int = EXACT_MAX_PARAMS,
             cg_tol: float = 1e-6, cg_max_iter: int = 200, solve_for: str = "auto", batch_size: int = 256,
             progress: bool = True):
    """Group self-influence of IF, S(G) = (H^-1 g_G)^T (g_G - |G| g_bar) (``centre=False``: g_G^T H^-1 g_G),
    over the same core (options, checks, curvature, projection) as :func:`influence`; float64 (k,) and the
    options used. ``solve_for`` is accepted and has no effect (S(G) solves for the groups)."""
    # the attribution's own core: the same options, checks, curvature and (factored) projection
    core = Influence(run, damping=damping, solver=solver, curvature=curvature, projection=projection,
                     proj_dim=proj_dim, proj_kind=proj_kind, proj_seed=proj_seed, params=params, centre=centre,
                     exact_max_params=exact_max_params, cg_tol=cg_tol, cg_max_iter=cg_max_iter, solve_for=solve_for,
                     batch_size=batch_size, device=device, progress=progress)
    train_f = core.featurize_train(tr)  # the mean gradient g_bar, and the curvature's factor when it has one
    timer.add(train_f.timing, cached=False)
    g_bar = train_f.tensor("mean", device)
    iterations = 0
    if core.factored:  # phi_G = the sum of its members' features; H_f^-1 by the curvature's Cholesky factor
        with timer("scoring_s"):
            phi = group_sum(train_f.tensor("features", device), groups.labels, groups.k).double()
            x = torch.cholesky_solve(phi.T, train_f.tensor("factor", device)).T  # rows H_f^-1 phi_G
            scores = (x * phi).sum(1)
            if centre:
                scores -= torch.as_tensor(groups.sizes, dtype=x.dtype, device=device) * (x @ g_bar.to(x.dtype))
    else:
        inverse = core._inverse(tr, train_f)
        u = None
        if centre:  # H^-1 g_bar
            with timer("solve_s"):
                u = inverse.solve(g_bar[None])[0]
        scores = torch.zeros(groups.k, dtype=torch.float64)
        sizes = torch.as_tensor(groups.sizes, dtype=core.engine.dtype, device=device)
        blocks = core.engine.iter_groups(tr, groups.labels, progress=progress, desc="IF self-influence")
        for ids, block in timed(blocks, timer, "train_gradients_s"):
            with timer("scoring_s"):
                val = (inverse.solve(block) * block).sum(1)
                if u is not None:
                    val = val - sizes[torch.from_numpy(ids).to(device)] * (block @ u)
                scores[torch.from_numpy(ids)] = val.double().cpu()
        iterations = inverse.iterations
    opts = {**core.feature_options(), "centre": centre, "cg_iterations": iterations, "num_params": core.engine.dim}
    return scores.double().cpu().numpy(), opts

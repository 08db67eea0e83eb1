"""Attribution correctness: group = sum of members (IF, TracIn), singleton TRAK = individual TRAK,
IF against actual leave-one-out and leave-one-group-out retraining, the interface's invariants."""

import numpy as np
import pytest
import torch

from ggda import grouping, train
from ggda.attribution import Attribution, attribute


@pytest.fixture(scope="module")
def runs(digits):
    return {"lr": train.fit("lr", digits, progress=False),
            "ann-s": train.fit("ann-s", digits, {"epochs": 5}, progress=False)}


def _sum_over_groups(individual: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((individual.shape[0], k))
    np.add.at(out.T, labels, individual.T)
    return out


@pytest.mark.parametrize("model", ["lr", "ann-s"])
@pytest.mark.parametrize("method", ["if", "tracin"])
def test_group_score_is_sum_of_member_scores(digits, runs, model, method):
    run = runs[model]
    targets = torch.utils.data.TensorDataset(*(t[:40] for t in digits.test.tensors))
    groups = grouping.make("random", None, digits, 16, seed=3)
    ind = attribute(method, run, digits.train, targets, progress=False)
    grp = attribute(method, run, digits.train, targets, groups, progress=False)
    assert ind.scores.shape == (40, len(digits.train)) and grp.scores.shape == (40, groups.k)
    expected = _sum_over_groups(ind.scores, groups.labels, groups.k)
    np.testing.assert_allclose(grp.scores, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_group_trak_with_singletons_equals_individual_trak(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:40] for t in digits.test.tensors))
    singles = grouping.Groups.from_labels(np.random.default_rng(0).permutation(len(digits.train)))
    ind = attribute("trak", runs["ann-s"], digits.train, targets, proj_dim=128, progress=False)
    grp = attribute("trak", runs["ann-s"], digits.train, targets, singles, proj_dim=128, progress=False)
    # singles relabels the points: map each group's score back to its point
    np.testing.assert_allclose(grp.point_scores(), ind.scores, rtol=1e-9, atol=1e-12)


def test_trak_kernels(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:30] for t in digits.test.tensors))
    second = train.fit("ann-s", digits, {"epochs": 5}, seed=1, progress=False)
    ens = [runs["ann-s"], second]
    groups = grouping.make("grad-kmeans", runs["ann-s"], digits, 16, seed=0)
    opts = dict(proj_dim=64, progress=False)
    ind = attribute("trak", ens, digits.train, targets, **opts)
    # the individual kernel: each group's score is the sum of its members' individual TRAK scores
    summed = attribute("trak", ens, digits.train, targets, groups, kernel="individual", **opts)
    expected = _sum_over_groups(ind.scores, groups.labels, groups.k)
    np.testing.assert_allclose(summed.scores, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
    assert summed.options["kernel"] == "individual"
    # the group kernels differ from it, and from each other (the size correction matters)
    scaled = attribute("trak", ens, digits.train, targets, groups, **opts)
    unscaled = attribute("trak", ens, digits.train, targets, groups, kernel="groups-unscaled", **opts)
    assert scaled.options["kernel"] == "groups"
    assert not np.allclose(scaled.scores, expected) and not np.allclose(scaled.scores, unscaled.scores)
    # with singleton groups every kernel is individual TRAK
    singles = grouping.Groups.from_labels(np.arange(len(digits.train)))
    for kernel in ("groups", "groups-unscaled", "individual"):
        one = attribute("trak", ens, digits.train, targets, singles, kernel=kernel, **opts)
        np.testing.assert_allclose(one.scores, ind.scores, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="kernel"):
        attribute("trak", ens, digits.train, targets, groups, kernel="dual", **opts)


def test_trak_group_differs_from_sum_and_ensemble_averages(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:20] for t in digits.test.tensors))
    second = train.fit("ann-s", digits, {"epochs": 5}, seed=1, progress=False)
    one = attribute("trak", runs["ann-s"], digits.train, targets, proj_dim=64, progress=False)
    two = attribute("trak", [runs["ann-s"], second], digits.train, targets, proj_dim=64, progress=False)
    assert two.options["models"] == 2 and not np.allclose(one.scores, two.scores)
    # positive scores: a target's own class examples help it on average
    y_tr, y_te = digits.train.tensors[1].numpy(), targets.tensors[1].numpy()
    same = (y_te[:, None] == y_tr[None, :])
    assert two.scores[same].mean() > two.scores[~same].mean()


def _test_losses(run, data):
    x, y = data.test.tensors
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(run.model(x.double()), y, reduction="none").numpy()


def test_influence_predicts_leave_one_out_retraining(cancer):
    """The scaling of docs/methods.md (Influence functions): tight lbfgs optimum, weight decay 1e-2, centred scores."""
    base = train.fit("lr", cancer, progress=False)
    assert base.hparams.weight_decay == 1e-2 and base.hparams.tol <= 1e-6
    losses0 = _test_losses(base, cancer)
    scores = attribute("if", base, cancer.train, cancer.test, progress=False).scores
    n = len(cancer.train)
    hard = int(np.argmax(losses0))
    for predicted, actual in [(scores[hard], lambda l: l[hard] - losses0[hard]),
                              (scores.mean(0), lambda l: (l - losses0).mean())]:
        removed = np.argsort(-np.abs(predicted))[:30]
        change = [actual(_test_losses(train.fit("lr", cancer, keep=np.delete(np.arange(n), i), progress=False),
                                      cancer)) for i in removed]
        assert np.corrcoef(predicted[removed], change)[0, 1] >= 0.9


def test_group_influence_predicts_leave_one_group_out_retraining(cancer):
    base = train.fit("lr", cancer, progress=False)
    losses0 = _test_losses(base, cancer)
    groups = grouping.make("random", None, cancer, 10, seed=0)
    predicted = attribute("if", base, cancer.train, cancer.test, groups, progress=False).scores.mean(0)
    chosen = np.argsort(-np.abs(predicted))[:20]
    change = [(_test_losses(train.fit("lr", cancer, keep=np.flatnonzero(groups.labels != g), progress=False),
                            cancer) - losses0).mean() for g in chosen]
    assert np.corrcoef(predicted[chosen], change)[0, 1] >= 0.9


def test_cg_agrees_with_exact_solver(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:10] for t in digits.test.tensors))
    exact = attribute("if", runs["ann-s"], digits.train, targets, solver="exact", damping=0.1, progress=False)
    cg = attribute("if", runs["ann-s"], digits.train, targets, solver="cg", damping=0.1, cg_tol=1e-7,
                   progress=False)
    assert cg.options["solver"] == "cg" and cg.options["cg_iterations"] > 0
    np.testing.assert_allclose(cg.scores, exact.scores, rtol=1e-3, atol=1e-4 * np.abs(exact.scores).max())


def test_last_layer_option(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:10] for t in digits.test.tensors))
    full = attribute("tracin", runs["ann-s"], digits.train, targets, progress=False)
    last = attribute("tracin", runs["ann-s"], digits.train, targets, params="last", progress=False)
    assert last.scores.shape == full.scores.shape and not np.allclose(last.scores, full.scores)
    a = attribute("if", runs["ann-s"], digits.train, targets, params="last", progress=False)
    assert a.options["num_params"] == 64 * 10 + 10


def test_projected_tracin_tracks_exact_tracin(digits, runs):
    targets = torch.utils.data.TensorDataset(*(t[:20] for t in digits.test.tensors))
    exact = attribute("tracin", runs["ann-s"], digits.train, targets, progress=False).scores
    proj = attribute("tracin", runs["ann-s"], digits.train, targets, proj_dim=1024, progress=False).scores
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(exact, proj)]
    assert np.mean(corr) >= 0.9


def test_interface_invariants_and_roundtrip(digits, runs, tmp_path):
    groups = grouping.make("kmeans", None, digits, 32, seed=0)
    a = attribute("tracin", runs["lr"], digits, digits.test, groups, progress=False)
    assert set(a.timing) >= {"grouping_s", "gradients_s", "scoring_s", "total_s"}
    assert a.timing["total_s"] >= a.timing["gradients_s"] > 0 and a.timing["grouping_s"] == groups.seconds
    ps = a.point_scores()
    assert ps.shape == (len(digits.test), len(digits.train))
    np.testing.assert_allclose(_sum_over_groups(ps, groups.labels, groups.k), a.scores, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.importance(), ps.sum(0), rtol=1e-10, atol=1e-12)
    a.save(tmp_path / "a.npz")
    b = Attribution.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(b.scores, a.scores)
    np.testing.assert_array_equal(b.groups.labels, groups.labels)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "nope"}, "unknown attribution method"),
    ({"method": "if", "solver": "magic"}, "solver must be"),
    ({"method": "if", "damping": -1.0}, "damping must be a finite non-negative number"),
    ({"method": "tracin", "checkpoints": [99]}, "checkpoints must be indices"),
    ({"method": "trak", "params": "middle"}, "params must be"),
])
def test_bad_options(digits, runs, kwargs, match):
    method = kwargs.pop("method")
    with pytest.raises(ValueError, match=match):
        attribute(method, runs["lr"], digits.train, digits.test, progress=False, **kwargs)


def test_groups_must_cover_training_data(digits, runs):
    groups = grouping.Groups.from_labels(np.arange(10))
    with pytest.raises(ValueError, match="groups cover 10 points"):
        attribute("tracin", runs["lr"], digits.train, digits.test, groups, progress=False)


def test_gauss_newton_equals_hessian_for_logistic_regression(digits, runs):
    from ggda.attribution.influence import curvature_matrix
    from ggda.gradients import GradientEngine

    engine = GradientEngine(runs["lr"].model, "all", "loss", device="cpu")
    small = tuple(t[:200] for t in digits.train.tensors)
    gn = curvature_matrix(engine, small, "gauss-newton")
    h = curvature_matrix(engine, small, "hessian")
    assert gn.shape == (650, 650)
    torch.testing.assert_close(gn, h, rtol=1e-8, atol=1e-10)
    # and on a network the Gauss-Newton matrix is positive semi-definite where the Hessian is not
    net = GradientEngine(runs["ann-s"].model, "all", "loss", device="cpu")
    tiny = tuple(t[:64] for t in digits.train.tensors)
    assert torch.linalg.eigvalsh(curvature_matrix(net, tiny, "gauss-newton").double()).min() > -1e-4


def test_influence_works_beyond_convex_models(digits):
    """CG path on a model past the exact threshold (cnn), with the default Gauss-Newton curvature."""
    run = train.fit("cnn", digits, {"epochs": 2}, progress=False)
    targets = torch.utils.data.TensorDataset(*(t[:5] for t in digits.test.tensors))
    groups = grouping.make("grad-kmeans", run, digits, 64, seed=0)
    a = attribute("if", run, digits.train, targets, groups, exact_max_params=1000, progress=False)
    assert a.options["solver"] == "cg" and np.isfinite(a.scores).all() and a.scores.shape == (5, groups.k)


def test_trak_group_kernel_predicts_leave_one_group_out_retraining(cancer):
    """TRAK's group forms against the actual effect of removing each group from a convex model
    (benchmarks/trak_group_forms.py; measured: group kernel 0.15 at damping 1e-6, 0.76 at the default 0.1;
    the sum of individual scores 0.82). The default damping must make the group kernel predictive."""
    import importlib.util
    from pathlib import Path

    from ggda.evaluation import spearman_columns

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "trak_group_forms.py"
    spec = importlib.util.spec_from_file_location("trak_group_forms", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = train.fit("lr", cancer, seed=0, progress=False)
    targets = torch.utils.data.TensorDataset(*(t[:60] for t in cancer.test.tensors))
    groups = grouping.make("grad-kmeans", run, cancer, 16, seed=0)
    actual = bench.leave_one_group_out(run, cancer, groups, targets)

    def agreement(**kw):
        attr = attribute("trak", run, cancer.train, targets, groups, proj_dim=None, progress=False, **kw)
        return float(np.nanmean(spearman_columns(attr.scores.T, actual.T)))

    default, undamped = agreement(), agreement(relative_damping=1e-6)
    assert default > 0.6 and default > undamped + 0.3
    assert agreement(kernel="individual") > 0.6


@pytest.mark.parametrize("solver", ["exact", "cg"])
def test_influence_solves_on_the_side_with_fewer_rows_with_the_same_scores(digits, runs, solver):
    targets = torch.utils.data.TensorDataset(*(t[:120] for t in digits.test.tensors))
    groups = grouping.make("grad-kmeans", runs["ann-s"], digits, 64, seed=0)  # k = 30 < 120 targets
    opts = dict(solver=solver, params="last", cg_tol=1e-10, progress=False)
    auto = attribute("if", runs["ann-s"], digits.train, targets, groups, **opts)
    by_targets = attribute("if", runs["ann-s"], digits.train, targets, groups, solve_for="targets", **opts)
    assert auto.options["solve_for"] == "groups" and by_targets.options["solve_for"] == "targets"
    scale = np.abs(by_targets.scores).max()
    np.testing.assert_allclose(auto.scores, by_targets.scores, rtol=1e-5, atol=1e-6 * scale)  # float32 model
    uncentred = attribute("if", runs["ann-s"], digits.train, targets, groups, centre=False, solve_for="groups", **opts)
    ref = attribute("if", runs["ann-s"], digits.train, targets, groups, centre=False, solve_for="targets", **opts)
    np.testing.assert_allclose(uncentred.scores, ref.scores, rtol=1e-5, atol=1e-6 * scale)
    # individual attribution (k = n > m) keeps the target side
    assert attribute("if", runs["ann-s"], digits.train, targets, **opts).options["solve_for"] == "targets"
    with pytest.raises(ValueError, match="solve_for"):
        attribute("if", runs["ann-s"], digits.train, targets, groups, solve_for="both", **opts)

"""Evaluation: retraining score, pruning, noisy-label detection, LDS. Small data, lr, 1 thread."""

import logging

import numpy as np
import pandas as pd
import pytest
import torch

import ggda.data
from ggda import evaluation, grouping, train
from ggda.attribution import attribute
from ggda.evaluation import (ROW_COLUMNS, SUMMARY_COLUMNS, baseline_scores, lds, noisy_label_detection, pruning,
                             removal_order, retraining_score, self_influence, validation_split)

log = logging.getLogger(__name__)

METHOD_OPTIONS = {"if": {}, "tracin": {}, "trak": {"proj_dim": 16}}  # lr on breast_cancer has 31 parameters


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny full-batch L-BFGS fits are ~50x slower with 2 threads on a loaded 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def bc():
    data = ggda.data.load("breast_cancer")
    return data, train.fit("lr", data, seed=0, progress=False)


@pytest.fixture(scope="module")
def bc_noisy():
    data = ggda.data.load("breast_cancer", noise_rate=0.1)
    return data, train.fit("lr", data, seed=0, progress=False)


@pytest.fixture(scope="module")
def removal(bc):
    """Top-20% removal by individual IF (with baselines) and by group IF with random groups of 64."""
    data, run = bc
    ind = attribute("if", run, data.train, data.test, progress=False)
    groups = grouping.make("random", None, data, 64, seed=0)
    grp = attribute("if", run, data.train, data.test, groups, progress=False)
    res_ind = retraining_score(run, data, ind.importance(), fractions=(0.2,), seeds=(0, 1, 2), progress=False)
    res_grp = retraining_score(run, data, grp, fractions=(0.2,), seeds=(0, 1, 2), baselines=False, progress=False)
    return res_ind, res_grp


def _mean(result, kind, column):
    rows = result.rows
    return rows.loc[rows["kind"] == kind, column].mean()


# ------------------------------------------------------------------------------------------ retraining
def test_top_if_removal_hurts_more_than_random_and_group(removal):
    res_ind, res_grp = removal
    loss_ind = _mean(res_ind, "attribution", "loss")
    loss_rand = _mean(res_ind, "random", "loss")
    loss_grp = _mean(res_grp, "attribution", "loss")
    loss_none = _mean(res_ind, "none", "loss")
    log.info("T loss after removing 20%%: IF %.4f, random %.4f, group IF (random 64) %.4f, none %.4f",
             loss_ind, loss_rand, loss_grp, loss_none)
    assert loss_ind > loss_rand + 0.05
    assert loss_ind > loss_grp + 0.05
    assert loss_ind > loss_none
    acc_ind = _mean(res_ind, "attribution", "accuracy")
    assert acc_ind <= _mean(res_ind, "random", "accuracy")
    assert acc_ind <= _mean(res_grp, "attribution", "accuracy")


def test_retraining_table_is_tidy_with_baselines(removal, bc):
    data, _ = bc
    res_ind, res_grp = removal
    rows = res_ind.to_frame()
    assert rows is res_ind.rows
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert list(res_grp.rows.columns) == list(ROW_COLUMNS)
    # one row per (kind, fraction, seed): none once per seed, attribution and random per fraction and seed
    assert len(rows) == 9 and not rows.duplicated(["kind", "fraction", "seed"]).any()
    assert sorted(rows["kind"].unique()) == ["attribution", "none", "random"]
    assert set(res_grp.rows["kind"]) == {"attribution"}
    assert (rows.loc[rows["kind"] == "none", ["fraction", "n_removed"]] == 0).all().all()
    assert (rows.loc[rows["kind"] != "none", "n_removed"] == round(0.2 * len(data.train))).all()
    assert rows["accuracy"].between(0, 1).all() and (rows["loss"] > 0).all() and (rows["retrain_s"] > 0).all()
    summary = res_ind.summary()
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    assert list(summary["kind"]) == ["none", "attribution", "random"]
    assert (summary["seeds"] == 3).all() and summary["accuracy_se"].notna().all()
    att = rows[rows["kind"] == "attribution"]
    assert summary.loc[1, "loss_mean"] == pytest.approx(att["loss"].mean())
    assert summary.loc[1, "loss_se"] == pytest.approx(att["loss"].std(ddof=1) / np.sqrt(3))
    assert res_ind.meta["retrain_models"] == 9


def test_removal_order_breaks_ties_by_seed():
    scores = np.array([1.0, 3.0, 3.0, 3.0, 0.5, 2.0, 2.0, 2.0, 2.0])
    a = removal_order(scores, tie_seed=0)
    assert np.array_equal(a, removal_order(scores, tie_seed=0))
    assert set(a[:3]) == {1, 2, 3} and set(a[3:7]) == {5, 6, 7, 8} and list(a[7:]) == [0, 4]
    orders = {tuple(removal_order(scores, tie_seed=s)) for s in range(20)}
    assert len(orders) > 1  # different seeds, different order within ties
    assert all(set(o[:3]) == {1, 2, 3} for o in orders)


def test_bad_inputs_fail_clearly(bc):
    data, run = bc
    with pytest.raises(ValueError, match="shape"):
        retraining_score(run, data, np.zeros(3), progress=False)
    with pytest.raises(ValueError, match="fractions"):
        retraining_score(run, data, np.zeros(len(data.train)), fractions=(1.5,), progress=False)
    with pytest.raises(ValueError, match="no flipped labels"):
        noisy_label_detection(run, data, "if", progress=False)


# ------------------------------------------------------------------------------------------ noisy labels
def _group_auroc(run, data, size=16):
    groups = grouping.make("grad-kmeans", run, data, size, seed=0)
    res = noisy_label_detection(run, data, "if", groups, remove_fraction=None, progress=False)
    log.info("%s: group IF self-influence AUROC %.4f (grad-kmeans %d: %r)", data.name, res.auroc, size, groups)
    return res, groups


def test_noisy_labels_breast_cancer(bc_noisy):
    data, run = bc_noisy
    res = noisy_label_detection(run, data, "if", remove_fraction=0.1, seeds=(0, 1), progress=False)
    log.info("breast_cancer: IF self-influence AUROC %.4f, curve %s", res.auroc, res.curve.to_dict("list"))
    assert res.auroc >= 0.9
    curve = res.curve
    assert list(curve.columns) == ["fraction_inspected", "n_inspected", "fraction_found"]
    assert list(curve["fraction_inspected"]) == [0.05, 0.1, 0.2, 0.3]
    assert curve["fraction_found"].is_monotonic_increasing and curve["fraction_found"].between(0, 1).all()
    assert curve["fraction_found"].iloc[-1] >= 0.9  # 30% inspected holds (nearly) all of the 10% flipped
    assert res.suspicion.shape == (len(data.train),) and res.attribution_s > 0
    rows = res.rows
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert set(rows["kind"]) == {"none", "attribution", "random", "oracle"} and len(rows) == 8
    assert (rows.loc[rows["kind"] == "oracle", "n_removed"] == len(data.flipped)).all()
    # cleaning by self-influence recovers clean-data behaviour on the (clean) test split; random does not
    assert _mean(res, "attribution", "loss") < _mean(res, "none", "loss") - 0.05
    assert _mean(res, "attribution", "loss") < _mean(res, "random", "loss") - 0.05

    grp, groups = _group_auroc(run, data)
    assert 0.5 < grp.auroc <= 1.0
    assert grp.meta["k"] == groups.k and grp.rows.empty and list(grp.rows.columns) == list(ROW_COLUMNS)


def test_noisy_labels_digits():
    data = ggda.data.load("digits", noise_rate=0.1)
    run = train.fit("lr", data, seed=0, progress=False)
    res = noisy_label_detection(run, data, "if", remove_fraction=None, progress=False)
    log.info("digits: IF self-influence AUROC %.4f", res.auroc)
    assert res.auroc >= 0.95
    grp, _ = _group_auroc(run, data)
    assert 0.5 < grp.auroc <= 1.0


def test_noisy_labels_with_validation_signal(bc_noisy):
    data, _ = bc_noisy
    with pytest.raises(ValueError, match="validation split"):
        noisy_label_detection(bc_noisy[1], data, "if", signal="validation", remove_fraction=None, progress=False)
    bundle, val = validation_split(data, 80, seed=0)
    run = train.fit("lr", bundle, seed=0, progress=False)
    res = noisy_label_detection(run, bundle, "if", validation=val, remove_fraction=None, progress=False)
    log.info("breast_cancer: IF validation-signal AUROC %.4f", res.auroc)
    assert res.meta["signal"] == "validation"
    assert res.auroc > 0.75


@pytest.mark.parametrize("method", ["if", "tracin", "trak"])
def test_self_influence_is_the_group_summed_diagonal_of_attribution(bc_noisy, method):
    data, run = bc_noisy
    opts = METHOD_OPTIONS[method]
    for groups in (None, grouping.make("grad-kmeans", run, data, 16, seed=0)):
        full = attribute(method, run, data.train, data.train, groups, progress=False, **opts)
        g = full.groups
        summed = np.zeros((g.k, g.k))
        np.add.at(summed, g.labels, full.scores)  # rows: targets summed by their group
        si = self_influence(method, run, data.train, groups, progress=False, **opts)
        np.testing.assert_allclose(si.scores, np.diag(summed), rtol=1e-6, atol=1e-9 * np.abs(si.scores).max())
        assert si.point_scores().shape == (len(data.train),) and si.timing["total_s"] > 0


# ------------------------------------------------------------------------------------------ splits
def test_validation_split_is_disjoint_stratified_and_clean(bc_noisy):
    data, _ = bc_noisy
    bundle, val = validation_split(data, 91, seed=0)
    n = len(data.train)
    vidx = np.array(bundle.meta["validation_indices"])
    assert len(val) == 91 and len(bundle.train) == n - 91 and len(np.unique(vidx)) == 91
    keep = np.setdiff1d(np.arange(n), vidx)
    assert torch.equal(bundle.train.tensors[0], data.train.tensors[0][keep])
    assert torch.equal(val.tensors[0], data.train.tensors[0][vidx])
    assert np.array_equal(val.tensors[1].numpy(), data.clean_labels[vidx])  # clean, trusted labels
    assert bundle.test is data.test  # the reporting split is untouched
    # flipped points re-indexed into the new training part
    assert np.array_equal(keep[bundle.flipped], np.intersect1d(data.flipped, keep))
    assert np.array_equal(bundle.clean_labels, data.clean_labels[keep])
    share = np.bincount(val.tensors[1].numpy()) / 91
    assert np.allclose(share, np.bincount(data.clean_labels) / n, atol=0.02)
    assert validation_split(data, 0.2)[1].tensors[0].shape[0] == round(0.2 * n)


# ------------------------------------------------------------------------------------------ pruning, LDS
@pytest.fixture(scope="module")
def split_run(bc):
    data, _ = bc
    bundle, val = validation_split(data, 80, seed=0)
    run = train.fit("lr", bundle, seed=0, progress=False)
    return bundle, val, run, grouping.make("grad-kmeans", run, bundle, 16, seed=0)


@pytest.mark.parametrize("method", ["if", "tracin", "trak"])
@pytest.mark.parametrize("grouped", [False, True], ids=["individual", "group"])
def test_pruning_and_lds_for_every_method(split_run, method, grouped):
    bundle, val, run, gk = split_run
    groups = gk if grouped else None
    opts = METHOD_OPTIONS[method]
    imp = attribute(method, run, bundle.train, val, groups, progress=False, **opts).importance()
    res = pruning(run, bundle, imp, fractions=(0.1, 0.3), seeds=(0,), progress=False)
    rows = res.rows
    assert list(rows.columns) == list(ROW_COLUMNS) and len(rows) == 5
    assert list(rows["kind"]) == ["none", "attribution", "random", "attribution", "random"]
    assert list(rows["n_removed"]) == [0] + [round(f * len(bundle.train)) for f in (0.1, 0.1, 0.3, 0.3)]
    assert rows["accuracy"].between(0, 1).all()
    assert res.meta["removed_end"] == "lowest"
    # pruning removes the lowest-importance points first
    order = removal_order(-imp, 0)
    m = round(0.1 * len(bundle.train))
    assert imp[order[:m]].max() <= imp[order[m:]].min()

    out = lds(run, bundle, method, groups, subsets=6, attribution_options=opts, progress=False)
    k = len(bundle.train) if groups is None else groups.k
    assert out.meta["k"] == k and out.predicted.shape == out.actual.shape == (6, len(bundle.test))
    assert len(out.rows) == 6 and set(out.rows["kind"]) == {"lds"}
    assert list(out.rows.columns)[:len(ROW_COLUMNS)] == list(ROW_COLUMNS)
    assert -1 <= out.score <= 1 and out.meta["valid_targets"] > 0
    assert list(out.summary().columns)[:3] == ["lds", "lds_se", "targets"]
    log.info("LDS %s %s: %.3f", method, "group" if grouped else "individual", out.score)
    if method == "if" and not grouped:
        assert out.score > 0.5  # exact IF on a convex model predicts subset retraining well


def test_lds_spearman_matches_scipy():
    from scipy.stats import spearmanr

    from ggda.evaluation import spearman_columns
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    b[:, 0] = a[:, 0] ** 3  # monotone: rho = 1
    a[:, 4] = 1.0  # constant: nan
    rho = spearman_columns(a, b)
    for j in range(4):
        assert rho[j] == pytest.approx(spearmanr(a[:, j], b[:, j]).statistic)
    assert rho[0] == pytest.approx(1.0) and np.isnan(rho[4])


def test_lds_many_shares_the_subsets_and_equals_lds_of_each(split_run):
    bundle, val, run, gk = split_run
    attrs = {m: attribute(m, run, bundle.train, bundle.test, gk, progress=False, **METHOD_OPTIONS[m])
             for m in ("if", "tracin")}
    many = evaluation.lds_many(run, bundle, attrs, subsets=4, seed=3, progress=False)
    assert set(many) == {"if", "tracin"}
    np.testing.assert_array_equal(many["if"].actual, many["tracin"].actual)  # one set of retrained models
    for m, attr in attrs.items():
        alone = lds(run, bundle, attribution=attr, subsets=4, seed=3, progress=False)
        assert many[m].score == alone.score
        np.testing.assert_array_equal(many[m].predicted, alone.predicted)
    with pytest.raises(ValueError, match="other groups"):
        other = attribute("if", run, bundle.train, bundle.test, None, progress=False, **METHOD_OPTIONS["if"])
        evaluation.lds_many(run, bundle, {"a": attrs["if"], "b": other}, subsets=4, progress=False)


def test_baseline_scores_are_the_baseline_rows_of_the_retraining_score(bc):
    data, run = bc
    fractions, seeds = (0.1, 0.2), (0, 1)
    base = baseline_scores(run, data, fractions=fractions, seeds=seeds, progress=False)
    full = retraining_score(run, data, np.zeros(len(data.train)), fractions=fractions, seeds=seeds, progress=False)
    cols = ["kind", "fraction", "seed", "n_removed", "accuracy", "loss"]
    expected = full.rows[full.rows["kind"] != "attribution"][cols].reset_index(drop=True)
    assert set(base.rows["kind"]) == {"none", "random"} and len(base.rows) == len(seeds) * (1 + len(fractions))
    pd.testing.assert_frame_equal(base.rows[cols].reset_index(drop=True), expected)


def test_noisy_label_detection_keeps_remove_as_a_deprecated_alias(bc_noisy):
    data, run = bc_noisy
    with pytest.warns(DeprecationWarning, match="remove_fraction"):
        res = noisy_label_detection(run, data, "tracin", remove=None, progress=False)
    assert res.rows.empty and res.meta["remove_fraction"] is None


def test_evaluation_uses_only_what_ggda_attribution_exports():
    import ast
    from pathlib import Path

    import ggda.attribution

    folder = Path(evaluation.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attribution"):
                assert node.module == "attribution", f"{path.name} imports ggda.{node.module}"
                assert {a.name for a in node.names} <= set(ggda.attribution.__all__), path.name


def test_pruning_names_an_unknown_option(split_run):
    bundle, _, run, _ = split_run
    with pytest.raises(TypeError, match="pruning.*'seed'.*seeds"):
        pruning(run, bundle, np.zeros(len(bundle.train)), fractions=(0.1,), seed=0)

"""Grouping: partitions, sizes, seeds, label purity, closed-form last-layer gradients, files, point
scores and fidelity, bad input."""

import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from ggda import grouping, train
from ggda.grouping import Groups


@pytest.fixture(scope="module")
def ann(digits):
    return train.fit("ann-s", digits, {"epochs": 3}, seed=0, progress=False)


@pytest.fixture(scope="module")
def lr_run(cancer):
    return train.fit("lr", cancer, {"epochs": 3}, seed=0, progress=False)


def _y(data):
    return data.train.tensors[-1].numpy()


def _assert_partition(g: Groups, n: int):
    assert g.labels.dtype == np.int64 and g.labels.shape == (n,)
    assert g.sizes.sum() == n and g.sizes.min() >= 1 and len(g.sizes) == g.k
    np.testing.assert_array_equal(np.sort(np.concatenate(g.members)), np.arange(n))
    for j, m in enumerate(g.members):
        assert np.all(np.diff(m) > 0) and np.all(g.labels[m] == j)


# ------------------------------------------------------------------------------------------ methods


def test_individual_is_singletons(digits):
    g = grouping.make("individual", None, digits, group_size=16)
    n = len(digits.train)
    np.testing.assert_array_equal(g.labels, np.arange(n))
    assert g.k == n and g.group_size == 1 and np.all(g.sizes == 1)


@pytest.mark.parametrize("s", [1, 7, 16, 1000, 5000])
def test_random_k_and_equal_sizes(digits, s):
    n = len(digits.train)
    if s > n:  # more than the data: one group, and a warning naming both sizes
        with pytest.warns(UserWarning, match=f"group_size={s} exceeds the {n} training points"):
            g = grouping.make("random", None, digits, group_size=s, seed=3)
    else:
        g = grouping.make("random", None, digits, group_size=s, seed=3)
    _assert_partition(g, n)
    assert g.k == g.k_requested == min(math.ceil(n / s), n)
    assert g.sizes.max() - g.sizes.min() <= 1
    assert g.sizes.max() <= s or s > n


@pytest.mark.parametrize("method", ["kmeans", "repr-kmeans", "grad-kmeans"])
def test_kmeans_methods_partition_with_requested_k(digits, ann, method):
    n = len(digits.train)
    g = grouping.make(method, ann, digits, group_size=16, seed=0, within_class=False)
    _assert_partition(g, n)
    assert g.k_requested == math.ceil(n / 16)
    assert 0.9 * g.k_requested <= g.k <= g.k_requested
    assert g.method == method and g.group_size == 16
    summary = g.size_summary()
    assert summary["k"] == g.k and summary["min"] <= summary["median"] <= summary["max"]
    assert summary["mean"] == pytest.approx(n / g.k)
    assert g.seconds >= g.feature_seconds + g.cluster_seconds - 1e-6 and g.cluster_seconds > 0
    if method != "kmeans":
        assert g.feature_seconds > 0


@pytest.mark.parametrize("method", ["random", "kmeans", "grad-kmeans"])
def test_seeded(digits, ann, method):
    a = grouping.make(method, ann, digits, group_size=32, seed=1)
    b = grouping.make(method, ann, digits, group_size=32, seed=1)
    c = grouping.make(method, ann, digits, group_size=32, seed=2)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_within_class_defaults_to_true_for_grad_kmeans_only(digits, ann):
    y = _y(digits)
    for method, pure in [("grad-kmeans", True), ("repr-kmeans", False), ("kmeans", False), ("random", False)]:
        g = grouping.make(method, ann, digits, group_size=64, seed=0)
        assert g.within_class is pure
        assert all(len(np.unique(y[m])) == 1 for m in g.members) or not pure
    mixed = grouping.make("grad-kmeans", ann, digits, group_size=64, seed=0, within_class=False)
    pure = grouping.make("grad-kmeans", ann, digits, group_size=64, seed=0)
    assert not mixed.within_class and mixed.k_requested == math.ceil(len(y) / 64)  # one clustering of all
    assert pure.k_requested == sum(math.ceil(c / 64) for c in np.bincount(y))     # one per class
    with pytest.raises(ValueError, match="within_class"):
        grouping.make("random", None, digits, 16, within_class="yes")


@pytest.mark.parametrize("method", ["random", "kmeans", "repr-kmeans", "grad-kmeans"])
def test_within_class_groups_are_label_pure(digits, ann, method):
    y = _y(digits)
    g = grouping.make(method, ann, digits, group_size=16, seed=0, within_class=True)
    _assert_partition(g, len(y))
    assert g.within_class
    for m in g.members:
        assert len(np.unique(y[m])) == 1
    assert g.k_requested == sum(math.ceil(np.sum(y == c) / 16) for c in np.unique(y))
    if method == "random":
        for c in np.unique(y):  # equal sizes within each class
            sizes = g.sizes[np.unique(g.labels[y == c])]
            assert sizes.max() - sizes.min() <= 1


def test_model_left_where_it_was(digits, ann):
    before = {k: v.clone() for k, v in ann.model.state_dict().items()}
    ann.model.train()
    grouping.make("repr-kmeans", ann, digits, group_size=64, device="cpu")
    assert ann.model.training
    ann.model.eval()
    for k, v in ann.model.state_dict().items():
        assert torch.equal(v, before[k]) and v.device.type == "cpu"


# ------------------------------------------------------------------------------------------ gradients


def _autograd_head_grads(model, data, idx):
    model = model.eval()
    rows = []
    for i in idx:
        *inputs, y = (t[i:i + 1] for t in data.train.tensors)
        inputs = [x.to(next(model.parameters()).dtype) for x in inputs]
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(*inputs), y).backward()
        rows.append(torch.cat([model.head.weight.grad.flatten(), model.head.bias.grad.flatten()]))
    model.zero_grad(set_to_none=True)
    return torch.stack(rows).detach().numpy()


@pytest.mark.parametrize("which", ["ann-digits", "lr-cancer"])
def test_last_layer_gradients_match_autograd(which, digits, cancer, ann, lr_run):
    run, data = (ann, digits) if which == "ann-digits" else (lr_run, cancer)
    head = run.model.head
    g = grouping.last_layer_gradients(run, data, proj_dim=None, batch_size=100)
    assert g.shape == (len(data.train), head.out_features * (head.in_features + 1))
    idx = np.r_[0:5, 150:155, len(data.train) - 3:len(data.train)]
    ref = _autograd_head_grads(run.model, data, idx)
    tol = 1e-12 if g.dtype == np.float64 else 1e-6
    np.testing.assert_allclose(g[idx], ref, rtol=1e-5, atol=tol)
    assert np.abs(ref).max() > 1e-4  # not a vacuous comparison of zeros


def test_projection_is_seeded_with_requested_dim(digits, ann):
    raw = grouping.last_layer_gradients(ann, digits, proj_dim=None)
    a = grouping.last_layer_gradients(ann, digits, proj_dim=32, seed=4)
    b = grouping.last_layer_gradients(ann, digits, proj_dim=32, seed=4)
    c = grouping.last_layer_gradients(ann, digits, proj_dim=32, seed=5)
    assert raw.shape == (len(digits.train), 650) and a.shape == (len(digits.train), 32)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    p = grouping.projection_matrix(650, 32, seed=4).numpy()
    np.testing.assert_allclose(a, raw @ p, rtol=1e-4, atol=1e-6)


def test_short_gradients_are_not_projected(cancer, lr_run):
    # lr on breast_cancer: one logit, 30 features -> gradients of length 31 <= 256 stay as they are
    g = grouping.last_layer_gradients(lr_run, cancer, proj_dim=256)
    np.testing.assert_array_equal(g, grouping.last_layer_gradients(lr_run, cancer, proj_dim=None))
    assert g.shape == (len(cancer.train), 31)


@pytest.mark.parametrize("which", ["ann-digits", "lr-cancer"])
def test_logit_and_penultimate_gradients_are_the_head_gradients_parts(which, digits, cancer, ann, lr_run):
    # dL/dW = e h^T and dL/db = e: the logit gradient e is the bias part, and dL/dh = W^T e
    run, data = (ann, digits) if which == "ann-digits" else (lr_run, cancer)
    head = run.model.head
    c, h = head.out_features, head.in_features
    full = grouping.last_layer_gradients(run, data, proj_dim=None)
    logits = grouping.last_layer_gradients(run, data, proj_dim=None, gradient="logits")
    pen = grouping.last_layer_gradients(run, data, proj_dim=None, gradient="penultimate")
    assert logits.shape == (len(data.train), c) and pen.shape == (len(data.train), h)
    np.testing.assert_array_equal(logits, full[:, c * h:])
    w = head.weight.detach().numpy()
    tol = 1e-12 if pen.dtype == np.float64 else 1e-5
    np.testing.assert_allclose(pen, logits @ w, rtol=1e-5, atol=tol)
    assert np.abs(pen).max() > 1e-3


def test_auto_gradient_is_logits_with_many_classes_and_head_with_two(digits, cancer, ann, lr_run):
    assert grouping.resolve_gradient("auto", ann.model.head) == "logits"      # 10 classes
    assert grouping.resolve_gradient("auto", lr_run.model.head) == "head"     # one logit
    assert grouping.resolve_gradient("penultimate", ann.model.head) == "penultimate"
    np.testing.assert_array_equal(grouping.last_layer_gradients(ann, digits, gradient="auto"),
                                  grouping.last_layer_gradients(ann, digits, gradient="logits"))
    assert grouping.make("grad-kmeans", ann, digits, 16).gradient == "logits"  # recorded as resolved
    assert grouping.make("grad-kmeans", lr_run, cancer, 16).gradient == "head"


def test_kmeans_projects_long_inputs_to_proj_dim(digits):
    full = grouping.input_features(digits)                      # 64 pixels
    assert full.shape == (len(digits.train), 64)
    short = grouping.input_features(digits, proj_dim=16, seed=2)
    p = grouping.projection_matrix(64, 16, seed=2, dtype=torch.float64).numpy()
    np.testing.assert_allclose(short, full.astype(np.float64) @ p, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(grouping.input_features(digits, proj_dim=64), full)  # not longer: kept
    g = grouping.make("kmeans", None, digits, 16, proj_dim=16, seed=2)
    assert g.proj_dim == 16


def test_normalized_gradients_have_unit_length_and_the_same_direction(digits, ann):
    raw = grouping.last_layer_gradients(ann, digits, proj_dim=32, seed=1)
    unit = grouping.last_layer_gradients(ann, digits, proj_dim=32, seed=1, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit * np.linalg.norm(raw, axis=1, keepdims=True), raw, rtol=1e-4, atol=1e-6)


def test_grad_kmeans_options_are_recorded_and_change_the_groups(tmp_path, digits, ann):
    base = grouping.make("grad-kmeans", ann, digits, 16, seed=0, gradient="head")
    assert (base.gradient, base.normalize, base.oversize) == ("head", False, None)
    for kw in ({"gradient": "logits"}, {"gradient": "penultimate"}, {"gradient": "head", "normalize": True}):
        g = grouping.make("grad-kmeans", ann, digits, 16, seed=0, **kw)
        _assert_partition(g, len(digits.train))
        assert g.gradient == kw["gradient"] and g.normalize == kw.get("normalize", False)
        assert not np.array_equal(g.labels, base.labels), kw
        back = Groups.load(g.save(tmp_path / "g.npz"))
        assert (back.gradient, back.normalize) == (g.gradient, g.normalize)
    # the options of grad-kmeans are not recorded for methods that ignore them
    r = grouping.make("random", None, digits, 16, gradient="logits", normalize=True)
    assert r.gradient is None and r.normalize is False


def test_cap_with_reassignment_keeps_k_and_moves_only_the_overflow(digits, ann):
    n = len(digits.train)
    plain = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0)
    assert plain.sizes.max() > 24
    capped = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0, max_group_size=24,
                           oversize="reassign")
    _assert_partition(capped, n)
    assert capped.k == plain.k and capped.sizes.max() <= 24 and capped.oversize == "reassign"
    # points of clusters within the cap stay together, and every oversized cluster keeps 24 of its points
    moved = capped.labels != plain.labels  # same ids: reassignment does not relabel
    small = plain.sizes[plain.labels] <= 24
    assert not moved[small].any()
    for g in np.flatnonzero(plain.sizes > 24):
        assert (capped.labels[plain.labels == g] == g).sum() == 24


def test_cap_clusters_keeps_the_most_central_members():
    # one cluster of 5 points on a line around 0 and one of 1 point far away; a cap of 3
    x = np.array([[0.0], [0.1], [-0.1], [0.5], [-0.6], [10.0]])
    labels = np.array([0, 0, 0, 0, 0, 1])
    out = grouping.cap_clusters(x, labels, 3)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(grouping.cap_clusters(x, labels, 5), labels)  # within the cap: unchanged
    with pytest.raises(ValueError, match="cannot hold"):
        grouping.cap_clusters(x, labels, 2)


def test_bad_grad_kmeans_options_name_the_argument(digits, ann):
    with pytest.raises(ValueError, match="gradient"):
        grouping.make("grad-kmeans", ann, digits, 16, gradient="weights")
    with pytest.raises(ValueError, match="oversize"):
        grouping.make("grad-kmeans", ann, digits, 16, oversize="merge")
    with pytest.raises(ValueError, match="normalize"):
        grouping.make("grad-kmeans", ann, digits, 16, normalize="yes")
    with pytest.raises(ValueError, match="reassign.*random"):
        grouping.make("random", None, digits, 16, max_group_size=32, oversize="reassign")
    with pytest.raises(ValueError, match="max_group_size=8 < group_size=16"):
        grouping.make("grad-kmeans", ann, digits, 16, max_group_size=8, oversize="reassign")


# ------------------------------------------------------------------------------------------ max_group_size


def test_max_group_size_splits_large_groups(digits, ann):
    n = len(digits.train)
    plain = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0)
    assert plain.sizes.max() > 24  # something to split
    capped = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0, max_group_size=24)
    _assert_partition(capped, n)
    assert capped.sizes.max() <= 24 and capped.max_group_size == 24
    assert capped.k > plain.k
    # a refinement of the uncapped partition: every capped group lies inside one original group
    for m in capped.members:
        assert len(np.unique(plain.labels[m])) == 1
    # groups already small enough are kept whole
    small = {tuple(m) for m in plain.members if len(m) <= 24}
    assert small <= {tuple(m) for m in capped.members}


def test_split_large_pieces_are_balanced():
    labels = np.r_[np.zeros(10, int), np.ones(3, int)]
    out = Groups.from_labels(grouping.split_large(labels, 4, seed=0))
    assert sorted(out.sizes.tolist()) == [3, 3, 3, 4]
    assert np.all(out.labels[10:] == out.labels[10])


# ------------------------------------------------------------------------------------------ Groups


def test_from_labels_relabels_and_validates():
    g = Groups.from_labels(np.array([5, 5, 9, 2]), seed=1)
    np.testing.assert_array_equal(g.labels, [1, 1, 2, 0])
    assert g.k == 3 and g.method == "custom" and g.k_requested == 3
    np.testing.assert_array_equal(g.sizes, [1, 2, 1])
    with pytest.raises(ValueError, match="integer"):
        Groups.from_labels(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="1-d"):
        Groups.from_labels(np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="from_labels"):
        Groups(np.array([0, 2, 2]))


def test_save_load_roundtrip(tmp_path, digits):
    g = grouping.make("random", None, digits, group_size=10, seed=7, within_class=True, max_group_size=9)
    for name in ("groups.npz", "groups-noext"):
        path = g.save(tmp_path / "sub" / name)
        assert path.is_file() and path.name == name
        h = Groups.load(path)
        np.testing.assert_array_equal(h.labels, g.labels)
        assert h.labels.dtype == np.int64
        for f in ("method", "group_size", "seed", "within_class", "k_requested", "max_group_size",
                  "oversize", "gradient", "normalize", "proj_dim", "seconds", "feature_seconds", "cluster_seconds"):
            assert getattr(h, f) == getattr(g, f), f
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [  # each with its timing sidecar
        "groups-noext", "groups-noext.timing.json", "groups.npz", "groups.timing.json"]


def test_point_scores_divide_by_group_size():
    g = Groups.from_labels(np.array([0, 1, 1, 2, 2, 2]))
    s = np.array([[3.0, 4.0, 9.0], [1.0, -2.0, 0.0]])
    expected = np.array([[3.0, 2.0, 2.0, 3.0, 3.0, 3.0], [1.0, -1.0, -1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(g.point_scores(s), expected)
    np.testing.assert_allclose(g.point_scores(s[0]), expected[0])
    t = g.point_scores(torch.tensor(s, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), expected)
    np.testing.assert_allclose(g.point_scores(s).sum(1), s.sum(1))  # the shares add up to the group score
    with pytest.raises(ValueError, match="group_scores"):
        g.point_scores(np.zeros((2, 4)))


def test_fidelity():
    rng = np.random.default_rng(0)
    n, m = 200, 6
    ind = rng.normal(size=(m, n))
    single = Groups.from_labels(np.arange(n))
    np.testing.assert_allclose(grouping.fidelity(single, ind, ind), 1.0)

    g = Groups.from_labels(rng.integers(0, 20, n))
    group_scores = np.stack([np.bincount(g.labels, weights=row, minlength=g.k) for row in ind])
    r = grouping.fidelity(g, group_scores, ind)
    assert r.shape == (m,) and np.all(np.isfinite(r)) and np.all(np.abs(r) < 1)
    r_t = grouping.fidelity(g, torch.tensor(group_scores), torch.tensor(ind))
    np.testing.assert_allclose(r_t, r)

    rs = grouping.fidelity(g, group_scores, ind, sample=50, seed=1)
    np.testing.assert_array_equal(rs, grouping.fidelity(g, group_scores, ind, sample=50, seed=1))
    assert not np.allclose(rs, r)

    ind[2] = 0.0
    group_scores[2] = 0.0
    r = grouping.fidelity(g, group_scores, ind)
    assert np.isnan(r[2]) and np.isfinite(np.delete(r, 2)).all()
    with pytest.raises(ValueError, match="individual_scores"):
        grouping.fidelity(g, group_scores, ind[:, :-1])


# ------------------------------------------------------------------------------------------ bad input


def test_bad_input(digits, ann):
    with pytest.raises(ValueError, match=r"'nope'.*individual, random, kmeans, repr-kmeans, grad-kmeans"):
        grouping.make("nope", ann, digits, 16)
    for bad in (0, -3, 2.5, True, "16"):
        with pytest.raises(ValueError, match="group_size"):
            grouping.make("random", None, digits, bad)
    with pytest.raises(ValueError, match="proj_dim"):
        grouping.make("grad-kmeans", ann, digits, 16, proj_dim=0)
    with pytest.raises(ValueError, match="max_group_size"):
        grouping.make("random", None, digits, 16, max_group_size=0)
    for method in ("repr-kmeans", "grad-kmeans"):
        with pytest.raises(ValueError, match="run"):
            grouping.make(method, None, digits, 16)
    text = types.SimpleNamespace(name="toy-text", meta={"kind": "text"}, train=TensorDataset(
        torch.randint(0, 50, (20, 8)), torch.ones(20, 8, dtype=torch.int64), torch.randint(0, 2, (20,))))
    with pytest.raises(ValueError, match="repr-kmeans"):
        grouping.make("kmeans", None, text, 4)
    # random grouping works on text (no features needed)
    assert grouping.make("random", None, text, 4).k == 5


# ------------------------------------------------------------------------------------------ K-Means edge cases


def test_duplicate_points_leave_no_empty_group():
    x = torch.tensor(np.repeat(np.arange(5.0), 4)[:, None], dtype=torch.float32)  # 5 distinct points, 4 copies each
    data = types.SimpleNamespace(name="dup", meta={"kind": "tabular"},
                                 train=TensorDataset(x, torch.zeros(20, dtype=torch.int64)))
    g = grouping.make("kmeans", None, data, group_size=2)
    assert g.k_requested == 10 and g.k == 5
    _assert_partition(g, 20)
    for m in g.members:  # each group is one set of copies
        assert len(np.unique(x[m].numpy())) == 1 and len(m) == 4


def test_minibatch_kmeans_above_threshold(digits, ann, monkeypatch):
    monkeypatch.setattr(grouping, "MINIBATCH_THRESHOLD", 500)  # per clustering problem: all classes at once
    a = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0, within_class=False)
    b = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0, within_class=False)
    _assert_partition(a, len(digits.train))
    np.testing.assert_array_equal(a.labels, b.labels)
    monkeypatch.setattr(grouping, "MINIBATCH_THRESHOLD", 10**9)
    exact = grouping.make("grad-kmeans", ann, digits, group_size=16, seed=0, within_class=False)
    assert not np.array_equal(a.labels, exact.labels)


def test_feature_dim_is_a_deprecated_alias_of_proj_dim(lr_run, cancer):
    run, data = lr_run, cancer
    new = grouping.make("grad-kmeans", run, data, 16, proj_dim=8)
    with pytest.warns(DeprecationWarning, match="use proj_dim"):
        old = grouping.make("grad-kmeans", run, data, 16, feature_dim=8)
    assert np.array_equal(new.labels, old.labels) and old.proj_dim == 8
    with pytest.raises(ValueError, match="give proj_dim only"), pytest.warns(DeprecationWarning):
        grouping.make("grad-kmeans", run, data, 16, proj_dim=8, feature_dim=4)

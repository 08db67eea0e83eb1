"""Bad input gets a ggda error naming the argument before any work (never a torch traceback, never NaN
scores), and a silent clamp becomes a warning naming the requested and the used value."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import ggda
from ggda import attribute, grouping, train

METHODS = ["if", "tracin", "trak"]


@pytest.fixture(scope="module")
def run(digits):
    return train.fit("lr", digits, {"tol": 1e-4}, progress=False)


@pytest.fixture(scope="module")
def targets(digits):
    return TensorDataset(*(t[:10] for t in digits.test.tensors))


def _with(tensors, index, value, column=0):
    x = tensors[0].clone()
    x[index, column] = value
    return TensorDataset(x, *tensors[1:])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_training_inputs_are_refused(digits, run, targets, method, bad):
    data = _with(digits.train.tensors, 7, bad)
    with pytest.raises(ValueError, match=r"train input 0 holds NaN or inf in 1 row\(s\) \(first: row 7\)"):
        attribute(method, run, data, targets, proj_dim=16, progress=False) if method == "trak" else \
            attribute(method, run, data, targets, progress=False)


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_targets_are_refused(digits, run, targets, method):
    with pytest.raises(ValueError, match="targets input 0 holds NaN or inf"):
        attribute(method, run, digits.train, _with(targets.tensors, 2, float("nan")), progress=False)


@pytest.mark.parametrize("damping", [float("nan"), float("inf"), -1.0, "0.1"])
@pytest.mark.parametrize("method,name", [("if", "damping"), ("trak", "relative_damping")])
def test_damping_must_be_finite_and_non_negative(digits, run, targets, method, name, damping):
    with pytest.raises(ValueError, match=f"^{name} must be a finite non-negative number"):
        attribute(method, run, digits.train, targets, **{name: damping}, progress=False)


def test_trak_takes_damping_as_the_old_name_of_relative_damping(digits, run, targets):
    new = attribute("trak", run, digits.train, targets, relative_damping=0.5, progress=False)
    with pytest.warns(FutureWarning, match="relative_damping"):
        old = attribute("trak", run, digits.train, targets, damping=0.5, progress=False)
    assert old.options["relative_damping"] == 0.5
    np.testing.assert_array_equal(old.scores, new.scores)
    assert not np.array_equal(new.scores, attribute("trak", run, digits.train, targets, progress=False).scores)


@pytest.mark.parametrize("method", METHODS)
def test_targets_of_the_wrong_width_name_the_inputs(digits, run, targets, method):
    narrow = TensorDataset(targets.tensors[0][..., :5], targets.tensors[1])  # 8 x 5 images, not 8 x 8
    with pytest.raises(ValueError, match=r"the model cannot take the targets inputs \(per-row shape \(1, 8, 5\)\)"):
        attribute(method, run, digits.train, narrow, progress=False)


@pytest.mark.parametrize("method", METHODS)
def test_labels_outside_the_models_classes_are_refused(digits, run, targets, method):
    y = targets.tensors[1].clone()
    y[3] = 10
    with pytest.raises(ValueError, match=r"targets labels must be class indices in \[0, 10\).*found labels from \d+ to 10"):
        attribute(method, run, digits.train, TensorDataset(targets.tensors[0], y), progress=False)
    with pytest.raises(ValueError, match="labels .* must be a 1-D integer tensor"):
        attribute(method, run, digits.train, TensorDataset(targets.tensors[0], y.float()), progress=False)


@pytest.mark.parametrize("method", METHODS)
def test_an_empty_target_set_is_refused(digits, run, method):
    empty = TensorDataset(*(t[:0] for t in digits.test.tensors))
    with pytest.raises(ValueError, match="targets is empty"):
        attribute(method, run, digits.train, empty, progress=False)


@pytest.mark.parametrize("proj_dim", [2.5, 0, -3, True, "64"])
@pytest.mark.parametrize("method", ["tracin", "trak"])
def test_proj_dim_must_be_a_positive_integer(digits, run, targets, method, proj_dim):
    with pytest.raises(ValueError, match="proj_dim must be a positive integer or None"):
        attribute(method, run, digits.train, targets, proj_dim=proj_dim, progress=False)


def test_dense_proj_dim_above_the_parameter_count_is_refused(digits, run, targets):
    with pytest.raises(ValueError, match=r"proj_dim=100000 exceeds the 650 selected parameters"):
        attribute("trak", run, digits.train, targets, proj_dim=100_000, projection="dense", progress=False)
    # factored: every layer kept exactly, which is allowed
    a = attribute("trak", run, digits.train, targets, proj_dim=100_000, projection="factored", progress=False)
    assert np.isfinite(a.scores).all()


def test_non_finite_model_parameters_give_an_error_not_nan_scores(digits, run, targets):
    broken = train.fit("lr", digits, {"tol": 1e-4}, progress=False)
    with torch.no_grad():
        next(broken.model.parameters())[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite score"):
        attribute("trak", broken, digits.train, targets, proj_dim=16, progress=False)


def test_group_size_above_n_warns_with_both_values(digits):
    n = len(digits.train)
    with pytest.warns(UserWarning, match=f"group_size=100000 exceeds the {n} training points: using group_size={n}"):
        groups = grouping.make("random", None, digits, 100_000, seed=0)
    assert groups.k == 1 and groups.group_size == n


def test_n_train_above_the_data_warns_with_both_values():
    with pytest.warns(UserWarning, match=r"n_train=5000 exceeds the \d+ points of the split: using all"):
        bundle = ggda.data.load("breast_cancer", n_train=5000)
    assert len(bundle.train) < 5000


def test_target_subset_is_seeded_sorted_and_warns_when_asked_for_more_than_the_split():
    from torch.utils.data import TensorDataset

    from ggda.data import target_subset

    ds = TensorDataset(torch.arange(50.0)[:, None], torch.zeros(50, dtype=torch.int64))
    sub, idx = target_subset(ds, 10, seed=3)
    again, idx2 = target_subset(ds, 10, seed=3)
    assert list(idx) == sorted(idx) and list(idx) == list(idx2) and len(set(idx)) == 10
    assert torch.equal(sub.tensors[0][:, 0], torch.as_tensor(idx, dtype=torch.float32))
    with pytest.warns(UserWarning, match="m=80 exceeds the 50 points of the split: using all 50"):
        whole, none = target_subset(ds, 80, seed=3)
    assert whole is ds and none is None

"""Seeded training: determinism, `keep`, accuracy floors, checkpoints, saving, bad input."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from ggda import train
from ggda.hparams import HParams, default_hparams


def _params(run):
    return torch.cat([p.detach().flatten().double() for p in run.model.parameters()])


def _small(**kw):
    return dict(epochs=3, **kw)


def test_same_seed_gives_bitwise_identical_parameters(digits):
    a = train.fit("ann-s", digits, _small(), seed=5, progress=False)
    b = train.fit("ann-s", digits, _small(), seed=5, progress=False)
    c = train.fit("ann-s", digits, _small(), seed=6, progress=False)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(_params(a), _params(c))


def test_fit_leaves_global_rng_untouched(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train.fit("lr", digits, _small(optimizer="adam", dtype="float32"), progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_keep_trains_on_exactly_those_indices(digits):
    keep = np.sort(np.random.default_rng(0).choice(len(digits.train), 500, replace=False))
    run = train.fit("ann-s", digits, _small(), seed=1, keep=keep, progress=False)
    sub = dataclasses.replace(digits, train=torch.utils.data.TensorDataset(
        *(t[torch.from_numpy(keep)] for t in digits.train.tensors)))
    ref = train.fit("ann-s", sub, _small(), seed=1, progress=False)
    assert torch.equal(_params(run), _params(ref))
    assert run.metrics["n_train"] == 500
    np.testing.assert_array_equal(run.keep, keep)


def test_keep_differs_from_full_data(digits):
    full = train.fit("ann-s", digits, _small(), seed=1, progress=False)
    part = train.fit("ann-s", digits, _small(), seed=1, keep=np.arange(1, len(digits.train)), progress=False)
    assert not torch.equal(_params(full), _params(part))


@pytest.mark.parametrize("keep, match", [
    (np.array([0, 1, 99999]), "outside"),
    (np.array([0, 0, 1]), "repeated"),
    (np.array([], dtype=np.int64), "non-empty"),
    (np.array([0.5, 1.0]), "integer"),
])
def test_bad_keep(digits, keep, match):
    with pytest.raises(ValueError, match=match):
        train.fit("lr", digits, keep=keep, progress=False)


def test_breast_cancer_lr_reaches_floor_at_tight_optimum(cancer):
    run = train.fit("lr", cancer, progress=False)
    assert run.test_acc >= 0.95
    hp = default_hparams("breast_cancer", "lr")
    assert hp.optimizer == "lbfgs" and hp.weight_decay == 1e-2
    # tight optimum: the full gradient of J at the returned parameters is below the tolerance
    x, y = cancer.train.tensors
    model = run.model
    model.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x.double()), y) + train.l2_penalty(model, hp.weight_decay)
    loss.backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) <= hp.tol


def test_digits_ann_s_reaches_floor(digits):
    run = train.fit("ann-s", digits, progress=False)
    assert run.test_acc >= 0.95


def test_checkpoints_and_learning_rates(digits):
    hp = default_hparams("digits", "ann-s", epochs=6, schedule="linear", lr=0.01)
    run = train.fit("ann-s", digits, hp, checkpoints=3, progress=False)
    assert [ck.epoch for ck in run.checkpoints] == [2.0, 4.0, 6.0]
    steps = int(np.ceil(len(digits.train) / hp.batch_size))
    assert [ck.step for ck in run.checkpoints] == [2 * steps, 4 * steps, 6 * steps]
    total = 6 * steps
    for ck in run.checkpoints:  # the linear schedule's rate at the checkpoint's last step
        assert ck.lr == pytest.approx(0.01 * (1 - (ck.step - 1) / total))
    # the last checkpoint is the final model
    final = run.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in run.checkpoints[-1].state_dict.items())
    lrs = [ck.lr for ck in run.checkpoints]
    assert lrs == sorted(lrs, reverse=True) and len(set(lrs)) == 3


def test_lbfgs_checkpoints_spread_over_iterations(cancer):
    run = train.fit("lr", cancer, checkpoints=4, progress=False)
    steps = [ck.step for ck in run.checkpoints]
    assert len(steps) == 4 and steps == sorted(steps) and len(set(steps)) == 4


def test_save_and_load_roundtrip(digits, tmp_path):
    run = train.fit("cnn", digits, _small(), seed=2, checkpoints=2, progress=False)
    run.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "metrics.json",
                                                                  "metrics.timing.json", "model.pt"]
    assert "wall_s" not in json.loads((tmp_path / "run" / "metrics.json").read_text())["metrics"]
    back = train.TrainRun.load(tmp_path / "run")
    assert back.wall_s == run.wall_s and back.metrics == run.metrics  # the timing comes back from its sidecar
    x = digits.test.tensors[0][:16]
    assert torch.equal(back.model(x), run.model.eval()(x))
    assert [c.lr for c in back.checkpoints] == [c.lr for c in run.checkpoints]
    assert torch.equal(back.model_at(0)(x), run.model_at(0)(x))

    assert back.hparams == run.hparams and back.metrics == run.metrics
    assert not list((tmp_path / "run").rglob("*.tmp"))


def test_a_truncated_checkpoint_is_reported_with_its_path(cancer, tmp_path):
    train.fit("lr", cancer, checkpoints=2, progress=False).save(tmp_path / "run")
    ckpt = tmp_path / "run" / "checkpoints" / "ckpt-1.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"ckpt-1\.pt is not a readable checkpoint file .*truncated"):
        train.TrainRun.load(tmp_path / "run")


def test_load_of_incomplete_run_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not hold a completed training run"):
        train.TrainRun.load(tmp_path)


@pytest.mark.parametrize("overrides, match", [
    ({"optimizer": "rmsprop"}, "hparams.optimizer"),
    ({"lr": -1}, "hparams.lr"),
    ({"epochs": 0}, "hparams.epochs"),
    ({"bogus": 1}, "unknown hyper-parameter"),
])
def test_bad_hparams(digits, overrides, match):
    with pytest.raises(ValueError, match=match):
        train.fit("ann-s", digits, overrides, progress=False)


def test_bad_checkpoint_count(digits):
    with pytest.raises(ValueError, match="checkpoints must be a positive integer"):
        train.fit("ann-s", digits, checkpoints=0, progress=False)


def test_hparams_is_hashable_and_documented():
    assert isinstance(hash(HParams()), int)
    assert default_hparams("mnist", "cnn").epochs == 8
    assert default_hparams("mnist", "cnn", epochs=1).epochs == 1  # an override wins over the data set default

"""Featurize once, score many: cached features give the same bits as one call, and are refused when
they were made from other inputs."""

import numpy as np
import pytest
import torch

from ggda import attribute, featurize, grouping, train
from ggda._io import timing_path
from ggda.attribution import Features, FeaturesMismatch, has_train_features


@pytest.fixture(scope="module")
def setup(digits):
    run = train.fit("ann-s", digits, {"epochs": 3}, progress=False)
    ensemble = [run, train.fit("ann-s", digits, {"epochs": 3}, seed=1, progress=False)]
    targets = torch.utils.data.TensorDataset(*(t[:40] for t in digits.test.tensors))
    groups = grouping.make("random", None, digits, 16, seed=0)
    return {"run": run, "ensemble": ensemble, "targets": targets, "groups": groups}


# (method, options): every feature layout (IF exact / CG / factored, TracIn exact layer-wise / dense /
# factored, TRAK dense / factored)
CASES = [
    ("if", {}),
    ("if", {"solver": "cg", "cg_max_iter": 20, "damping": 0.1}),
    ("if", {"projection": "factored", "proj_dim": 256}),
    ("tracin", {}),
    ("tracin", {"proj_dim": 64, "projection": "dense"}),
    ("tracin", {"proj_dim": 64, "projection": "factored"}),
    ("trak", {"proj_dim": 64, "projection": "dense"}),
    ("trak", {"proj_dim": 64, "projection": "factored"}),
]


def _run(setup, method):
    return setup["ensemble"] if method == "trak" else setup["run"]


def _make(setup, digits, method, options, tmp_path, targets=None):
    """Both sides' features, saved and loaded back: the paths to hand to attribute."""
    run, targets = _run(setup, method), targets or setup["targets"]
    paths = []
    train_f = featurize(method, run, digits.train, progress=False, **options)
    train_f.save(tmp_path / "train.npz")
    paths.append(tmp_path / "train.npz")
    target_f = featurize(method, run, digits.train, targets, features=train_f, progress=False, **options)
    target_f.save(tmp_path / "targets.npz")
    return [*paths, tmp_path / "targets.npz"]


@pytest.mark.parametrize("method,options", CASES, ids=[f"{m}-{'-'.join(map(str, o.values())) or 'default'}"
                                                       for m, o in CASES])
def test_cached_features_give_bitwise_identical_scores(digits, setup, tmp_path, method, options):
    run, targets = _run(setup, method), setup["targets"]
    paths = _make(setup, digits, method, options, tmp_path)
    for groups in (None, setup["groups"]):  # individual and group
        direct = attribute(method, run, digits.train, targets, groups, progress=False, **options)
        cached = attribute(method, run, digits.train, targets, groups, features=paths, progress=False, **options)
        assert np.isfinite(direct.scores).all()
        assert np.array_equal(direct.scores, cached.scores), f"{method} {options} groups={groups}"
        assert cached.timing["cached_s"] > 0 and direct.timing["cached_s"] == 0
        # the reused features' recorded cost is part of the total, so speedups compare whole attributions
        assert cached.timing["total_s"] >= cached.timing["cached_s"]


def test_training_features_are_reused_by_new_targets(digits, setup, tmp_path):
    run = setup["run"]
    train_f = featurize("tracin", run, digits.train, proj_dim=64, progress=False)
    other = torch.utils.data.TensorDataset(*(t[40:70] for t in digits.test.tensors))
    target_f = featurize("tracin", run, digits.train, other, proj_dim=64, progress=False)
    cached = attribute("tracin", run, digits.train, other, setup["groups"], features=[train_f, target_f],
                       proj_dim=64, progress=False)
    direct = attribute("tracin", run, digits.train, other, setup["groups"], proj_dim=64, progress=False)
    assert np.array_equal(cached.scores, direct.scores)


def test_if_solves_cached_targets_once_for_every_grouping(digits, setup):
    run, targets = setup["run"], setup["targets"]
    assert not featurize("if", run, digits.train, solver="cg", progress=False).has("factor")  # CG: none to keep
    curvature = featurize("if", run, digits.train, progress=False)
    assert curvature.has("factor") and curvature.key["options"]["solver"] == "exact"
    solved = featurize("if", run, digits.train, targets, features=curvature, progress=False)
    groups = grouping.make("random", None, digits, 64, seed=0)  # 23 groups: fewer rows than the 40 targets
    a = attribute("if", run, digits.train, targets, groups, features=[curvature, solved], progress=False)
    assert a.options["solve_for"] == "targets"  # the cached solutions are used, not k new solves
    unsolved = featurize("if", run, digits.train, targets, features=curvature, solve=False, progress=False)
    b = attribute("if", run, digits.train, targets, groups, features=[curvature, unsolved], progress=False)
    assert b.options["solve_for"] == "groups"
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5 * np.abs(a.scores).max())


@pytest.mark.parametrize("method,made,used,named", [
    ("tracin", {"proj_dim": 64, "proj_seed": 0}, {"proj_dim": 64, "proj_seed": 1}, "proj_seed"),
    ("tracin", {"proj_dim": 64}, {"proj_dim": 128}, "proj_dim"),
    ("trak", {"proj_dim": 64}, {"proj_dim": 64, "proj_kind": "rademacher"}, "proj_kind"),
    ("if", {"damping": 0.1}, {"damping": 0.2}, "damping"),
])
def test_features_made_with_other_options_are_refused(digits, setup, method, made, used, named):
    run, targets = _run(setup, method), setup["targets"]
    f = featurize(method, run, digits.train, targets, progress=False, **made)
    with pytest.raises(FeaturesMismatch, match=named):
        attribute(method, run, digits.train, targets, features=[f], progress=False, **used)


def test_features_of_other_targets_model_or_method_are_refused(digits, setup):
    run, targets = setup["run"], setup["targets"]
    f = featurize("tracin", run, digits.train, targets, proj_dim=64, progress=False)
    other_targets = torch.utils.data.TensorDataset(*(t[1:41] for t in digits.test.tensors))
    with pytest.raises(FeaturesMismatch, match="data"):
        attribute("tracin", run, digits.train, other_targets, features=[f], proj_dim=64, progress=False)
    with pytest.raises(FeaturesMismatch, match="model"):
        attribute("tracin", setup["ensemble"][1], digits.train, targets, features=[f], proj_dim=64, progress=False)
    with pytest.raises(FeaturesMismatch, match="'tracin' targets-side features, but 'trak'"):
        attribute("trak", run, digits.train, targets, features=[f], proj_dim=64, progress=False)
    train_f = featurize("tracin", run, digits.train, proj_dim=64, projection="factored", progress=False)
    with pytest.raises(FeaturesMismatch, match="projection"):  # factored features, a dense call
        attribute("tracin", run, digits.train, targets, features=[train_f], proj_dim=64, projection="dense",
                  progress=False)


def test_corrupt_or_foreign_files_are_refused(digits, setup, tmp_path):
    f = featurize("trak", setup["run"], digits.train, setup["targets"], proj_dim=64, progress=False)
    path = tmp_path / "t.npz"
    f.save(path)
    loaded = Features.load(path)
    assert loaded.key == f.key and all(np.array_equal(loaded.arrays[k], f.arrays[k]) for k in f.arrays)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        Features.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "foreign.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a readable ggda features file"):
        Features.load(tmp_path / "foreign.npz")
    altered = dict(f.arrays)
    altered["model0"] = altered["model0"] + 1.0
    meta = np.load(path)["__meta__"]
    np.savez(tmp_path / "altered.npz", __meta__=meta, **altered)
    with pytest.raises(ValueError, match="corrupt"):
        Features.load(tmp_path / "altered.npz")
    assert not list(tmp_path.glob(".*.tmp"))  # saves leave no temporary files behind


def test_train_side_only_with_the_factored_projection(digits, setup):
    run = setup["run"]
    assert has_train_features("if", run) and has_train_features("trak", run, proj_dim=64, projection="factored")
    assert not has_train_features("tracin", run) and not has_train_features("tracin", run, proj_dim=64,
                                                                            projection="dense")
    # dense: nothing to keep for TracIn, Q only for TRAK; scores from them still equal a single call's
    dense = {"proj_dim": 64, "projection": "dense"}
    assert featurize("tracin", run, digits.train, progress=False, **dense).arrays == {}
    trak_train = featurize("trak", run, digits.train, progress=False, **dense)
    assert list(trak_train.arrays) == ["model0/q"]
    direct = attribute("trak", run, digits.train, setup["targets"], setup["groups"], progress=False, **dense)
    cached = attribute("trak", run, digits.train, setup["targets"], setup["groups"], features=[trak_train],
                       progress=False, **dense)
    assert np.array_equal(direct.scores, cached.scores)


def test_saved_features_are_the_same_bytes_every_time(digits, setup, tmp_path):
    """Timing lives in a sidecar: the .npz of identical features is byte-identical (stable DVC hashes)."""
    opts = {"proj_dim": 64, "progress": False}
    a = featurize("trak", setup["run"], digits.train, setup["targets"], **opts)
    b = featurize("trak", setup["run"], digits.train, setup["targets"], **opts)
    a.save(tmp_path / "a.npz")
    b.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert Features.load(tmp_path / "a.npz").timing == a.timing and a.timing["target_gradients_s"] > 0
    timing_path(tmp_path / "b.npz").unlink()
    assert Features.load(tmp_path / "b.npz").timing == {}  # still usable without its sidecar

"""Every method runs on every model of the zoo (bert on real QNLI pairs), individual and grouped."""

import numpy as np
import pytest

import ggda.data as gdata
from ggda import grouping, train
from ggda.attribution import attribute

METHODS = ["if", "tracin", "trak"]


@pytest.fixture(scope="module")
def small_digits():
    return gdata.load("digits", n_train=120, n_test=10)


def _check(run, data, params, method):
    groups = grouping.make("repr-kmeans", run, data, 8, seed=0)
    options = {"proj_dim": 32} if method == "trak" else {}
    for g in (None, groups):
        a = attribute(method, run, data.train, data.test, g, params=params, progress=False, **options)
        k = len(data.train) if g is None else groups.k
        assert a.scores.shape == (len(data.test), k) and np.isfinite(a.scores).all()
        assert np.abs(a.scores).max() > 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("model, options", [("lr", {}), ("ann-s", {}), ("ann-m", {}), ("cnn", {}),
                                            ("resnet9", {"width": 0.0625})])
def test_every_method_on_every_image_model(small_digits, model, options, method):
    run = train.fit(model, small_digits, {"epochs": 2}, model_options=options, progress=False)
    _check(run, small_digits, "all", method)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_on_bert_last_layer(small_qnli, method):
    run = train.fit("bert", small_qnli, {"epochs": 1}, progress=False)
    _check(run, small_qnli, "last", method)


def test_tracin_on_all_bert_parameters(small_qnli):
    run = train.fit("bert", small_qnli, {"epochs": 1}, progress=False)
    a = attribute("tracin", run, small_qnli.train, small_qnli.test, params="all", proj_dim=64, progress=False)
    assert np.isfinite(a.scores).all()

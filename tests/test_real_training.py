"""Accuracy floor on real data: MNIST cnn trained on the first 10,000 official training images."""

import pytest

import ggda.data as gdata
from ggda import train


@pytest.mark.slow
def test_mnist_cnn_reaches_97_percent_on_first_10k(shared_data):
    bundle = gdata.load("mnist", root=shared_data / "mnist", download=False)
    assert (len(bundle.train), len(bundle.test)) == (10000, 10000)
    run = train.fit("cnn", bundle, progress=False)
    assert run.test_acc >= 0.97

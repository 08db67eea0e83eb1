"""ggda.data.load on the bundled data sets: splits, subsets, label noise, scaling and bad input."""

import numpy as np
import pytest
import torch

import ggda.data as gdata
from ggda.data import prepare


def test_digits_bundle_shapes_and_split():
    b = gdata.load("digits")
    assert (len(b.train), len(b.test)) == (1437, 360)
    x, y = b.train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert b.num_classes == 10 and b.meta["input_shape"] == [1, 8, 8]
    # stratified: each class's share of the test split is within one point of its share overall
    ytr, yte = b.train.tensors[1].numpy(), b.test.tensors[1].numpy()
    overall = np.bincount(np.r_[ytr, yte]) / (len(ytr) + len(yte))
    assert np.all(np.abs(np.bincount(yte) - overall * len(yte)) <= 1)
    # scaling fitted on train: the training channel has mean 0 and std 1, the test one only roughly
    xtr = b.train.tensors[0].double()
    assert abs(xtr.mean().item()) < 1e-5 and abs(xtr.std(unbiased=False).item() - 1) < 1e-5


def test_breast_cancer_standardised_on_train_only():
    b = gdata.load("breast_cancer")
    xtr, xte = b.train.tensors[0].double(), b.test.tensors[0].double()
    assert xtr.shape == (455, 30) and b.feature_names[0] == "mean radius"
    assert torch.allclose(xtr.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(xtr.std(0, unbiased=False), torch.ones(30, dtype=torch.float64), atol=1e-5)
    assert not torch.allclose(xte.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-3)


def test_subset_is_seeded_and_stratified():
    a = gdata.load("digits", n_train=200, n_test=50, seed=3)
    b = gdata.load("digits", n_train=200, n_test=50, seed=3)
    c = gdata.load("digits", n_train=200, n_test=50, seed=4)
    assert len(a.train) == 200 and len(a.test) == 50
    assert a.meta["train_indices"] == b.meta["train_indices"] != c.meta["train_indices"]
    counts = np.bincount(a.train.tensors[1].numpy(), minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21


def test_label_noise_flips_exactly_the_recorded_indices():
    clean = gdata.load("digits")
    noisy = gdata.load("digits", noise_rate=0.1, seed=7)
    y0, y1 = clean.train.tensors[1].numpy(), noisy.train.tensors[1].numpy()
    changed = np.flatnonzero(y0 != y1)
    assert len(noisy.flipped) == round(0.1 * len(y0))
    np.testing.assert_array_equal(changed, noisy.flipped)  # every flip changes the class
    np.testing.assert_array_equal(noisy.clean_labels, y0)
    again = gdata.load("digits", noise_rate=0.1, seed=7)
    np.testing.assert_array_equal(again.flipped, noisy.flipped)
    assert len(clean.flipped) == 0


def test_flip_labels_binary_always_swaps():
    y = np.zeros(100, dtype=np.int64)
    noisy, flipped = prepare.flip_labels(y, 0.25, 2, seed=0)
    assert len(flipped) == 25 and noisy.sum() == 25


def test_tabular_nan_imputed_with_train_median():
    xtr = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]])
    xte = np.array([[np.nan, np.nan]])
    a, b, _ = prepare.standardise_tabular(xtr, xte)
    assert not np.isnan(a).any() and not np.isnan(b).any()
    # the imputed test value equals the (scaled) training median: 3 -> 0 in column 0
    assert b[0, 0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "nope"}, "unknown dataset 'nope'"),
    ({"name": "digits", "noise_rate": 1.0}, "noise_rate must be in"),
    ({"name": "digits", "noise_rate": -0.1}, "noise_rate must be in"),
    ({"name": "digits", "n_train": 0}, "n_train must be a positive integer"),
    ({"name": "digits", "n_train": 5}, "smaller than the number of classes"),
])
def test_bad_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gdata.load(**kwargs)


def test_registry_lists_every_dataset():
    names = {row["name"] for row in gdata.list_datasets()}
    assert names == {"digits", "breast_cancer", "heloc", "affairs", "mnist", "cifar10", "qnli"}


def test_word_tokenizer_pairs():
    from ggda.data.text import WordTokenizer

    pairs = [("What is it?", "It is a test."), ("Who?", "Nobody at all, really, nobody.")]
    tok = WordTokenizer(pairs)
    ids, mask = tok.encode_pairs(pairs + [("unseen words", "here")], max_length=8)
    assert ids.shape == (3, 8) and mask.dtype == torch.int64
    assert ids[0, 0].item() == tok.vocab["[CLS]"]
    assert mask[1].sum().item() == 8  # truncated to max_length
    assert (ids[2, 1:3] == tok.vocab["[UNK]"]).all()

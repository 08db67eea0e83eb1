"""The model zoo: shapes, the features/head interface, binary logistic regression, bad input."""

import pytest
import torch
import torch.nn.functional as F

from ggda import models

IMAGE_META = {"kind": "image", "input_shape": [1, 8, 8], "num_classes": 10}
MNIST_META = {"kind": "image", "input_shape": [1, 28, 28], "num_classes": 10}
CIFAR_META = {"kind": "image", "input_shape": [3, 32, 32], "num_classes": 10}
TABULAR_META = {"kind": "tabular", "input_shape": [30], "num_classes": 2}


@pytest.mark.parametrize("name, meta, options", [
    ("lr", IMAGE_META, {}), ("ann-s", IMAGE_META, {}), ("ann-m", MNIST_META, {}),
    ("cnn", IMAGE_META, {}), ("cnn", MNIST_META, {}), ("resnet9", CIFAR_META, {"width": 0.125}),
    ("lr", TABULAR_META, {}), ("ann-s", TABULAR_META, {}),
])
def test_forward_is_head_of_features(name, meta, options):
    torch.manual_seed(0)
    model = models.build(name, meta, **options).eval()
    x = torch.randn(5, *meta["input_shape"])
    logits = model(x)
    assert logits.shape == (5, meta["num_classes"])
    h = model.features(x)
    assert h.shape == (5, model.head.in_features)
    assert torch.allclose(model.logits_from_head(models.last_layer(model)(h)), logits)


def test_binary_lr_is_logistic_regression():
    torch.manual_seed(0)
    model = models.build("lr", TABULAR_META)
    assert model.head.out_features == 1 and sum(p.numel() for p in model.parameters()) == 31
    x, y = torch.randn(8, 30), torch.randint(0, 2, (8,))
    z = model.head(x.flatten(1)).squeeze(1)
    bce = F.binary_cross_entropy_with_logits(z, y.float())
    assert torch.allclose(F.cross_entropy(model(x), y), bce, atol=1e-6)


def test_multiclass_lr_has_no_hidden_layer():
    model = models.build("lr", IMAGE_META)
    assert sum(p.numel() for p in model.parameters()) == 64 * 10 + 10


@pytest.mark.parametrize("name, meta, match", [
    ("nope", IMAGE_META, "unknown model 'nope'"),
    ("cnn", TABULAR_META, "needs image data"),
    ("bert", IMAGE_META, "needs text data"),
    ("lr", {"kind": "text", "input_shape": [16], "num_classes": 2}, "text data sets need the bert model"),
])
def test_bad_model_requests(name, meta, match):
    with pytest.raises(ValueError, match=match):
        models.build(name, meta)


def test_tiny_bert_offline():
    pytest.importorskip("transformers")
    pairs = [("what is this?", "this is a test."), ("who wrote it?", "nobody did.")]
    from ggda.data.text import WordTokenizer

    tok = WordTokenizer(pairs)
    ids, mask = tok.encode_pairs(pairs, max_length=16)
    meta = {"kind": "text", "input_shape": [16], "num_classes": 2, "vocab_size": len(tok), "max_length": 16}
    torch.manual_seed(0)
    model = models.build("bert", meta).eval()
    logits = model(ids, mask)
    assert logits.shape == (2, 2)
    assert model.features(ids, mask).shape == (2, model.head.in_features)
    assert torch.allclose(model.head(model.features(ids, mask)), logits, atol=1e-6)

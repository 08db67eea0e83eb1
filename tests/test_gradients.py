"""The gradient engine: per-sample and group gradients against autograd, projection."""

import numpy as np
import pytest
import torch

import ggda.data as gdata
from ggda import train
from ggda.gradients import GradientEngine, Projector, group_gradients, sample_gradients


@pytest.fixture(scope="module")
def setup():
    data = gdata.load("digits", n_train=300, n_test=10)
    run = train.fit("ann-s", data, {"epochs": 2, "dtype": "float64"}, progress=False)
    return data, run


def _autograd(model, x, y, output="loss"):
    model.zero_grad()
    logits = model(x)
    if output == "loss":
        value = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
    else:
        from ggda.gradients import per_sample_output
        value = per_sample_output(logits, y, output).sum()
    value.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("output", ["loss", "margin"])
def test_per_sample_gradients_match_autograd(setup, output):
    data, run = setup
    x, y = data.train.tensors
    g = sample_gradients(run.model, data.train.tensors, output=output, batch_size=64, device="cpu")
    for i in (0, 7, 299):
        ref = _autograd(run.model, x[i:i + 1].double(), y[i:i + 1], output)
        torch.testing.assert_close(g[i], ref, rtol=1e-10, atol=1e-12)


def test_group_gradients_of_any_size_mix(setup):
    """One huge group (accumulated in mini-batches), mid-size and singleton groups, in one pass."""
    data, run = setup
    x, y = data.train.tensors
    labels = np.zeros(300, dtype=np.int64)
    labels[200:260] = 1 + np.arange(60) % 7       # 7 groups of 8-9
    labels[260:] = 8 + np.arange(40)              # 40 singletons
    g = group_gradients(run.model, data.train.tensors, labels, batch_size=32, device="cpu")
    assert g.shape == (48, sum(p.numel() for p in run.model.parameters()))
    for group in (0, 3, 20):
        idx = np.flatnonzero(labels == group)
        ref = _autograd(run.model, x[idx].double(), y[idx])
        torch.testing.assert_close(g[group], ref, rtol=1e-9, atol=1e-11)


def test_weights_scale_each_member(setup):
    data, run = setup
    w = torch.linspace(0.1, 2.0, 300)
    labels = np.arange(300) // 10
    weighted = group_gradients(run.model, data.train.tensors, labels, weights=w, device="cpu")
    per = sample_gradients(run.model, data.train.tensors, device="cpu") * w[:, None].double()
    ref = torch.zeros_like(weighted).index_add_(0, torch.from_numpy(labels), per)
    torch.testing.assert_close(weighted, ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_projector_is_seeded_blockwise_and_linear(kind):
    x = torch.randn(5, 1000, dtype=torch.float64)
    cached = Projector(1000, 64, kind, seed=3, block_rows=128)
    streamed = Projector(1000, 64, kind, seed=3, block_rows=128, max_cached_bytes=0)
    assert cached.cache and not streamed.cache
    torch.testing.assert_close(cached(x), streamed(x))
    torch.testing.assert_close(cached(x), x @ cached.matrix(torch.float64) / 8.0)
    assert not torch.allclose(Projector(1000, 64, kind, seed=4)(x), cached(x))
    if kind == "rademacher":
        assert set(cached.matrix().unique().tolist()) == {-1.0, 1.0}
    # norms are preserved in expectation: within 30% for d = 64 on average over rows
    big = Projector(1000, 4096, kind, seed=0)(x)
    ratio = big.norm(dim=1) / x.norm(dim=1)
    assert torch.all((ratio > 0.9) & (ratio < 1.1))


def test_projected_engine_equals_projection_of_raw(setup):
    data, run = setup
    p = sum(q.numel() for q in run.model.parameters())
    proj = Projector(p, 32, seed=1)
    labels = np.arange(300) % 17
    raw = group_gradients(run.model, data.train.tensors, labels, device="cpu")
    projected = group_gradients(run.model, data.train.tensors, labels, projector=proj, device="cpu")
    torch.testing.assert_close(projected, proj(raw), rtol=1e-9, atol=1e-11)


def test_last_layer_selection(setup):
    data, run = setup
    engine = GradientEngine(run.model, "last", device="cpu")
    assert engine.names == ["head.weight", "head.bias"] and engine.dim == 64 * 10 + 10
    with pytest.raises(ValueError, match="unknown parameter name"):
        GradientEngine(run.model, ["nope"], device="cpu")
    with pytest.raises(ValueError, match="projector maps"):
        GradientEngine(run.model, "last", projector=Projector(5, 2), device="cpu")

"""Kronecker-factored features: the exact identity with a dense Kronecker projection of per-sample
gradients, group = sum of members, coverage of layers, and agreement with unprojected attribution."""

import numpy as np
import pytest
import torch
from torch import nn

import ggda
import ggda.data as gdata
from ggda import models, train
from ggda.factored import FactoredEngine, FactoredProjector, _allocate, unsupported_parameters
from ggda.gradients import sample_gradients


def _layer_gradient(model, layer, flat_grad: torch.Tensor) -> torch.Tensor:
    """Row-major vec of [W-gradient | bias-gradient] of one layer from the flat per-sample gradient."""
    named = dict(model.named_parameters())
    offsets, pos = {}, 0
    for name, p in named.items():
        offsets[name] = (pos, p.numel())
        pos += p.numel()
    lo, size = offsets[layer.params[0]]
    w = flat_grad[lo:lo + size].reshape(layer.n_out, -1)
    if layer.bias:
        lo, size = offsets[layer.params[1]]
        w = torch.cat([w, flat_grad[lo:lo + size].reshape(-1, 1)], 1)
    return w.reshape(-1)


@pytest.fixture(scope="module")
def small_digits():
    return gdata.load("digits", n_train=120, n_test=10)


@pytest.mark.parametrize("name", ["lr", "ann-s", "cnn"])
@pytest.mark.parametrize("output", ["loss", "margin"])
def test_factored_feature_is_kronecker_projection_of_the_gradient(small_digits, name, output):
    """Exact identity in float64: phi_l(z) = vec(G_l(z)) (P_out kron P_in), per layer, for every sample."""
    torch.manual_seed(0)
    model = models.build(name, small_digits.meta).double()
    proj = FactoredProjector(model, proj_dim=300, seed=3)
    assert proj.skipped == []
    tensors = small_digits.train.tensors
    feats = FactoredEngine(model, proj, output, batch_size=37, device="cpu").compute(tensors)
    dense = sample_gradients(model, tensors, output=output, batch_size=64, device="cpu")
    assert feats.shape == (120, proj.dim) and feats.dtype == torch.float64
    start = 0
    for i, layer in enumerate(proj.layers):
        kron = proj.kronecker(i)
        for row in (0, 55, 119):
            expected = _layer_gradient(model, layer, dense[row]) @ kron
            torch.testing.assert_close(feats[row, start:start + layer.dim], expected, rtol=1e-10, atol=1e-12)
        start += layer.dim
    # at least one layer is really projected (not only identities)
    assert any(layer.d_out * layer.d_in < layer.n_out * layer.n_in for layer in proj.layers)


def test_linear_over_sequence_positions_sums_the_positions():
    """A Linear applied to (B, T, in): the gradient sums delta_t a_t^T over positions."""

    class SeqModel(models.base.Classifier):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(5, 6)
            self.head = nn.Linear(6, 3)

        def features(self, x):
            return torch.tanh(self.proj(x)).mean(1)

    torch.manual_seed(1)
    model = SeqModel().double()
    x = torch.randn(9, 4, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    proj = FactoredProjector(model, proj_dim=20, seed=0)
    feats = FactoredEngine(model, proj, "loss", batch_size=4, device="cpu").compute((x, y))
    dense = sample_gradients(model, (x, y), output="loss", device="cpu")
    layer = proj.layers[0]
    assert layer.module_name == "proj" and layer.d_out * layer.d_in < layer.n_out * layer.n_in
    for row in range(9):
        torch.testing.assert_close(feats[row, :layer.dim], _layer_gradient(model, layer, dense[row]) @ proj.kronecker(0))


@pytest.mark.parametrize("name", ["ann-s", "cnn"])
def test_group_feature_is_the_sum_of_its_members(small_digits, name):
    torch.manual_seed(0)
    model = models.build(name, small_digits.meta).double()
    engine = FactoredEngine(model, FactoredProjector(model, proj_dim=128, seed=1), "loss", batch_size=50,
                            device="cpu")
    tensors = small_digits.train.tensors
    labels = np.random.default_rng(0).integers(0, 11, 120)
    labels[:3] = 11  # one more group, members in the first batch only
    weights = torch.rand(120, dtype=torch.float64)
    single = engine.compute(tensors, weights=weights)
    grouped = engine.compute(tensors, labels, weights=weights)
    assert grouped.shape == (12, engine.out_dim)
    for g in range(12):
        torch.testing.assert_close(grouped[g], single[labels == g].sum(0), rtol=1e-10, atol=1e-12)


def test_allocation_shares_the_budget_and_keeps_small_layers_exact():
    dims = _allocate([(64, 785), (10, 65)], 1400)
    assert dims[1] == (10, 65)                      # 650 numbers fit their share of 700: exact
    assert 700 <= dims[0][0] * dims[0][1] <= 1400 - 650  # the big layer gets what the small one left
    dims = _allocate([(64, 785), (10, 65)], 1000)
    assert dims[1][0] * dims[1][1] <= 500 and dims[1][0] == 10  # projected on its input side only
    with pytest.raises(ValueError, match="smaller than the number of covered layers"):
        _allocate([(3, 3), (3, 3)], 1)


def test_bert_linear_layers_are_factored_over_token_positions(small_qnli):
    """A Linear inside BERT (sequence inputs, padded positions): exact identity in float64; the
    embeddings and LayerNorms are what ``auto`` refuses to factor."""
    torch.manual_seed(0)
    model = models.build("bert", small_qnli.meta).double()
    names = [n for n, _ in model.named_parameters() if ".query." in n][:2]  # one query Linear: weight, bias
    proj = FactoredProjector(model, names, proj_dim=256, seed=0)
    assert proj.names == names and proj.layers[0].d_in < proj.layers[0].n_in
    tensors = tuple(t[:6] for t in small_qnli.train.tensors)
    feats = FactoredEngine(model, proj, "loss", batch_size=4, device="cpu").compute(tensors)
    dense = sample_gradients(model, tensors, params=names, output="loss", device="cpu")
    layer = proj.layers[0]
    kron = proj.kronecker(0)
    for row in range(6):
        w = dense[row, :layer.n_out * (layer.n_in - 1)].reshape(layer.n_out, -1)
        g = torch.cat([w, dense[row, layer.n_out * (layer.n_in - 1):, None]], 1).reshape(-1)
        torch.testing.assert_close(feats[row], g @ kron, rtol=1e-9, atol=1e-12)
    skipped = unsupported_parameters(model)
    assert any("LayerNorm" in n for n in skipped) and any("embeddings" in n for n in skipped)


def test_unsupported_layers_are_reported_and_skipped(caplog):
    class WithNorm(models.base.Classifier):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(4)
            self.head = nn.Linear(4, 2)

        def features(self, x):
            return self.norm(x)

    model = WithNorm()
    assert unsupported_parameters(model) == ["norm.weight", "norm.bias"]
    assert unsupported_parameters(model, "last") == []
    with caplog.at_level("WARNING", logger="ggda.factored"):
        proj = FactoredProjector(model, proj_dim=8)
    assert proj.names == ["head.weight", "head.bias"] and "norm.weight" in caplog.text
    with pytest.raises(ValueError, match="projection='dense'"):
        FactoredProjector(model, ["norm.weight"], proj_dim=8)


def test_projector_checks_its_architecture(small_digits):
    a = models.build("ann-s", small_digits.meta)
    b = models.build("lr", small_digits.meta)
    with pytest.raises(ValueError, match="another architecture"):
        FactoredEngine(b, FactoredProjector(a, proj_dim=64), device="cpu")


def _mean_spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr
    return float(np.mean([spearmanr(x, y)[0] for x, y in zip(a, b)]))


@pytest.fixture(scope="module")
def digit_runs(digits):
    return {"lr": train.fit("lr", digits, progress=False),
            "ann-s": train.fit("ann-s", digits, {"epochs": 5}, progress=False)}


@pytest.mark.parametrize("name,proj_dim", [("lr", 512), ("ann-s", 1024)])
def test_factored_tracin_agrees_with_unprojected(digits, digit_runs, name, proj_dim):
    """TracIn is a sum of inner products, which a random projection preserves up to O(1/sqrt(D)).
    (Measured: lr 0.987 at D = 512; ann-s 0.88 at 512, 0.935 at 1024, dense 0.90 / 0.91.)"""
    run = digit_runs[name]
    targets = torch.utils.data.TensorDataset(*(t[:20] for t in digits.test.tensors))
    exact = ggda.attribute("tracin", run, digits.train, targets, progress=False, device="cpu")
    fact = ggda.attribute("tracin", run, digits.train, targets, progress=False, device="cpu", proj_dim=proj_dim,
                          projection="factored")
    assert fact.options["projection"] == "factored"
    assert any(d_out * d_in < n_out * n_in for _, n_out, n_in, d_out, d_in in fact.options["proj_layers"])
    assert _mean_spearman(fact.scores, exact.scores) >= 0.9


@pytest.mark.parametrize("name", ["lr", "ann-s"])
def test_factored_trak_agrees_with_unprojected(digits, digit_runs, name):
    """The reference is TRAK without projection: the kernel of the raw margin gradients (lr: all 650
    parameters; ann-s: its last layer, 650), solved exactly. A projected TRAK kernel agrees with it only
    once D approaches the rank of the gradients (~560 here): measured at D = 256, dense 0.38 / factored
    0.36 (lr); at D = 600, dense 0.99 / factored 0.98 (lr), 0.99 / 0.945 (ann-s)."""
    run = digit_runs[name]
    targets = torch.utils.data.TensorDataset(*(t[:20] for t in digits.test.tensors))
    params = "all" if name == "lr" else "last"
    # near-exact solves (relative damping 1e-6) on both sides: the projection is under test, not the ridge
    exact = ggda.attribute("trak", run, digits.train, targets, progress=False, device="cpu", proj_dim=None,
                           params=params, relative_damping=1e-6)
    fact = ggda.attribute("trak", run, digits.train, targets, progress=False, device="cpu", proj_dim=600,
                          params=params, projection="factored", relative_damping=1e-6)
    assert fact.options["proj_layers"][0][4] < 65  # the input side really is projected
    assert _mean_spearman(fact.scores, exact.scores) >= 0.9


def test_factored_influence_with_all_parameters_kept_is_exact_influence(digits, digit_runs):
    """lr's 650 parameters fit D = 1024, so every factor is the identity: factored IF with its
    Gauss-Newton curvature must reproduce exact (Gauss-Newton, Cholesky) IF, centring included."""
    run = digit_runs["lr"]
    targets = torch.utils.data.TensorDataset(*(t[:20] for t in digits.test.tensors))
    groups = ggda.grouping.make("random", run, digits, 16, seed=0)
    for g in (None, groups):
        exact = ggda.attribute("if", run, digits.train, targets, g, progress=False, device="cpu")
        fact = ggda.attribute("if", run, digits.train, targets, g, progress=False, device="cpu", proj_dim=1024,
                              projection="factored")
        assert fact.options["curvature"] == "gauss-newton"
        np.testing.assert_allclose(fact.scores, exact.scores, rtol=1e-6, atol=1e-9 * np.abs(exact.scores).max())


def test_factored_gauss_newton_moment_matches_the_dense_matrix(small_digits):
    """The factored Gauss-Newton moment equals K^T GN K, GN the dense Gauss-Newton matrix of the summed
    loss and K the Kronecker projection (one layer, float64)."""
    from ggda.attribution.influence import curvature_matrix
    from ggda.gradients import GradientEngine

    torch.manual_seed(0)
    model = models.build("lr", small_digits.meta).double()
    proj = FactoredProjector(model, proj_dim=200, seed=2)
    engine = FactoredEngine(model, proj, "loss", batch_size=50, device="cpu")
    tensors = small_digits.train.tensors
    res = engine.pass_over(tensors, moment="gauss-newton")
    gn = curvature_matrix(GradientEngine(model, "all", "loss", None, 64, "cpu"), tensors)
    # the dense parameter order is [W (row-major), b]; the factored one is row-major [W | b]
    layer = proj.layers[0]
    order = torch.arange(layer.n_out * layer.n_in).reshape(layer.n_out, layer.n_in)
    perm = torch.cat([order[:, :-1].reshape(-1), order[:, -1]])  # dense index -> factored index
    kron = proj.kronecker(0)[perm]
    torch.testing.assert_close(res["moment"], kron.T @ gn @ kron, rtol=1e-8, atol=1e-10)
    emp = engine.pass_over(tensors, moment="empirical-fisher")
    torch.testing.assert_close(emp["moment"], res["features"].T @ res["features"])
    with pytest.raises(ValueError, match="moment must be"):
        engine.pass_over(tensors, moment="hessian")


def test_auto_projection_is_factored_only_where_every_layer_is_supported(small_digits, small_qnli):
    from ggda.attribution.base import resolve_projection

    ann = models.build("ann-s", small_digits.meta)
    lr = models.build("lr", small_digits.meta)  # 650 parameters, 10 outputs
    bert = models.build("bert", small_qnli.meta)
    assert resolve_projection(ann, "all", 64, "auto") == "dense"        # both factors of a layer projected
    assert resolve_projection(ann, "last", 256, "auto") == "factored"   # the head keeps its 10 outputs whole
    assert resolve_projection(lr, "all", 512, "auto") == "factored"
    assert resolve_projection(lr, "all", 512, "auto", relative_damping=1e-6) == "dense"  # a whitening kernel solve
    assert resolve_projection(lr, "all", 512, "auto", relative_damping=1e-6, dense=False) == "factored"  # IF
    assert resolve_projection(lr, "all", 650, "auto") == "none"         # nothing to gain from a projection
    assert resolve_projection(ann, "all", None, "auto") == "dense"      # no projection asked for
    assert resolve_projection(bert, "all", 64, "auto") == "dense"       # LayerNorm, embeddings
    assert resolve_projection(bert, "last", 64, "auto") == "factored"
    with pytest.raises(ValueError, match="needs proj_dim"):
        resolve_projection(ann, "all", None, "factored")
    with pytest.raises(ValueError, match="projection must be"):
        resolve_projection(ann, "all", 64, "kronecker")


def test_dense_influence_refuses_a_projection(small_digits):
    run = train.fit("lr", small_digits, progress=False)
    with pytest.raises(ValueError, match="projection='factored'"):
        ggda.attribute("if", run, small_digits.train, small_digits.test, proj_dim=64, progress=False)


@pytest.mark.parametrize("name", ["lr", "ann-s"])
def test_exact_tracin_from_factors_equals_per_sample_gradients(digits, digit_runs, name):
    """Unprojected TracIn on an MLP: (delta_z . delta_i)(a_z . a_i) summed over layers is the exact
    inner product of per-sample gradients, for individual and group scores."""
    run = digit_runs[name]
    targets = torch.utils.data.TensorDataset(*(t[:15] for t in digits.test.tensors))
    groups = ggda.grouping.make("random", run, digits, 16, seed=0)
    for g in (None, groups):
        fast = ggda.attribute("tracin", run, digits.train, targets, g, progress=False, device="cpu")
        ref = ggda.attribute("tracin", run, digits.train, targets, g, progress=False, device="cpu",
                             projection="dense")
        assert fast.options["inner_products"] == "factored" and ref.options["inner_products"] == "gradients"
        np.testing.assert_allclose(fast.scores, ref.scores, rtol=1e-4, atol=1e-6 * np.abs(ref.scores).max())


def test_exact_tracin_falls_back_to_gradients_for_convolutions(small_digits):
    run = train.fit("cnn", small_digits, {"epochs": 1}, progress=False)
    attr = ggda.attribute("tracin", run, small_digits.train, small_digits.test, progress=False, device="cpu")
    assert attr.options["inner_products"] == "gradients"

"""A classifier ggda has never seen (its own module names, no ``features()``), trained with a plain loop
and handed to ggda as a ModelRun with plain Datasets: groupings, every method (individual and group,
dense and factored), and the removal-and-retrain evaluation with the user's own training function."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import ggda
from ggda import grouping
from ggda.evaluation import retraining_score
from test_attribution import _sum_over_groups


class Net(nn.Module):
    """Not a ggda Classifier: a hidden block and an output layer under names of its own."""

    def __init__(self, d_in: int, classes: int):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(d_in, 12), nn.Tanh())
        self.classifier_out = nn.Linear(12, classes)

    def forward(self, x):
        return self.classifier_out(self.block(x))


class Rows(Dataset):
    """Items (numpy features, int label), as a user's own Dataset might return them."""

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


WEIGHT_DECAY = 1e-3


def plain_training(data: Dataset, seed: int, epochs: int = 30, keep=None):
    """A plain PyTorch loop (Adam with weight decay, the mean loss); returns the model and two checkpoints."""
    torch.manual_seed(seed)
    subset = data if keep is None else torch.utils.data.Subset(data, list(keep))
    loader = DataLoader(subset, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model = Net(30, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=WEIGHT_DECAY)
    checkpoints = []
    for epoch in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.float()), y).backward()
            opt.step()
        if epoch in (epochs // 2, epochs - 1):
            checkpoints.append({k: v.clone() for k, v in model.state_dict().items()})
    return model.eval(), checkpoints


@pytest.fixture(scope="module")
def own():
    bundled = ggda.data.load("breast_cancer")
    x, y = (t.numpy() for t in bundled.train.tensors)
    xt, yt = (t.numpy() for t in bundled.test.tensors)
    train_set, test_set = Rows(x, y), Rows(xt[:40], yt[:40])
    model, checkpoints = plain_training(train_set, seed=0)
    calls = []

    def retrain(keep, seed):
        calls.append((len(keep), seed))
        return plain_training(train_set, seed, epochs=10, keep=keep)[0]

    run = ggda.ModelRun(model, checkpoints=checkpoints, lrs=[1e-2, 1e-2], weight_decay=WEIGHT_DECAY,
                        retrain=retrain)
    data = ggda.data.from_datasets(DataLoader(train_set, batch_size=7, shuffle=True), test_set)
    return run, data, calls


def test_the_data_and_the_head_are_found(own):
    run, data, _ = own
    assert data.kind == "tabular" and len(data.train) == 455 and data.num_classes == 2
    assert data.train.tensors[-1].dtype == torch.int64       # the Dataset's int labels, gathered in index order
    np.testing.assert_array_equal(data.train.tensors[-1].numpy(), ggda.data.load("breast_cancer").train.tensors[-1].numpy())
    assert run.model.head_name == "classifier_out"
    assert run.model.features(data.test.tensors[0][:3]).shape == (3, 12)


@pytest.mark.parametrize("method", ["repr-kmeans", "grad-kmeans"])
def test_model_groupings_run_on_the_own_model(own, method):
    run, data, _ = own
    groups = grouping.make(method, run, data, 16, seed=0)
    assert groups.n == len(data.train) and groups.k >= len(data.train) // 16 // 2


@pytest.mark.parametrize("method,options", [("if", {}), ("if", {"projection": "factored", "proj_dim": 16}),
                                            ("tracin", {}), ("tracin", {"projection": "factored", "proj_dim": 16})])
def test_group_scores_are_sums_of_member_scores(own, method, options):
    run, data, _ = own
    groups = grouping.make("grad-kmeans", run, data, 16, seed=0)
    ind = ggda.attribute(method, run, data.train, data.test, progress=False, **options)
    grp = ggda.attribute(method, run, data.train, data.test, groups, progress=False, **options)
    assert ind.scores.shape == (40, 455) and np.isfinite(ind.scores).all()
    expected = _sum_over_groups(ind.scores, groups.labels, groups.k)
    np.testing.assert_allclose(grp.scores, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("projection", ["dense", "factored"])
def test_trak_on_singletons_is_individual_trak(own, projection):
    run, data, _ = own
    singles = grouping.Groups.from_labels(np.random.default_rng(0).permutation(len(data.train)))
    opts = dict(proj_dim=32, projection=projection, progress=False)
    ind = ggda.attribute("trak", run, data.train, data.test, **opts)
    grp = ggda.attribute("trak", run, data.train, data.test, singles, **opts)
    np.testing.assert_allclose(grp.point_scores(), ind.scores, rtol=1e-7, atol=1e-10)


def test_tracin_weighs_the_given_checkpoints_by_their_learning_rates(own):
    run, data, _ = own
    one = ggda.attribute("tracin", run, data.train, data.test, checkpoints=[1], progress=False)
    halved = ggda.ModelRun(run.model.net, checkpoints=[c.state_dict for c in run.checkpoints], lrs=[1e-2, 5e-3])
    np.testing.assert_allclose(ggda.attribute("tracin", halved, data.train, data.test, checkpoints=[1],
                                              progress=False).scores, one.scores / 2, rtol=1e-6)


def test_removal_and_retraining_uses_the_users_training_function(own):
    run, data, calls = own
    importance = ggda.attribute("tracin", run, data.train, data.test, progress=False).importance()
    calls.clear()
    res = retraining_score(run, data, importance, fractions=(0.2,), seeds=(0,), progress=False)
    assert list(res.rows["kind"]) == ["none", "attribution", "random"]
    assert res.rows["accuracy"].between(0, 1).all()
    assert calls == [(455, 0), (455 - round(0.2 * 455), 0), (455 - round(0.2 * 455), 0)]


def test_clear_errors_for_what_ggda_cannot_use():
    with pytest.raises(ValueError, match="no nn.Linear"):
        ggda.ModelRun(nn.Sequential(nn.Conv1d(1, 2, 3)))
    with pytest.raises(ValueError, match="head='block'"):
        ggda.ModelRun(Net(30, 2), head="block")
    with pytest.raises(ValueError, match="lrs has 1 learning rates for 2 checkpoints"):
        ggda.ModelRun(Net(30, 2), checkpoints=[Net(30, 2), Net(30, 2)], lrs=[0.1])
    with pytest.raises(ValueError, match="no retrain function"):
        ggda.ModelRun(Net(30, 2)).retrained(np.arange(3), 0)
    with pytest.raises(ValueError, match="every item must be a tuple"):
        ggda.data.from_datasets(torch.utils.data.TensorDataset(torch.zeros(3, 2)), Rows(np.zeros((2, 2)), np.zeros(2)))


class Tokens(nn.Module):
    """Two inputs (token ids and a mask), as for text: a mean of embeddings, then a linear output."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.to_logits = nn.Linear(6, 3)

    def forward(self, ids, mask):
        m = mask.unsqueeze(-1).float()
        return self.to_logits((self.embed(ids) * m).sum(1) / m.sum(1).clamp(min=1))


class Pairs(Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 20, (n, 5), generator=g)
        self.mask = (torch.rand(n, 5, generator=g) > 0.2).long()
        self.y = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.ids[i], self.mask[i], self.y[i]


def test_a_model_of_two_inputs(own):
    torch.manual_seed(0)
    model = Tokens()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    train_set = Pairs(120, 0)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(train_set.ids, train_set.mask), train_set.y).backward()
        opt.step()
    run = ggda.ModelRun(model)
    data = ggda.data.from_datasets(train_set, Pairs(15, 1))
    assert data.kind == "text" and len(data.train.tensors) == 3
    groups = grouping.make("grad-kmeans", run, data, 8, seed=0)
    for method in ("if", "tracin", "trak"):
        ind = ggda.attribute(method, run, data.train, data.test, progress=False)
        grp = ggda.attribute(method, run, data.train, data.test, groups, progress=False)
        assert ind.scores.shape == (15, 120) and grp.scores.shape == (15, groups.k)
        assert np.isfinite(ind.scores).all() and np.isfinite(grp.scores).all()

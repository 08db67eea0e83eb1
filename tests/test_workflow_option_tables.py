"""The workflow's two hand-written option tables (workflow/rules/common.smk, kept there so that parsing the
workflow never imports torch) agree with the library they describe:

- GROUPING_OPTIONS lists, per grouping method, the options its ``groups`` job passes on (and hashes):
  every listed name is a parameter of ``ggda.grouping.make``, and every option left out really does not
  change that method's groups (else a config change would silently not rerun the grouping);
- SCORING_OPTIONS lists, per attribution method, the options its cached features do not depend on:
  every listed name is an option of the method, and changing it leaves the features bitwise identical
  (else a cache made with one value would be reused for another).
"""

import ast
import contextlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from ggda import grouping, train
from ggda.attribution import CORES, featurize

COMMON = Path(__file__).resolve().parents[1] / "workflow" / "rules" / "common.smk"


def _table(name: str) -> dict:
    """The literal value of ``name = {...}`` in common.smk (a Snakemake file: not Python as a whole, so the
    assignment's lines are read until they parse)."""
    lines = COMMON.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{name} = ")), None)
    assert start is not None, f"{name} is not assigned in {COMMON}"
    for end in range(start + 1, len(lines) + 1):
        try:
            node = ast.parse("\n".join(lines[start:end])).body[0]
        except SyntaxError:
            continue
        return ast.literal_eval(node.value)
    raise AssertionError(f"the assignment of {name} in {COMMON} does not parse")


GROUPING_OPTIONS = _table("GROUPING_OPTIONS")
SCORING_OPTIONS = _table("SCORING_OPTIONS")

# a value other than make()'s default for every option a grouping job may receive
OTHER_VALUE = {"seed": 1, "within_class": "flip", "max_group_size": 5, "oversize": "reassign", "proj_dim": 8,
               "gradient": "penultimate", "normalize": True}
NOT_OPTIONS = {"method", "run", "data", "group_size", "device", "batch_size"}


def _make_params() -> set[str]:
    return set(inspect.signature(grouping.make).parameters) - NOT_OPTIONS


def test_grouping_table_covers_every_method_and_names_real_options():
    assert set(GROUPING_OPTIONS) == set(grouping.METHODS)
    for method, names in GROUPING_OPTIONS.items():
        assert set(names) <= _make_params(), method
    # every option make() takes (bar the deprecated alias) is exercised below
    assert _make_params() - {"feature_dim"} == set(OTHER_VALUE)


@pytest.fixture(scope="module")
def ann(digits):
    return train.fit("ann-s", digits, {"epochs": 2}, seed=0, progress=False)


@pytest.mark.parametrize("method", grouping.METHODS)
def test_options_left_out_of_the_grouping_table_do_not_change_the_groups(method, digits, ann):
    base = grouping.make(method, ann, digits, group_size=16)
    left_out = sorted(set(OTHER_VALUE) - set(GROUPING_OPTIONS[method]))
    for name in left_out:
        value = OTHER_VALUE[name]
        if value == "flip":
            value = not (method == "grad-kmeans")
        other = grouping.make(method, ann, digits, group_size=16, **{name: value})
        np.testing.assert_array_equal(other.labels, base.labels, err_msg=f"{method}: {name}={value!r} changed the groups")


def test_the_grouping_table_is_not_too_short(digits, ann):
    """The other direction for the options that matter: listed options do change some method's groups,
    so the test above would notice a table that lists too little."""
    for name in ("seed", "within_class", "max_group_size", "proj_dim", "gradient", "normalize"):
        method = "kmeans" if name == "proj_dim" else "grad-kmeans" if name in ("gradient", "normalize") else "random"
        value = OTHER_VALUE[name] if name != "within_class" else True
        base = grouping.make(method, ann, digits, group_size=16)
        other = grouping.make(method, ann, digits, group_size=16, **{name: value})
        assert not np.array_equal(base.labels, other.labels), f"{method}: {name} has no effect"
        assert name in GROUPING_OPTIONS[method]


@pytest.fixture(scope="module")
def lr_run(cancer):
    return train.fit("lr", cancer, {"epochs": 3}, seed=0, checkpoints=2, progress=False)


SCORING_VALUES = {("if", "centre"): False, ("if", "solve_for"): "groups", ("trak", "kernel"): "individual",
                  ("trak", "relative_damping"): 0.5, ("trak", "damping"): 0.5}


def test_scoring_table_names_real_options():
    assert set(SCORING_OPTIONS) == set(CORES)
    for method, names in SCORING_OPTIONS.items():
        params = set(inspect.signature(CORES[method]).parameters)
        assert set(names) <= params, method
        assert {(method, n) for n in names} <= set(SCORING_VALUES)


def _features(method, run, data, **options):
    train_side = featurize(method, run, data.train, progress=False, **options)
    target_side = featurize(method, run, data.train, data.test, progress=False, **options)
    return train_side, target_side


@pytest.mark.parametrize("method", sorted(CORES))
@pytest.mark.parametrize("projection", ["dense", "factored"])
def test_scoring_options_leave_the_cached_features_unchanged(method, projection, cancer, lr_run):
    base_opts = {"projection": projection, "proj_dim": 8}
    if method == "if" and projection == "dense":  # IF's dense path is exact, unprojected
        del base_opts["proj_dim"]
    if method == "trak":
        base_opts["relative_damping"] = 0.1
    base = _features(method, lr_run, cancer, **base_opts)
    for name in SCORING_OPTIONS[method]:
        opts = {**base_opts, name: SCORING_VALUES[(method, name)]}
        if name == "damping":  # TRAK's deprecated alias of relative_damping: one or the other
            opts.pop("relative_damping")
        with pytest.warns(FutureWarning) if name == "damping" else contextlib.nullcontext():
            other = _features(method, lr_run, cancer, **opts)
        for a, b in zip(base, other):
            assert a.key == b.key, f"{method} {projection}: {name} changes the features' fingerprint"
            assert a.arrays.keys() == b.arrays.keys()
            for k in a.arrays:
                np.testing.assert_array_equal(a.arrays[k], b.arrays[k], err_msg=f"{method}: {name} changes {k}")


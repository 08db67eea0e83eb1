"""The config checks that run when the workflow is parsed (workflow/rules/checks.smk): a config whose jobs
would fail is rejected by a dry run naming its key; the shipped configs still pass; the schema's option
keys are the parameters of the library functions they are passed to; and the library sides of those
checks (model catalog, self-influence options, the missing-files message)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import yaml
from test_workflow import REPO, snakemake  # the workflow tests' dry-run helper

spec = importlib.util.spec_from_file_location("signatures", REPO / "workflow" / "scripts" / "signatures.py")
signatures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(signatures)


def dry_run(tmp_path, **changes):
    """A dry run of config/smoke.yaml with top-level sections replaced, in an empty working directory."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg.update(changes)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "run").mkdir(exist_ok=True)
    return snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path / "run"), cwd=REPO, check=False)


def rejected(tmp_path, key, **changes) -> str:
    """The output of a dry run that must fail on ``key`` before any job is planned."""
    proc = dry_run(tmp_path, **changes)
    assert proc.returncode != 0
    assert f"Invalid config: key '{key}': " in proc.output, proc.output[-3000:]
    assert "See config/README.md." in proc.output and "Building DAG" not in proc.output
    return proc.output


@pytest.mark.parametrize("config", ["config.yaml", "smoke.yaml", "paper.yaml", "grouping_study.yaml"])
def test_shipped_configs_pass_the_checks(tmp_path, config):
    proc = snakemake("-n", "--configfile", str(REPO / "config" / config), "--directory", str(tmp_path), cwd=REPO,
                     check=False)
    assert proc.returncode == 0 and "Invalid config" not in proc.output, proc.output[-3000:]


# ------------------------------------------------------------------------------- 1. model and data kinds
@pytest.mark.parametrize("change,key,words", [
    ({"datasets": [{"name": "breast_cancer", "models": ["lr", "cnn"]}]}, "datasets[0].models[1]",
     ["'cnn' takes image data", "tabular", "lr, ann-s, ann-m"]),
    ({"datasets": [{"name": "digits", "models": ["bert"]}]}, "datasets[0].models[0]", ["takes text data"]),
    ({"datasets": [{"name": "qnli", "models": ["lr"]}]}, "datasets[0].models[0]", ["text data set", "use bert"]),
    ({"pruning": {"enabled": True, "dataset": "affairs", "model": "resnet9"}}, "pruning.model", ["tabular"]),
], ids=["cnn-tabular", "bert-image", "lr-text", "pruning"])
def test_a_model_that_cannot_take_the_data_is_rejected(tmp_path, change, key, words):
    out = rejected(tmp_path, key, **change)
    assert all(w in out for w in words), out[-3000:]


# ------------------------------------------------------------------------------- 2. files, with download off
def test_download_off_needs_an_existing_root(tmp_path):
    out = rejected(tmp_path, "datasets[0].download", datasets=[{"name": "mnist", "models": ["lr"], "download": False}])
    assert "data/raw/mnist does not exist" in out and "turn download on" in out
    out = rejected(tmp_path, "datasets[0].root",
                   datasets=[{"name": "mnist", "models": ["lr"], "download": False, "root": "nowhere"}])
    assert "nowhere is not a folder" in out
    # an existing root, and the bundled data sets (no files at all), pass
    (tmp_path / "run" / "mnist_files").mkdir(parents=True)
    proc = dry_run(tmp_path, datasets=[{"name": "mnist", "models": ["lr"], "download": False, "root": "mnist_files"},
                                       {"name": "breast_cancer", "models": ["lr"], "download": False}])
    assert proc.returncode == 0, proc.output[-3000:]


def test_the_missing_files_message_speaks_to_both_callers(tmp_path):
    from ggda.data import DataError, sources

    with pytest.raises(DataError) as info:
        sources.fetch_affairs(tmp_path / "empty", download=False)
    assert "download=True" in str(info.value) and "in the workflow config" in str(info.value)


# ------------------------------------------------------------------------------- 3. option keys
def test_an_option_the_function_does_not_take_is_rejected(tmp_path):
    out = rejected(tmp_path, "datasets[0].model_options.lr.width",
                   datasets=[{"name": "breast_cancer", "models": ["lr"], "model_options": {"lr": {"width": 2}}}])
    assert "ggda.models.mlp.MLP (it takes: hidden)" in out
    rejected(tmp_path, "datasets[0].model_options.cnn",  # options of a model never trained there
             datasets=[{"name": "digits", "models": ["lr"], "model_options": {"cnn": {"hidden": 8}}}])


def _schema_keys(*path: str) -> set[str]:
    node = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    for part in path:
        node = node[part]
    return set(node["properties"])


def test_schema_option_keys_are_the_library_signatures():
    for method, (_, keys) in signatures.attribution_options().items():
        assert _schema_keys("$defs", f"options_{method}") == keys, method
    _, grouping = signatures.grouping_options()
    assert _schema_keys("$defs", "grouping_options") == grouping
    assert _schema_keys("properties", "grouping_options") == grouping
    assert _schema_keys("$defs", "hparams") == signatures.hparams_options()[1]
    # every model has options read from its class; a **kwargs there would hide them
    assert signatures.model_options()["cnn"][1] == {"channels", "hidden"}
    with pytest.raises(ValueError, match=r"build takes \*\*options"):
        signatures.optional_parameters(REPO / "ggda" / "models" / "__init__.py", "build")


def test_the_catalog_names_the_class_build_makes():
    from ggda.models import build
    from ggda.models.catalog import CLASSES, INPUT_KINDS

    meta = {"tabular": {"kind": "tabular", "input_shape": [6], "num_classes": 3},
            "image": {"kind": "image", "input_shape": [1, 8, 8], "num_classes": 3}}
    for model in ("lr", "ann-m", "cnn", "resnet9"):
        built = build(model, meta[INPUT_KINDS[model][-1]])
        assert (type(built).__module__, type(built).__name__) == (f"ggda.models.{CLASSES[model][0]}", CLASSES[model][1])
        for kind in set(meta) - set(INPUT_KINDS[model]):
            with pytest.raises(ValueError, match="needs image data"):
                build(model, meta[kind])


# ------------------------------------------------------------------------------- 4. noisy labels, self-influence
def test_noisy_labels_take_the_if_projection_and_reject_what_self_influence_cannot_use(tmp_path):
    factored = {"if": {"projection": "factored", "proj_dim": 16}}
    proc = dry_run(tmp_path, attribution={"methods": ["if"], "options": factored},
                   noisy_labels={"enabled": True, "dataset": "breast_cancer", "model": "lr", "methods": ["if"]})
    assert proc.returncode == 0 and "noisy_labels" in proc.output, proc.output[-3000:]
    noisy = {"enabled": True, "dataset": "breast_cancer", "model": "lr", "methods": ["trak"]}
    out = rejected(tmp_path, "attribution.options.trak.kernel", noisy_labels=noisy,
                   attribution={"methods": ["trak"], "options": {"trak": {"kernel": "individual"}}})
    assert "leave trak out of noisy_labels.methods" in out
    override = {"lr": {"trak": {"kernel": "groups"}}}  # a per-data-set override is named as such
    rejected(tmp_path, "datasets[0].attribution.lr.trak.kernel", noisy_labels=noisy,
             datasets=[{"name": "breast_cancer", "models": ["lr"], "attribution": override}])


@pytest.fixture(scope="module")
def cancer_run(cancer):
    import torch

    from ggda import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny full-batch fits are much slower with threads on a loaded machine
    yield cancer, train.fit("lr", cancer, seed=0, progress=False)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("options", [{}, {"projection": "factored", "proj_dim": 16}], ids=["dense", "factored"])
def test_if_self_influence_is_the_summed_diagonal_of_attribution(cancer_run, options):
    from ggda import attribute, grouping
    from ggda.evaluation import self_influence

    data, run = cancer_run
    groups = grouping.make("random", None, data, 16, seed=0)
    full = attribute("if", run, data.train, data.train, groups, progress=False, **options)
    summed = np.zeros((groups.k, groups.k))
    np.add.at(summed, groups.labels, full.scores)  # rows: targets summed by their group
    si = self_influence("if", run, data.train, groups, progress=False, **options)
    np.testing.assert_allclose(si.scores, np.diag(summed), rtol=1e-6, atol=1e-9 * np.abs(si.scores).max())
    assert si.options["projection"] == ("factored" if options else "none")


def test_self_influence_names_an_option_it_does_not_take(cancer_run):
    from ggda.evaluation import self_influence

    data, run = cancer_run
    with pytest.raises(TypeError, match="unexpected option.*'kernel'.*it takes: .*damping"):
        self_influence("trak", run, data.train, kernel="individual")
    with pytest.raises(ValueError, match="projects only with projection='factored'"):
        self_influence("if", run, data.train, projection="dense", proj_dim=16)

"""Cluster resources of the workflow's jobs (workflow/scripts/job_resources.py and rules/resources.smk):
scaled from data and model sizes, doubled on a retry, and visible in a dry run of the paper's config."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("job_resources", REPO / "workflow" / "scripts" / "job_resources.py")
jr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(jr)


def test_parameters_of_an_mlp_are_exact():
    assert jr.parameters("lr", 30, 2) == 31 * 2
    assert jr.parameters("ann-m", 784, 10, (128, 64)) == 785 * 128 + 129 * 64 + 65 * 10
    assert jr.parameters("resnet9", 3072, 10) == jr.PARAMETERS["resnet9"]


def test_requests_grow_with_the_work_and_double_on_a_retry():
    small, big = jr.training_minutes("ann-s", 1_000, 10), jr.training_minutes("ann-s", 100_000, 10)
    assert big == pytest.approx(100 * small)
    assert jr.training_minutes("resnet9", 50_000, 24) > jr.training_minutes("ann-s", 50_000, 24)
    assert jr.runtime_minutes(10, big) > jr.runtime_minutes(1, big) >= jr.STARTUP_MIN
    assert jr.runtime_minutes(10, big, attempt=2) == pytest.approx(2 * jr.runtime_minutes(10, big), abs=1)
    one, ensemble = jr.memory_mb(7_850, 60_000, 784), jr.memory_mb(7_850, 60_000, 784, feature_copies=5)
    assert ensemble > one > jr.BASE_MB
    assert jr.memory_mb(7_850, 60_000, 784, attempt=2) == pytest.approx(2 * one, abs=1)


def _resources(output: str) -> dict[tuple[str, str, str], dict[str, int]]:
    """{(rule, dataset, model): {runtime, mem_mb}} of a dry run (the largest over the rule's jobs)."""
    out: dict = {}
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", output):
        rule = re.match(r"(?:local)?rule (\S+):", block)
        wc, res = re.search(r"wildcards: (.*)", block), re.search(r"resources: (.*)", block)
        if not (rule and wc and res):
            continue
        w = dict(kv.split("=", 1) for kv in wc.group(1).split(", "))
        r = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
        if "runtime" in r:
            key = (rule.group(1), w["dataset"], w["model"])
            old = out.get(key, {"runtime": 0, "mem_mb": 0})
            out[key] = {k: max(old[k], int(r[k])) for k in old}
    return out


def test_the_paper_dry_run_requests_resources_by_data_and_model_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/paper.yaml",
                           "--directory", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _resources(proc.stdout + proc.stderr)
    train = {(d, m): r for (rule, d, m), r in res.items() if rule == "train"}
    assert train[("cifar10", "resnet9")]["runtime"] > train[("mnist", "ann-m")]["runtime"]
    assert train[("qnli", "bert")]["runtime"] > train[("heloc", "ann-s")]["runtime"]
    assert train[("cifar10", "resnet9")]["mem_mb"] > train[("heloc", "lr")]["mem_mb"]
    # a retraining job of a grouping retrains every method x fraction x seed: far more than one training
    assert res[("retrain", "mnist", "cnn")]["runtime"] > 10 * train[("mnist", "cnn")]["runtime"] / 2
    # attribution jobs hold features of every training point: more memory than training on the same data
    assert res[("attribute", "mnist", "ann-m")]["mem_mb"] > train[("mnist", "ann-m")]["mem_mb"]


def test_a_dry_run_plans_a_table_by_its_encoded_width(tmp_path):
    """The same rows, once with a code column read as numbers and once as a category of 2,000 values: the
    one-hot table's jobs ask for more memory (the cluster would otherwise refuse or kill them)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=20_000), "code": rng.integers(0, 2_000, 20_000),
                          "y": rng.choice(["a", "b"], 20_000)})
    frame.to_csv(tmp_path / "table.csv", index=False)
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["datasets"] = [{"name": name, "models": ["lr"],
                        "table": {"path": str(tmp_path / "table.csv"), "label": "y", **extra}}
                       for name, extra in (("narrow", {}), ("wide", {"categorical": ["code"]}))]
    cfg["pruning"].update(dataset="narrow", model="lr")
    cfg["noisy_labels"]["enabled"] = False
    (tmp_path / "tables.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / "tables.yaml"),
                           "--directory", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = _resources(proc.stdout + proc.stderr)
    narrow, wide = res[("train", "narrow", "lr")], res[("train", "wide", "lr")]
    assert narrow["mem_mb"] == jr.memory_mb(jr.parameters("lr", 2, 2), 16_000, 2)
    assert wide["mem_mb"] == jr.memory_mb(jr.parameters("lr", 2_001, 2), 16_000, 2_001) > narrow["mem_mb"]

"""The workflow on a real SLURM cluster: the smoke config run with the project's SLURM profile
(workflow/profiles/slurm) and the test cluster's override (tests/slurm/profile), through
snakemake-executor-plugin-slurm, against the one-node cluster of tests/slurm/cluster.sh:

    bash tests/slurm/cluster.sh start && pytest tests/test_slurm.py

Every model-touching job must run as a SLURM job (sbatch, its record kept by squeue for MinJobAge), the
small ones (data, aggregate, figure, retrain_gather) where snakemake runs, the tables must be the bytes of
a local run of the same config (timings aside), and a second run must have nothing to do. Skipped, with the
reason, where no such cluster answers (a failure instead with GGDA_SLURM_REQUIRED set, as .ci/run does once
it started the cluster). The local run goes on beside the SLURM one (which mostly waits on
the scheduler), so the test takes about as long as the SLURM run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess

import pytest
import yaml

from test_workflow import REPO, SNAKEMAKE, _env, copy_repo, snakemake

#: The command the README gives for the test cluster (the project's profile, then the override on top).
PROFILES = ["--profile", "workflow/profiles/slurm", "--workflow-profile", "tests/slurm/profile"]
CONFIG = ["--configfile", "config/smoke.yaml"]
#: Partition of the test cluster (tests/slurm/cluster.sh), named in tests/slurm/profile/config.yaml.
PARTITION = "debug"
#: Jobs that never go to the cluster (localrules in workflow/Snakefile; `all` does nothing).
LOCAL_RULES = {"data", "aggregate", "figure", "retrain_gather", "baselines_gather", "all"}
#: Rules that load a model (or its gradients): each of their jobs must be a SLURM job.
MODEL_RULES = {"train", "groups", "train_features", "target_features", "attribute", "attribute_pruning",
               "prune", "noisy_labels"}
#: One of each pair runs, after retrain.granularity (the slurm profile sets "seed").
RETRAIN_RULES = {"retrain", "retrain_seed"}
BASELINE_RULES = {"baselines", "baselines_seed"}
#: Set (by .ci/run, once it started the test cluster): the test must run, a reason to skip fails it instead.
REQUIRED = "GGDA_SLURM_REQUIRED"
#: What may differ between a SLURM run and a local run: the timings.
TIMING_TABLES = {"runtime.csv"}


def _cluster_problem() -> str | None:
    """Why the test cannot run here, or None."""
    if shutil.which("sinfo") is None:
        return "SLURM is not installed (no sinfo): start a test cluster with `bash tests/slurm/cluster.sh start`"
    try:
        proc = subprocess.run(["sinfo", "--noheader", "--partition", PARTITION, "--format", "%T"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if proc.returncode != 0:
        return (f"no SLURM controller answers (sinfo: {proc.stderr.strip()[:300]}): "
                "start the test cluster with `bash tests/slurm/cluster.sh start`")
    states = proc.stdout.split()
    if not states:
        return f"the SLURM cluster has no partition {PARTITION!r}: not the test cluster of tests/slurm/cluster.sh"
    if not {"idle", "mixed", "allocated", "completing"} & set(states):
        return f"no node of partition {PARTITION!r} takes jobs (sinfo states: {', '.join(states)})"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed: pip install -e '.[test]'"
    return None


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke config on the cluster, and the same config locally (the README's command) beside it."""
    problem = _cluster_problem()
    if problem and os.environ.get(REQUIRED):
        pytest.fail(f"{REQUIRED} is set (a cluster was started for this run), but: {problem}")
    if problem:
        pytest.skip(problem)
    root = tmp_path_factory.mktemp("slurm")
    cluster, local = copy_repo(root / "cluster"), copy_repo(root / "local")
    shutil.copytree(REPO / "tests/slurm", cluster / "tests/slurm")      # the override profile
    local_log = (root / "local.log").open("w")
    local_run = subprocess.Popen([*SNAKEMAKE, *CONFIG], cwd=local, env=_env(), stdout=local_log,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        out = snakemake(*PROFILES, *CONFIG, cwd=cluster, timeout=1800).output
        (root / "cluster.log").write_text(out)
    finally:
        try:
            local_run.wait(timeout=900)
        finally:
            if local_run.poll() is None:
                local_run.kill()
            local_log.close()
    assert local_run.returncode == 0, (root / "local.log").read_text()[-6000:]
    run_id = re.search(r"^SLURM run ID: (\S+)$", out, re.M)
    assert run_id, out[-3000:]
    return {"cluster": cluster, "local": local, "output": out, "run_id": run_id.group(1)}


def slurm_jobs(run_id: str) -> list[dict[str, str]]:
    """The SLURM jobs of one snakemake run (the plugin names every job after the run), finished ones too."""
    proc = subprocess.run(["squeue", "--states=all", "--noheader", "--name", run_id, "--format", "%i|%T|%k"],
                          capture_output=True, text=True, timeout=60, check=True)
    jobs = []
    for line in proc.stdout.splitlines():
        job_id, state, comment = line.strip().split("|", 2)
        rule = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment)    # the plugin's comment
        jobs.append({"id": job_id, "state": state, "comment": comment, "rule": rule.group(1) if rule else None})
    return jobs


def rules_run(output: str, kind: str) -> list[str]:
    """The rule of every job a run started: kind 'rule' (submitted) or 'localrule' (run in place)."""
    return re.findall(rf"^{kind} (\S+):$", output, re.M)


@pytest.mark.slurm
@pytest.mark.slow
def test_model_jobs_run_on_the_cluster_and_small_jobs_locally(runs):
    jobs = slurm_jobs(runs["run_id"])
    assert jobs, f"no SLURM job named {runs['run_id']}"
    assert [j for j in jobs if j["state"] != "COMPLETED"] == []
    on_cluster = sorted(j["rule"] for j in jobs)
    # every job snakemake submitted is a SLURM job, and no other
    assert on_cluster == sorted(rules_run(runs["output"], "rule"))
    assert MODEL_RULES <= set(on_cluster), MODEL_RULES - set(on_cluster)
    assert len(RETRAIN_RULES & set(on_cluster)) == 1 and len(BASELINE_RULES & set(on_cluster)) == 1, set(on_cluster)
    assert not LOCAL_RULES & set(on_cluster)
    local = set(rules_run(runs["output"], "localrule"))
    assert {"data", "aggregate", "figure"} <= local <= LOCAL_RULES, local
    # the plugin's log of every SLURM job (kept: slurm-keep-successful-logs in the override)
    logs = {p.stem for p in (runs["cluster"] / ".snakemake/slurm_logs").rglob("*.log")}
    assert {j["id"] for j in jobs} <= logs
    # model jobs asked for the (fake) GPU: the profile's config gpu=1 becomes --gpus=1
    train = next(j for j in jobs if j["rule"] == "train")
    record = subprocess.run(["scontrol", "show", "job", "--oneliner", train["id"]], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert re.search(r"TresPerJob=gres[:/]gpu[:=]1\b", record), record


@pytest.mark.slurm
@pytest.mark.slow
def test_tables_are_those_of_a_local_run(runs):
    cluster, local = runs["cluster"] / "results/tables", runs["local"] / "results/tables"
    names = sorted(p.name for p in local.glob("*.csv"))
    assert names == sorted(p.name for p in cluster.glob("*.csv")) and len(names) >= 6
    differ = [n for n in names if n not in TIMING_TABLES and (cluster / n).read_bytes() != (local / n).read_bytes()]
    assert not differ, f"tables differ between the SLURM and the local run: {differ}"


@pytest.mark.slurm
@pytest.mark.slow
def test_a_second_run_has_nothing_to_do(runs):
    out = snakemake("-n", *PROFILES, *CONFIG, cwd=runs["cluster"]).output
    assert "Nothing to be done" in out, out[-3000:]


def test_the_override_holds_only_what_differs_and_names_rules_of_the_workflow():
    """No cluster needed: the test cluster's profile leaves the executor and the config to the project's
    profile (so the cluster run is the project's), and any set-resources of it name rules that exist there."""
    override = yaml.safe_load((REPO / "tests/slurm/profile/config.yaml").read_text())
    project = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert not {"executor", "config", "jobs"} & set(override)
    assert override["slurm-status-command"] == "squeue"
    rules = set(snakemake("--list-rules", "--config", *project["config"], cwd=REPO).output.split())
    assert set(override.get("set-resources", {})) <= rules, set(override["set-resources"]) - rules

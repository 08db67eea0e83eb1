"""The Snakemake workflow: DAG of the paper config, schema errors, and the smoke config end to end (killed
half-way and restarted) with its rerun behaviour, report, notebook and a DVC round trip.

The smoke run (config/smoke.yaml, about 2 minutes on 2 CPU cores) happens once, in a temporary copy of
the repository, and every test of the second half reads that copy; dry runs change nothing in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
#: What a copy of the repository needs for the workflow (ggda is imported from the copy: PYTHONPATH).
COPY = ["workflow", "config", "ggda", "notebooks", "dvc.yaml", ".dvcignore", ".dvc"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def snakemake(*args, cwd, check=True, timeout=600):
    """Run snakemake in ``cwd``; returns the CompletedProcess (stdout and stderr merged)."""
    proc = subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    proc.output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.output[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """{rule: count} from a dry run's 'Job stats' table ({} when there is nothing to do)."""
    if "Nothing to be done" in output:
        return {}
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


def planned_jobs(output: str) -> list[tuple[str, dict[str, str]]]:
    """[(rule, wildcards)] of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", output):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        if not m:
            continue
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards))
    return jobs


def copy_repo(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tmp"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def write_config(folder: Path, name: str, base: str = "smoke.yaml", **changes) -> str:
    """A copy of config/<base> with top-level sections updated, saved as config/<name>; returns its path."""
    cfg = yaml.safe_load((folder / "config" / base).read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = folder / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path.relative_to(folder))


# --------------------------------------------------------------------------------------------- no data


def test_paper_config_builds_the_dag_without_data(tmp_path):
    out = snakemake("-n", "--configfile", str(REPO / "config" / "paper.yaml"), "--directory", str(tmp_path),
                    cwd=REPO).output
    counts = job_counts(out)
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    expected = 0
    for d in cfg["datasets"]:
        groupings = d.get("groupings", cfg["groupings"])
        expected += len(d["models"]) * sum(len(g.get("sizes", [1])) for g in groupings)
    assert counts["retrain"] == expected          # one retraining job per grouping and size
    assert counts["attribute"] == expected
    assert counts["data"] == len(cfg["datasets"]) + 2    # + the noisy and pruning views
    assert counts["train"] == sum(len(d["models"]) for d in cfg["datasets"]) * cfg["train"]["ensemble"] \
        + 2 * cfg["train"]["ensemble"]
    assert counts["figure"] == len(cfg["datasets"]) + 4
    assert not (tmp_path / "results").exists()


BAD_CONFIGS = [
    ({"retrain": {"seeds": 0}}, "retrain.seeds"),
    ({"retrain": {"seeds": "three"}}, "retrain.seeds"),
    ({"retrain": {"fractions": [0.1, 1.5]}}, "retrain.fractions[1]"),
    ({"retrain": {"fractions": [0.0, 0.2]}}, "retrain.fractions[0]"),
    ({"datasets": [{"name": "imagenet", "models": ["lr"]}]}, "datasets[0].name"),
    ({"datasets": [{"name": "digits", "models": ["gpt"]}]}, "datasets[0].models[0]"),
    ({"attribution": {"methods": ["if", "shapley"]}}, "attribution.methods[1]"),
    ({"groupings": [{"method": "spectral", "sizes": [4]}]}, "groupings[0].method"),
    ({"groupings": [{"method": "random", "sizes": [16, 0]}]}, "groupings[0].sizes[1]"),
    ({"groupings": [{"method": "random", "sizes": [-4]}]}, "groupings[0].sizes[0]"),
    ({"groupings": [{"method": "random"}]}, "groupings[0].sizes"),
    ({"threads": 1.5}, "threads"),
    ({"train": {"ensemble": 0}}, "train.ensemble"),
    ({"pruning": {"fractions": [1.2]}}, "pruning.fractions[0]"),
    ({"figures": {"removal": 0.3}}, "figures.removal"),
    ({"retrian": {"seeds": 3}}, "retrian"),
    ({"datasets": [{"name": "digits", "models": ["lr"], "hparams": {"lr": {"epochz": 3}}}]},
     "datasets[0].hparams.lr.epochz"),
    ({"attribution": {"targets": 0}}, "attribution.targets"),
    ({"attribution": {"options": {"trak": {"projection": "kronecker"}}}}, "attribution.options.trak.projection"),
    ({"groupings": [{"method": "random", "sizes": [4]}, {"method": "random", "sizes": [8]}]}, "groupings[1].name"),
    ({"groupings": [{"method": "random", "name": "Random 4", "sizes": [4]}]}, "groupings[0].name"),
    ({"groupings": [{"method": "random", "name": "random-4", "sizes": [4]}]}, "groupings[0].name"),
    ({"groupings": [{"method": "grad-kmeans", "sizes": [16], "options": {"gradients": "head"}}]},
     "groupings[0].options.gradients"),
    ({"groupings": [{"method": "random", "sizes": [4], "options": {"max_group_size": 8, "oversize": "reassign"}}]},
     "groupings[0].options.oversize"),
    ({"groupings": [{"method": "grad-kmeans", "sizes": [16], "options": {"max_group_size": 8, "oversize": "reassign"}}]},
     "groupings[0].options.max_group_size"),
    ({"grouping_options": {"gradient": "weights"}}, "grouping_options.gradient"),
    ({"lds": {"subsets": 2}}, "lds.subsets"),
]


@pytest.mark.parametrize("change,key", BAD_CONFIGS, ids=[k + f"-{i}" for i, (_, k) in enumerate(BAD_CONFIGS)])
def test_schema_rejects_bad_config_naming_the_key(tmp_path, change, key):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    for section, value in change.items():
        cfg[section] = {**cfg[section], **value} if isinstance(value, dict) and section in cfg else value
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path / "run"), cwd=REPO, check=False)
    assert proc.returncode != 0
    assert f"Invalid config: key '{key}'" in proc.output, proc.output[-3000:]
    assert proc.output.count("Invalid config") == 1
    assert "Building DAG" not in proc.output          # rejected before any job is planned


def test_the_old_grouping_key_still_reaches_the_jobs(tmp_path):
    """``grouping`` is the deprecated name of ``grouping_options``: accepted with a warning, merged over it."""
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["grouping"] = {"seed": 0}
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump(cfg))
    ok = snakemake("-n", "--configfile", str(old), "--directory", str(tmp_path / "ok"), cwd=REPO).output
    assert "Config key 'grouping' is deprecated: it is now 'grouping_options'" in ok
    cfg["grouping"] = {"max_group_size": 2, "oversize": "reassign"}  # its values are used: the check sees them
    old.write_text(yaml.safe_dump(cfg))
    bad = snakemake("-n", "--configfile", str(old), "--directory", str(tmp_path / "bad"), cwd=REPO, check=False)
    assert bad.returncode != 0 and "Invalid config: key 'grouping_options.max_group_size'" in bad.output


def test_grouping_study_config_builds_its_dag(tmp_path):
    out = snakemake("-n", "--configfile", str(REPO / "config" / "grouping_study.yaml"), "--directory", str(tmp_path),
                    cwd=REPO).output
    counts = job_counts(out)
    cfg = yaml.safe_load((REPO / "config" / "grouping_study.yaml").read_text())
    per_dataset = sum(len(g.get("sizes", [1])) for g in cfg["groupings"])
    expected = per_dataset * len(cfg["datasets"])
    assert counts["groups"] == counts["attribute"] == counts["retrain"] == counts["lds"] == expected
    assert counts["figure"] == len(cfg["datasets"]) + 3      # ablation per data set, removal-curves, tradeoff, lds
    names = {w["grouping"] for rule, w in planned_jobs(out) if rule == "groups"}
    assert {"grad-kmeans", "grad-kmeans-raw", "grad-kmeans-16d", "repr-kmeans-class"} <= names


def test_a_named_grouping_runs_its_own_options(tmp_path):
    folder = copy_repo(tmp_path / "repo")
    config = write_config(folder, "named.yaml", groupings=[
        {"method": "individual"},
        {"method": "kmeans", "sizes": [16]},
        {"name": "kmeans-class", "method": "kmeans", "options": {"within_class": True}, "sizes": [16]}])
    snakemake("--configfile", config, "--cores", "2", "results/breast_cancer/lr/groups/kmeans-16.npz",
              "results/breast_cancer/lr/groups/kmeans-class-16.npz", cwd=folder)
    from ggda.grouping import Groups

    plain = Groups.load(folder / "results/breast_cancer/lr/groups/kmeans-16.npz")
    named = Groups.load(folder / "results/breast_cancer/lr/groups/kmeans-class-16.npz")
    assert plain.method == named.method == "kmeans"
    assert not plain.within_class and named.within_class
    data = __import__("torch").load(folder / "results/breast_cancer/data/main.pt", weights_only=True)
    y = data["train"][-1].numpy()
    assert all(len(set(y[m])) == 1 for m in named.members)  # label-pure, as within_class promises
    assert any(len(set(y[m])) > 1 for m in plain.members)


def test_every_module_a_script_runs_is_an_input_of_its_rules(tmp_path):
    """Code dependencies come from the scripts' imports: the modules once missing from every rule
    (ggda/factored.py, workflow_io.py) are inputs now, and no rule depends on code it does not run."""
    out = snakemake("-n", "--configfile", "config/smoke.yaml", "--forceall", cwd=copy_repo(tmp_path / "repo")).output
    inputs = {}
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", out):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        found = re.search(r"^\s+input: (.*)$", block, re.M)
        if m and found:
            inputs.setdefault(m.group(1), set()).update(found.group(1).split(", "))
    assert "ggda/factored.py" in inputs["attribute"] and "ggda/factored.py" in inputs["target_features"]
    missing = [r for r, v in inputs.items() if r != "all" and "workflow/scripts/workflow_io.py" not in v]
    assert not missing, missing  # every script imports it
    assert "ggda/plots.py" in inputs["figure"] and not any("ggda/plots.py" in v for r, v in inputs.items()
                                                           if r != "figure")
    assert not any(f.startswith("ggda/evaluation/") for f in inputs["data"])  # validation_split is in ggda.data
    assert "ggda/grouping.py" not in inputs["train"] and "ggda/attribution/trak.py" not in inputs["retrain"]
    used = set().union(*inputs.values())
    unused = {str(p.relative_to(REPO)) for p in (REPO / "ggda").rglob("*.py")} - used
    # every library module reaches some rule: not the CLI, and LDS only with lds.enabled (off in smoke.yaml)
    assert unused <= {"ggda/cli.py", "ggda/evaluation/lds.py"}, unused


# --------------------------------------------------------------------------------------------- smoke run


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke run in a copy of the repository: killed (SIGKILL, process group) once the first attribution
    exists, then restarted (`snakemake --unlock`, then the same command) until complete."""
    folder = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    cmd = [*SNAKEMAKE, "--configfile", "config/smoke.yaml"]
    proc = subprocess.Popen(cmd, cwd=folder, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first = folder / "results/breast_cancer/lr/attr/tracin"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and not any(first.glob("*.npz")):
        time.sleep(0.5)
    killed_running = proc.poll() is None
    if killed_running:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = sorted(str(p.relative_to(folder)) for p in (folder / "results").rglob("*") if p.is_file())
    snakemake("--unlock", "--configfile", "config/smoke.yaml", cwd=folder)
    start = time.time()
    restart = snakemake("--configfile", "config/smoke.yaml", cwd=folder)
    return {"folder": folder, "killed_running": killed_running, "done_at_kill": done_at_kill,
            "restart": restart, "restart_s": time.time() - start}


def dry_run(smoke, *args, config="config/smoke.yaml"):
    return snakemake("-n", "--configfile", config, *args, cwd=smoke["folder"]).output


@pytest.mark.slow
def test_smoke_run_killed_half_way_restarts_and_completes(smoke):
    folder = smoke["folder"]
    assert smoke["killed_running"], "the run finished before it could be killed"
    assert any("/attr/" in p for p in smoke["done_at_kill"])
    assert not any(p.startswith("results/tables") for p in smoke["done_at_kill"])
    # no temporary or half-written file anywhere, and every table parses
    assert not [p for p in (folder / "results").rglob(".*.tmp")]
    for csv in (folder / "results").rglob("*.csv"):
        assert len(pd.read_csv(csv)) > 0, csv
    for js in (folder / "results").rglob("*.json"):
        json.loads(js.read_text())


@pytest.mark.slow
def test_smoke_run_writes_every_table_and_figure(smoke):
    folder = smoke["folder"]
    tables = {p.stem: pd.read_csv(p) for p in (folder / "results/tables").glob("*.csv")}
    assert set(tables) == {"retraining", "runtime", "training", "pruning", "noisy_labels", "noisy_retraining"}
    ret = tables["retraining"]
    assert set(ret["kind"]) == {"attribution", "random", "none"}
    att = ret[ret["kind"] == "attribution"]
    assert set(zip(att["grouping"], att["group_size"])) == {("individual", 1), ("grad-kmeans", 16)}
    assert sorted(att["seed"].unique()) == [0, 1] and sorted(att["fraction"].unique()) == [0.1, 0.2]
    rt = tables["runtime"]
    for col in ("grouping_s", "train_gradients_s", "target_gradients_s", "scoring_s", "total_s",
                "groups_k", "groups_min", "groups_median", "groups_max"):
        assert rt[col].notna().all(), col
    main = rt[rt["variant"] == "main"]     # speedup over individual attribution (none in the pruning runs)
    assert main["speedup"].notna().all() and (main.loc[main["grouping"] == "individual", "speedup"] == 1).all()
    assert (rt.loc[rt["grouping"] == "individual", "groups_max"] == 1).all()
    assert tables["noisy_labels"]["auroc"].between(0, 1).all()
    summary = json.loads((folder / "results/summary.json").read_text())
    assert "breast_cancer/lr/tracin/grad-kmeans-16" in summary["retraining"]
    for name in ("ablation-breast_cancer", "removal-curves", "tradeoff", "pruning", "noisy-labels"):
        assert (folder / f"results/figures/{name}.png").stat().st_size > 5000
        prov = json.loads((folder / f"results/figures/{name}.provenance.json").read_text())
        assert prov["config_hash"] and prov["inputs"] and prov["packages"]["torch"]
        for table, digest in prov["inputs"].items():
            assert len(digest) == 64 and table.startswith("results/tables/")


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(smoke):
    assert job_counts(dry_run(smoke)) == {}


@pytest.mark.slow
def test_changing_the_seed_count_reruns_only_retraining_aggregation_and_figures(smoke):
    config = write_config(smoke["folder"], "seeds.yaml", retrain={"seeds": 3})
    counts = job_counts(dry_run(smoke, config=config))
    assert set(counts) == {"retrain", "baselines", "aggregate", "figure", "all"}
    assert counts["retrain"] == 2 and counts["baselines"] == 1


@pytest.mark.slow
def test_changing_one_group_size_reruns_only_its_downstream_jobs(smoke):
    config = write_config(smoke["folder"], "size.yaml",
                          groupings=[{"method": "individual"}, {"method": "grad-kmeans", "sizes": [8]}])
    out = dry_run(smoke, config=config)
    jobs = planned_jobs(out)
    rules = {rule for rule, _ in jobs}
    assert rules == {"groups", "attribute", "retrain", "aggregate", "figure", "all"}, rules
    for rule, wc in jobs:
        if rule in ("groups", "attribute", "retrain"):
            assert (wc["grouping"], wc["size"]) == ("grad-kmeans", "8"), (rule, wc)
            assert "/" not in wc.get("variant", "")   # not the pruning or noisy-label experiments


CACHE_RULES = {"train_features", "target_features"}


@pytest.mark.slow
def test_the_cache_stage_ran_and_attributions_read_it(smoke):
    cache = smoke["folder"] / "results/breast_cancer/lr/cache"
    made = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.npz"))
    # IF: curvature and targets; TracIn (exact, no projection): targets only; TRAK (factored): both
    assert made == ["if/targets.npz", "if/train.npz", "tracin/targets.npz", "trak/targets.npz", "trak/train.npz"]
    timings = list((smoke["folder"] / "results/breast_cancer/lr/attr").rglob("*.timing.json"))
    assert len(timings) == 6
    for path in timings:
        timing = json.loads(path.read_text())["timing"]
        assert timing["cached_s"] > 0, path  # every attribution reused the cached features
        assert timing["training_s"] > 0, path  # and records the training time of its models


@pytest.mark.slow
def test_adding_a_grouping_reruns_no_cache_job(smoke):
    config = write_config(smoke["folder"], "more.yaml", groupings=[
        {"method": "individual"}, {"method": "grad-kmeans", "sizes": [16]}, {"method": "random", "sizes": [16]}])
    counts = job_counts(dry_run(smoke, config=config))
    assert counts["attribute"] == 1 and not CACHE_RULES & set(counts), counts


@pytest.mark.slow
def test_changing_the_targets_reruns_the_target_side_not_the_training_side(smoke):
    config = write_config(smoke["folder"], "targets.yaml", attribution={"targets": 50})
    jobs = planned_jobs(dry_run(smoke, config=config))
    rules = {rule for rule, _ in jobs}
    assert "target_features" in rules and not {"train_features", "train", "groups", "data"} & rules, rules
    assert sorted(wc["method"] for rule, wc in jobs if rule == "target_features") == ["if", "tracin", "trak"]


@pytest.mark.slow
def test_changing_proj_dim_reruns_that_methods_features_only(smoke):
    options = {"tracin": {"projection": "auto"}, "trak": {"proj_dim": 8, "projection": "auto"}}
    config = write_config(smoke["folder"], "proj.yaml", attribution={"options": options})
    jobs = planned_jobs(dry_run(smoke, config=config))
    cache_jobs = sorted((rule, wc["method"]) for rule, wc in jobs if rule in CACHE_RULES)
    assert cache_jobs == [("target_features", "trak"), ("train_features", "trak")], cache_jobs
    assert not {"train", "groups"} & {rule for rule, _ in jobs}


def test_changing_a_scoring_option_reruns_attributions_not_features(smoke):
    """TRAK's kernel never changes its features; its relative damping does with projection auto (which picks
    dense or factored by it), and so does its deprecated name damping."""
    def planned(**trak):
        options = {"tracin": {"projection": "auto"}, "trak": {"proj_dim": 16, "projection": "auto", **trak}}
        config = write_config(smoke["folder"], "scoring.yaml", attribution={"options": options})
        return planned_jobs(dry_run(smoke, config=config))

    kernel = planned(kernel="groups-unscaled")
    assert "attribute" in {rule for rule, _ in kernel} and not CACHE_RULES & {rule for rule, _ in kernel}
    for damping in ({"relative_damping": 0.5}, {"damping": 0.5}):
        cache = sorted((rule, wc["method"]) for rule, wc in planned(**damping) if rule in CACHE_RULES)
        assert ("target_features", "trak") in cache and ("train_features", "trak") in cache, (damping, cache)
        assert {method for _, method in cache} == {"trak"}


class edited:
    """Append a comment to a source file (an edit Snakemake sees: newer and a different checksum), and put
    the file back, bytes and times, afterwards."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.stat, self.text = self.path.stat(), self.path.read_bytes()
        self.path.write_bytes(self.text + b"\n# edited by a test\n")
        os.utime(self.path, (time.time() + 2, time.time() + 2))
        return self.path

    def __exit__(self, *exc):
        self.path.write_bytes(self.text)
        os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))


@pytest.mark.slow
def test_editing_plots_reruns_only_the_figures(smoke):
    with edited(smoke["folder"] / "ggda" / "plots.py"):
        counts = job_counts(dry_run(smoke))
    assert set(counts) == {"figure", "all"}
    assert counts["figure"] == 5
    assert job_counts(dry_run(smoke)) == {}       # back as it was


@pytest.mark.slow
def test_editing_grouping_reruns_grouping_and_what_follows_only(smoke):
    with edited(smoke["folder"] / "ggda" / "grouping.py"):
        counts = job_counts(dry_run(smoke))
    assert {"groups", "attribute", "retrain", "aggregate", "figure"} <= set(counts)
    assert not {"data", "train", "baselines"} & set(counts)


def dag_jobs(output: str) -> dict[tuple, tuple[set[str], set[str]]]:
    """{(rule, wildcards): (inputs, outputs)} of every job a dry run lists."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \S+:\n)", output):
        m = re.match(r"(?:local)?rule (\S+):\n", block)
        if not m:
            continue
        found = {k: re.search(rf"^\s+{k}: (.*)$", block, re.M) for k in ("input", "output", "wildcards")}
        inputs, outputs = ({x for x in found[k].group(1).split(", ")} if found[k] else set() for k in ("input", "output"))
        jobs[(m.group(1), found["wildcards"].group(1) if found["wildcards"] else "")] = (inputs, outputs)
    return jobs


def job_keys(output: str) -> set[tuple]:
    return {(rule, ", ".join(f"{k}={v}" for k, v in wc.items())) for rule, wc in planned_jobs(output)}


@pytest.mark.slow
def test_editing_any_module_reruns_exactly_the_jobs_that_run_it_and_what_follows(smoke):
    """For every ggda/ and workflow helper module: the dry run after an edit plans the jobs whose code
    inputs hold it, and the jobs downstream of them, and no other job."""
    folder = smoke["folder"]
    dag = dag_jobs(dry_run(smoke, "--forceall"))
    modules = sorted({f for inputs, _ in dag.values() for f in inputs if f.endswith(".py")})
    assert "ggda/factored.py" in modules and "workflow/scripts/workflow_io.py" in modules and len(modules) > 25
    wrong = {}
    for module in modules:
        expected = {job for job, (inputs, _) in dag.items() if module in inputs}
        while True:   # and everything downstream
            made = set().union(*(dag[j][1] for j in expected))
            more = {job for job, (inputs, _) in dag.items() if inputs & made} - expected
            if not more:
                break
            expected |= more
        with edited(folder / module):
            planned = job_keys(dry_run(smoke))
        if planned != expected:
            wrong[module] = {"missing": sorted(expected - planned)[:3], "extra": sorted(planned - expected)[:3]}
    assert not wrong, wrong
    assert job_counts(dry_run(smoke)) == {}


@pytest.mark.slow
def test_report_holds_every_figure(smoke):
    snakemake("--configfile", "config/smoke.yaml", "--report", "report.html", cwd=smoke["folder"])
    html = (smoke["folder"] / "report.html").read_text(errors="replace")
    assert len(html) > 100_000
    for name in ("ablation-breast_cancer", "removal-curves", "tradeoff", "pruning", "noisy-labels"):
        assert name in html
    for caption in ("Grouping ablation on breast_cancer", "Removal curves",
                    "Efficiency-fidelity trade-off", "Dataset pruning", "Noisy-label detection"):
        assert caption in html


@pytest.mark.slow
def test_results_notebook_runs_on_the_smoke_output(smoke):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra: pip install -e '.[notebooks]'")
    notebooks = smoke["folder"] / "notebooks"
    nb = nbformat.read(notebooks / "results.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(notebooks)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5


#: What may differ between two identical runs: the timings (the jobs' .timing.json sidecars, the runtime
#: table they make, Snakemake's benchmarks) and the figures (some show times). Everything else is the same bytes.
RUN_TO_RUN = ("*.timing.json", "tables/runtime.csv")


@pytest.mark.slow
def test_a_second_run_makes_the_same_bytes(smoke, tmp_path):
    """The smoke config run again in a fresh copy: every result file is byte-identical, timings aside."""
    second = copy_repo(tmp_path / "repo")
    snakemake("--configfile", "config/smoke.yaml", cwd=second)
    first_root, second_root = smoke["folder"] / "results", second / "results"
    files = sorted(p.relative_to(first_root) for p in first_root.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second_root) for p in second_root.rglob("*") if p.is_file())
    compared = [f for f in files if f.parts[0] not in ("benchmarks", "figures")
                and not any(f.match(pattern) for pattern in RUN_TO_RUN)]
    assert len(compared) > 40 and {".pt", ".npz", ".csv", ".json"} <= {f.suffix for f in compared}
    differ = [str(f) for f in compared if (first_root / f).read_bytes() != (second_root / f).read_bytes()]
    assert not differ, f"{len(differ)} of {len(compared)} files differ between identical runs: {differ[:10]}"
    # the timings did go somewhere: every evaluation's rows have their sidecar
    assert all((first_root / f).with_suffix(".timing.json").is_file() for f in compared
               if f.suffix == ".csv" and "/retrain/" in f"/{f}")


@pytest.mark.slow
def test_dvc_round_trip_restores_results_with_nothing_to_rerun(smoke, tmp_path):
    """dvc commit + push to a local remote, then a fresh clone: dvc pull, snakemake --touch, snakemake -n."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    folder = smoke["folder"]
    dvc = [sys.executable, "-m", "dvc"]
    git_env = _env(GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.invalid", GIT_COMMITTER_NAME="ci",
                   GIT_COMMITTER_EMAIL="ci@example.invalid")

    def run(cmd, cwd):
        proc = subprocess.run(cmd, cwd=cwd, env=git_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    work = tmp_path / "work"
    shutil.copytree(folder, work, symlinks=True, ignore=shutil.ignore_patterns(".snakemake", "logs", "report.html"))
    (work / ".gitignore").write_text("/results\n/logs\n/.snakemake\n__pycache__/\n")
    run(["git", "init", "-q"], work)
    run([*dvc, "remote", "add", "-d", "store", str(tmp_path / "remote")], work)
    run([*dvc, "commit", "-f", "-q", "workflow"], work)   # record the smoke outputs as the stage's outs
    run([*dvc, "push", "-q"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-q", "-m", "results"], work)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(work), str(clone)], tmp_path)
    assert not (clone / "results").exists()
    run([*dvc, "pull", "-q"], clone)
    assert (clone / "results/tables/retraining.csv").read_bytes() == \
        (folder / "results/tables/retraining.csv").read_bytes()
    snakemake("--touch", "--configfile", "config/smoke.yaml", cwd=clone)
    assert job_counts(snakemake("-n", "--configfile", "config/smoke.yaml", cwd=clone).output) == {}
    snakemake("--configfile", "config/smoke.yaml", cwd=clone)  # a second run: nothing to do, nothing changed
    assert "up to date" in run([*dvc, "status"], clone)


@pytest.mark.slow
def test_retraining_one_job_per_seed_makes_the_same_bytes(smoke, tmp_path):
    """retrain.granularity seed (clusters) splits every grouping's retraining into one job per method and
    seed, and the baselines into one job per seed, and gathers the rows: the same files, byte for byte, as
    one job per grouping (and one baselines job per model)."""
    folder = copy_repo(tmp_path / "repo")
    shutil.copytree(smoke["folder"] / "results", folder / "results")   # mtimes kept: only retraining reruns
    config = write_config(folder, "seedjobs.yaml", retrain={"granularity": "seed"})
    out = snakemake("--configfile", config, "--forcerun", "retrain_seed", "baselines_seed", cwd=folder).output
    counts = job_counts(out)
    n_attributions = 3 * 2          # methods x (individual, grad-kmeans-16) in smoke.yaml
    assert counts["retrain_seed"] == 2 * n_attributions and counts["retrain_gather"] == n_attributions
    assert counts["baselines_seed"] == 2 and counts["baselines_gather"] == 1   # 2 seeds in smoke.yaml
    assert not {"retrain", "baselines", "attribute", "train"} & set(counts)
    first = smoke["folder"] / "results"
    rows = sorted(p.relative_to(first) for p in (first / "breast_cancer/lr/retrain").rglob("*.csv"))
    assert len(rows) == n_attributions + 1   # and the baselines
    differ = [str(f) for f in [*rows, Path("tables/retraining.csv")]
              if (first / f).read_bytes() != (folder / "results" / f).read_bytes()]
    assert not differ, differ
    assert job_counts(snakemake("-n", "--configfile", config, cwd=folder).output) == {}


def test_the_slurm_profile_runs_retraining_one_job_per_seed(tmp_path):
    """The cluster profile's config switches retraining to per-seed jobs: a dry run of the paper's config
    with the profile's config entries plans retrain_seed jobs (methods x seeds per grouping) and no
    retrain job. (The executor itself is tested against a real SLURM elsewhere.)"""
    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert any(str(c).startswith("retrain=") and "seed" in str(c) for c in profile["config"]), profile["config"]
    out = snakemake("-n", "--configfile", str(REPO / "config/paper.yaml"), "--directory", str(tmp_path),
                    "--config", *profile["config"], cwd=REPO).output
    counts = job_counts(out)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert "retrain" not in counts and "baselines" not in counts
    assert counts["retrain_seed"] == counts["retrain_gather"] * paper["retrain"]["seeds"]
    assert counts["baselines_seed"] == counts["baselines_gather"] * paper["retrain"]["seeds"]


#: One damaged file of each kind (a prepared data set, a checkpoint, groups, cached features, scores, the
#: rows of an evaluation, a table), truncated to half its size; and a retraining CSV that a failed job left
#: deleted.
DAMAGED = {
    "results/breast_cancer/data/noisy.pt": "data",
    "results/breast_cancer/lr/pruning/train/seed0/checkpoints/ckpt-0.pt": "train",
    "results/breast_cancer/lr/groups/grad-kmeans-16.npz": "groups",
    "results/breast_cancer/lr/cache/if/targets.npz": "target_features",
    "results/breast_cancer/lr/attr/trak/individual-1.npz": "attribute",
    "results/breast_cancer/lr/retrain/baselines.csv": "baselines",
    "results/tables/retraining.csv": "aggregate",
}
DELETED = "results/breast_cancer/lr/retrain/tracin/individual-1.csv"


@pytest.mark.slow
def test_damaged_results_are_rebuilt_by_the_main_command(smoke):
    folder = smoke["folder"]
    original = {f: (folder / f).read_bytes() for f in [*DAMAGED, DELETED]}
    for f in DAMAGED:
        with open(folder / f, "r+b") as fh:
            fh.truncate(len(original[f]) // 2)
    (folder / DELETED).unlink()
    out = dry_run(smoke)
    rules = {rule for rule, _ in planned_jobs(out)}
    for f, rule in DAMAGED.items():
        name = str(Path(f).parent) if "/checkpoints/" in f else f   # a directory output is named as a whole
        assert re.search(rf"{re.escape(name)} no longer matches what rule {rule} wrote", out), f
        assert rule in rules, (f, rule)
    assert {"retrain", "aggregate", "figure"} <= rules
    snakemake("--configfile", "config/smoke.yaml", cwd=folder)   # the README's command (smoke config)
    rebuilt = {f: (folder / f).read_bytes() for f in original}
    assert [f for f in original if rebuilt[f] != original[f]] == []   # the same bytes as before the damage
    assert job_counts(dry_run(smoke)) == {}


def test_profiles_name_existing_rules_and_the_main_command_settings():
    rules = set(snakemake("--list-rules", cwd=REPO).output.split())
    default = yaml.safe_load((REPO / "workflow/profiles/default/config.yaml").read_text())
    assert default["cores"] == "all" and "gpu=1" in default["resources"] and default["rerun-incomplete"]
    slurm = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    assert slurm["executor"] == "slurm" and "gpu=1" in slurm["config"]
    rules |= set(snakemake("--list-rules", "--config", *slurm["config"], cwd=REPO).output.split())  # its own rules
    assert set(slurm.get("set-resources", {})) <= rules, set(slurm["set-resources"]) - rules
    # memory and run time come from the rules, scaled per job (tests/test_job_resources.py), not the profile
    assert "set-resources" not in slurm


def test_limit_threads_holds_every_pool_of_a_job(tmp_path):
    # in a fresh process (the pools of this one are left alone): scikit-learn's OpenMP and numpy's BLAS,
    # loaded before and after the call, and torch, all at the job's thread count
    script = tmp_path / "probe.py"
    script.write_text(
        "import sys, json\n"
        f"sys.path.insert(0, {str(REPO / 'workflow' / 'scripts')!r})\n"
        "import numpy\n"
        "import workflow_io\n"
        "workflow_io.limit_threads(1)\n"
        "import sklearn.cluster, torch\n"
        "from threadpoolctl import threadpool_info\n"
        "print(json.dumps({'pools': [(p['user_api'], p['num_threads']) for p in threadpool_info()],"
        " 'torch': torch.get_num_threads()}))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    apis = {api for api, _ in out["pools"]}
    assert {"openmp", "blas"} <= apis
    assert all(n == 1 for _, n in out["pools"]), out
    assert out["torch"] == 1

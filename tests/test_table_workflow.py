"""The workflow on a table of one's own: a CSV written here (a categorical column, missing values), named
in the config's datasets with a table block, run end to end to the figures."""

import json

import pandas as pd
import pytest
import yaml

from test_table import clinic
from test_workflow import REPO, snakemake


@pytest.mark.slow
def test_the_workflow_runs_on_a_csv_of_ones_own(tmp_path):
    clinic(400).to_csv(tmp_path / "clinic.csv", index=False)
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["datasets"] = [{"name": "clinic", "models": ["lr"],
                        "table": {"path": str(tmp_path / "clinic.csv"), "label": "outcome"}}]
    cfg["pruning"].update(dataset="clinic", model="lr")
    cfg["noisy_labels"]["enabled"] = False
    (tmp_path / "clinic.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    snakemake("--cores", "2", "--configfile", str(tmp_path / "clinic.yaml"), "--directory", str(run), cwd=REPO,
              timeout=1200)
    meta = json.loads((run / "results/clinic/data/main.json").read_text())
    assert meta["n_train"] == 320 and meta["n_test"] == 80
    assert meta["meta"]["categorical"] == ["city", "smoker"] and meta["meta"]["kind"] == "tabular"
    retraining = pd.read_csv(run / "results/tables/retraining.csv")
    assert set(retraining["dataset"]) == {"clinic"} and set(retraining["method"].dropna()) == {"if", "tracin", "trak"}
    for name in ("ablation-clinic", "removal-curves", "tradeoff", "pruning"):
        assert (run / f"results/figures/{name}.png").stat().st_size > 1000, name
    # the table is an input of its data job: editing it reruns everything that follows from it
    frame = pd.read_csv(tmp_path / "clinic.csv")
    frame.loc[0, "age"] += 1
    frame.to_csv(tmp_path / "clinic.csv", index=False)
    out = snakemake("-n", "--cores", "2", "--configfile", str(tmp_path / "clinic.yaml"), "--directory", str(run),
                    cwd=REPO).output
    assert "rule data:" in out and "rule train:" in out, out[-3000:]


def test_a_table_with_a_missing_file_is_rejected_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg["datasets"] = [{"name": "clinic", "models": ["lr"], "table": {"path": "absent.csv", "label": "y"}}]
    cfg["pruning"]["enabled"] = cfg["noisy_labels"]["enabled"] = False
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"), "--directory", str(tmp_path), cwd=REPO,
                     check=False)
    assert proc.returncode != 0 and "Invalid config: key 'datasets[0].table.path'" in proc.output, proc.output[-3000:]

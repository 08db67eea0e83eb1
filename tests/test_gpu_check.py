"""benchmarks/gpu_check.sh, the device check, run on the CPU (--device cpu) so that it keeps working
between sessions that have a GPU: every step completes and the summary holds what a GPU run reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHON": sys.executable}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--out", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["peak_gpu_memory_mb"] is None
    assert summary["smoke_s"] > 0 and summary["speedup_rows"] > 0
    assert all(summary["bitwise_identical"].values()), summary["max_rel_diff"]   # same CPU, same bytes
    speed = pd.read_csv(tmp_path / "speedup.csv")
    assert {"dense", "factored"} <= set(speed["projection"]) and (speed["total_s"] > 0).all()
    assert len(pd.read_csv(tmp_path / "smoke_retraining.csv")) > 0

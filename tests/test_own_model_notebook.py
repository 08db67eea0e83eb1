"""notebooks/own_model.ipynb, the walk-through for a practitioner's own model and data, runs top to bottom
in a fresh kernel and reaches its result: every method's group attribution agrees with its individual one
better on the grad-kmeans groups than on random groups, and the retraining check has its three kinds."""

import json
import math
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "own_model.ipynb"


def _stream_text(nb) -> str:
    return "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_the_notebook_is_stored_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_own_model_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient", reason="needs the notebooks extra: pip install -e '.[notebooks]'")
    shutil.copy(NOTEBOOK, tmp_path / NOTEBOOK.name)
    nb = nbformat.read(tmp_path / NOTEBOOK.name, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = _stream_text(nb)
    assert "head: 'out'" in text                       # the notebook's own head layer was found
    lines = [line for line in text.splitlines() if line.startswith("{\"methods\"")]
    assert len(lines) == 1, text[-2000:]
    result = json.loads(lines[0])
    assert result["methods"] == ["if", "tracin", "trak"]
    # grad-kmeans groups each of the two classes apart: sum over classes of ceil(n_c / 16)
    assert math.ceil(455 / 16) <= result["groups"] <= math.ceil(455 / 16) + 1
    for method in result["methods"]:
        grad, rand = result["fidelity_median"][method], result["fidelity_median_random"][method]
        assert -1 <= rand <= 1 and -1 <= grad <= 1
        assert grad > rand, (method, grad, rand)
    retraining = result["retraining"]
    assert list(retraining) == ["none", "attribution", "random"]
    assert all(0 <= r["accuracy_mean"] <= 1 and math.isfinite(r["loss_mean"]) for r in retraining.values())
    # the rendered tables are there too
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "fidelity_median" in html and "accuracy_mean" in html

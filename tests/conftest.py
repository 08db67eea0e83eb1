import os
from pathlib import Path

import pytest

#: Real data files (MNIST IDX, QNLI dev split, CIFAR-10 sample) shipped beside the repository.
#: $GGDA_SHARED_DATA, else the shared/data folder kept beside the repository.
SHARED_DATA = Path(os.environ.get("GGDA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data files not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def digits():
    """The bundled digits data set, loaded once (tests must not modify it)."""
    import ggda.data

    return ggda.data.load("digits")


@pytest.fixture(scope="session")
def cancer():
    """The bundled breast_cancer data set, loaded once (tests must not modify it)."""
    import ggda.data

    return ggda.data.load("breast_cancer")


@pytest.fixture(scope="session")
def small_qnli(tmp_path_factory, shared_data):
    """100 real QNLI training pairs and 5 test pairs (from the shared dev split), 24 tokens."""
    pytest.importorskip("transformers")
    import ggda.data

    lines = (shared_data / "qnli" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    root = tmp_path_factory.mktemp("qnli")
    (root / "train.tsv").write_text("".join(lines[:101]), encoding="utf-8")
    (root / "dev.tsv").write_text("".join(lines[:1] + lines[2000:2006]), encoding="utf-8")
    return ggda.data.load("qnli", root=root, download=False, max_length=24)

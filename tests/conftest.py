import os
from pathlib import Path

import pytest

#: Optional real data files, not part of the repository: the folder named by $GGDA_SHARED_DATA, holding
#: mnist/ (the IDX files of the first 10,000 training images, the test set, and
#: train-labels-idx1-ubyte.full60k.gz), qnli/dev.tsv (GLUE QNLI) and cifar10-sample/test20.npz.
#: Unset (None), the tests that need them are skipped.
SHARED_DATA_ENV = "GGDA_SHARED_DATA"
SHARED_DATA = Path(os.environ[SHARED_DATA_ENV]) if os.environ.get(SHARED_DATA_ENV) else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip(f"real data files not available: set {SHARED_DATA_ENV} to the folder that holds them")
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data files not found: {SHARED_DATA_ENV}={SHARED_DATA} is not a folder")
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
    """100 real QNLI training pairs and 5 test pairs (from the dev split under $GGDA_SHARED_DATA), 24 tokens."""
    pytest.importorskip("transformers")
    import ggda.data

    lines = (shared_data / "qnli" / "dev.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    root = tmp_path_factory.mktemp("qnli")
    (root / "train.tsv").write_text("".join(lines[:101]), encoding="utf-8")
    (root / "dev.tsv").write_text("".join(lines[:1] + lines[2000:2006]), encoding="utf-8")
    return ggda.data.load("qnli", root=root, download=False, max_length=24)

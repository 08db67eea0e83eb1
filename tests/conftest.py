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

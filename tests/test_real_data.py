"""Parsers and fetch_* functions on real data files: the folder named by $GGDA_SHARED_DATA (layout in
tests/conftest.py); every test here is skipped when it is unset.

The folder is read-only by intent (and may be writable to root), so these tests check that a fetch
of present files writes nothing there.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _archives import cifar_tar_gz

from ggda.data import sources
from ggda.data.errors import FormatError
from ggda.data.parsers import read_qnli

# The folder named by $GGDA_SHARED_DATA (None when unset: need() then skips before any path is used)
DATA_ENV = "GGDA_SHARED_DATA"
DATA = Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None
_ROOT = DATA if DATA is not None else Path(DATA_ENV)  # a placeholder, never read when unset
MNIST = _ROOT / "mnist"
QNLI_DEV = _ROOT / "qnli" / "dev.tsv"
CIFAR_SAMPLE = _ROOT / "cifar10-sample" / "test20.npz"

MNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def need(path: Path) -> Path:
    if DATA is None:
        pytest.skip(f"real data files not available: set {DATA_ENV} to the folder that holds them")
    if not path.exists():
        pytest.skip(f"real data file {path} not found (under {DATA_ENV}={DATA})")
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_fetch_mnist_real_files_in_place():
    need(MNIST)
    before = snapshot(MNIST)
    # download=True must still not touch the network or the folder: the files are present.
    raw = sources.fetch_mnist(MNIST, download=True, progress=False)
    assert snapshot(MNIST) == before

    assert raw.x_train.shape == (10_000, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (10_000, 1, 28, 28)
    assert raw.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert raw.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(raw.y_train, minlength=10).tolist() == [
        1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    assert np.bincount(raw.y_test, minlength=10).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    files = raw.meta["files"]
    assert files["t10k-images-idx3-ubyte.gz"]["checksum_verified"] is True
    assert files["t10k-labels-idx1-ubyte.gz"]["checksum_verified"] is True
    # The 10,000-image training subset fails the official md5 by design.
    assert files["train-images-idx3-ubyte.gz"]["checksum_verified"] is False
    assert files["train-labels-idx1-ubyte.gz"]["checksum_verified"] is False
    assert files["t10k-images-idx3-ubyte.gz"]["sha256"] == (
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6")
    # Background 0, ink up to 255.
    assert raw.x_train.min() == 0 and raw.x_train.max() == 255


def test_fetch_mnist_rejects_mismatched_real_labels(tmp_path):
    """The full 60,000-label file next to the 10,000-image subset is caught, not silently paired."""
    need(MNIST)
    for name in MNIST_FILES:
        (tmp_path / name).symlink_to(MNIST / name)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte.gz").symlink_to(
        need(MNIST / "train-labels-idx1-ubyte.full60k.gz"))
    with pytest.raises(FormatError, match="10000 images.*60000 labels"):
        sources.fetch_mnist(tmp_path, download=False)


def test_read_qnli_real_dev():
    df = read_qnli(need(QNLI_DEV))
    assert len(df) == 5_463
    assert int((df.label == 0).sum()) == 2_702 and int((df.label == 1).sum()) == 2_761
    assert df.question[0] == "What came into force after the new constitution was herald?"
    assert df.sentence[0] == ("As of that day, the new constitution heralding the Second Republic "
                              "came into force.")
    assert df["index"].tolist() == list(range(5_463))
    assert sum(s.count('"') for s in [*df.question, *df.sentence]) == 1_525


def test_fetch_qnli_real_tsv_root(tmp_path):
    lines = need(QNLI_DEV).read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "train.tsv").write_text("".join(lines[:501]), encoding="utf-8")  # header + 500
    (tmp_path / "dev.tsv").symlink_to(QNLI_DEV)
    raw = sources.fetch_qnli(tmp_path, download=False)
    assert len(raw.x_train) == 500 and len(raw.x_test) == 5_463
    assert raw.x_test[0][0] == "What came into force after the new constitution was herald?"
    assert raw.y_test.dtype == np.int64 and raw.y_test[0] == 0  # entailment
    assert raw.y_train.tolist() == raw.y_test[:500].tolist()
    assert raw.class_names == ["entailment", "not_entailment"]
    assert raw.meta["files"]["dev.tsv"]["checksum_verified"] is None
    assert raw.meta["files"]["dev.tsv"]["sha256"] == (
        "763e95932dd3578251de71582e06829015f9c3815a518c751dc537219b159de4")


def test_fetch_cifar10_real_images_channel_order(tmp_path):
    """A tarball in the official layout built from 20 real test images (HWC in the .npz)."""
    sample = np.load(need(CIFAR_SAMPLE))
    images, labels = sample["images"], sample["labels"]
    rows = images.transpose(0, 3, 1, 2).reshape(20, 3072)  # official rows: all R, then G, then B

    def batch(i: slice) -> bytes:
        return pickle.dumps({b"data": rows[i], b"labels": labels[i].tolist()}, protocol=2)

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    members = {f"data_batch_{k + 1}": batch(slice(4 * k, 4 * k + 4)) for k in range(5)}
    members["test_batch"] = batch(slice(0, 20))
    members["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in names]}, protocol=2)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(cifar_tar_gz(members))

    raw = sources.fetch_cifar10(tmp_path, download=False)
    assert raw.x_test.shape == (20, 3, 32, 32) and raw.x_train.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(raw.x_test.transpose(0, 2, 3, 1), images)
    assert raw.y_test.tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    assert [raw.class_names[c] for c in raw.y_test[:4]] == ["cat", "ship", "ship", "airplane"]
    assert raw.meta["files"]["cifar-10-python.tar.gz"]["checksum_verified"] is False


def test_load_qnli_through_root_gives_token_ids_and_masks(tmp_path):
    """ggda.data.load on real QNLI text: items are (input_ids, attention_mask, label)."""
    import torch

    import ggda.data as gdata

    lines = need(QNLI_DEV).read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "train.tsv").write_text("".join(lines[:301]), encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("".join(lines), encoding="utf-8")
    bundle = gdata.load("qnli", root=tmp_path, download=False, n_test=100, max_length=32)
    assert (len(bundle.train), len(bundle.test)) == (300, 100)
    ids, mask, label = bundle.train[0]
    assert ids.shape == mask.shape == (32,) and ids.dtype == mask.dtype == torch.int64
    assert label.item() == 0  # the first dev row is "entailment"
    assert bundle.meta["vocab_size"] > 100 and bundle.meta["tokenizer"] == "word"
    assert mask.sum() >= 10


def test_tiny_bert_trains_on_real_qnli(tmp_path):
    """The text path end to end: real pairs -> word ids -> tiny random BERT -> fit with checkpoints."""
    pytest.importorskip("transformers")
    import ggda.data as gdata
    from ggda import train

    lines = need(QNLI_DEV).read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "train.tsv").write_text("".join(lines[:201]), encoding="utf-8")
    (tmp_path / "dev.tsv").write_text("".join(lines[:1] + lines[1000:1101]), encoding="utf-8")
    bundle = gdata.load("qnli", root=tmp_path, download=False, max_length=32)
    run = train.fit("bert", bundle, {"epochs": 2}, seed=0, checkpoints=2, progress=False)
    assert len(run.checkpoints) == 2 and run.checkpoints[0].step == 7  # ceil(200 / 32) steps per epoch
    import torch

    from ggda import models

    torch.manual_seed(0)
    untrained = models.build("bert", bundle.meta)
    assert run.metrics["train_loss"] < train.evaluate(untrained, bundle.train)["loss"]

"""Downloads, parsers and fetch_* functions against a local HTTP server on 127.0.0.1.

The server serves small files the tests generate in each published format; no real network is used.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _archives import cifar_tar_gz
from _http import Server, dead_url, no_backoff, send, server  # noqa: F401 (fixtures)

from ggda.data import download as dl
from ggda.data import sources
from ggda.data.download import download, md5sum, sha256sum
from ggda.data.errors import ChecksumError, DataError, DownloadError, FormatError
from ggda.data.parsers import read_cifar10_tarball, read_heloc, read_idx, read_qnli

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


# ------------------------------------------------------------------------------ file generators


def idx_bytes(arr: np.ndarray, compress: bool = True) -> bytes:
    """IDX encoding of a uint8 array (magic 0x0803 for 3-D images, 0x0801 for 1-D labels)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    return gzip.compress(raw) if compress else raw


def make_mnist(n_train: int = 30, n_test: int = 10, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    return {name: idx_bytes(a) for name, a in arrays.items()}


def cifar_batch_pickle(data: np.ndarray, labels: list[int], old_numpy_names: bool = False) -> bytes:
    """A CIFAR python batch; `old_numpy_names` mimics the published files (numpy.core globals)."""
    blob = pickle.dumps({b"batch_label": b"test batch", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)
    if old_numpy_names:
        # Protocol 2 names globals as text lines, so the module can be renamed in place.
        assert b"numpy._core.multiarray" in blob
        blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return blob


def make_cifar(rows_per_batch: int = 4, n_test: int = 6, seed: int = 0) -> tuple[bytes, dict]:
    """A tiny cifar-10-python.tar.gz, and the arrays it holds."""
    rng = np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    xs, ys = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (rows_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, rows_per_batch)]
        members[f"data_batch_{i}"] = cifar_batch_pickle(data, labels)
        xs.append(data)
        ys.extend(labels)
    test_data = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_labels = [int(v) for v in rng.integers(0, 10, n_test)]
    members["test_batch"] = cifar_batch_pickle(test_data, test_labels, old_numpy_names=True)
    members["batches.meta"] = pickle.dumps(
        {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": rows_per_batch,
         b"num_vis": 3072}, protocol=2)
    arrays = {"x_train": np.concatenate(xs).reshape(-1, 3, 32, 32), "y_train": np.array(ys),
              "x_test": test_data.reshape(-1, 3, 32, 32), "y_test": np.array(test_labels)}
    return cifar_tar_gz(members), arrays


QNLI_HEADER = "index\tquestion\tsentence\tlabel\n"


def qnli_tsv(n: int, offset: int = 0) -> str:
    rows = []
    for i in range(n):
        # Unbalanced literal quotes, as in the real files: default CSV quoting would merge rows.
        q = f'What is "item {i + offset}?' if i % 3 == 0 else f"Question {i + offset}?"
        s = f'The "answer" is {i}.' if i % 2 else f'It says "{i}'
        label = "entailment" if i % 2 == 0 else "not_entailment"
        rows.append(f"{i}\t{q}\t{s}\t{label}\n")
    return QNLI_HEADER + "".join(rows)


def make_qnli_zip(n_train: int = 12, n_dev: int = 7) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("QNLI/train.tsv", qnli_tsv(n_train))
        zf.writestr("QNLI/dev.tsv", qnli_tsv(n_dev, offset=100))
        zf.writestr("QNLI/test.tsv", "index\tquestion\tsentence\n0\tq?\ts.\n")
    return buf.getvalue()


HELOC_FEATURES = ["ExternalRiskEstimate", "MSinceOldestTradeOpen", "MSinceMostRecentDelq",
                  "NumSatisfactoryTrades"]


def heloc_table(sep: str = "\t", numeric_labels: bool = False) -> str:
    good, bad = ("1", "0") if numeric_labels else ("Good", "Bad")
    rows = [
        [bad, 55, 144, -7, 20],
        [good, 61, 58, 15, 2],
        [bad, -9, -9, -9, -9],  # no bureau record: dropped
        [good, 67, -8, 10, 9],
        [bad, 66, 169, -7, 28],
    ]
    header = sep.join(["RiskPerformance", *HELOC_FEATURES])
    return header + "\n" + "".join(sep.join(str(v) for v in r) + "\n" for r in rows)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def no_leftovers(folder: Path) -> bool:
    return not any(".part" in p.name for p in folder.rglob("*"))


def serve_table(server: Server, files: dict[str, bytes], prefix: str) -> dict[str, dict]:
    """Serve `files` under `prefix` and build a sources-style table (404 mirror first)."""
    table = {}
    for name, data in files.items():
        server.routes[f"{prefix}{name}"] = data
        table[name] = {"urls": [server.url(f"/missing/{name}"), server.url(f"{prefix}{name}")],
                       "md5": md5(data)}
    return table


# ------------------------------------------------------------------------------------ download()


def test_download_verifies_and_renames(server, tmp_path):
    data = bytes(range(256)) * 1000
    server.routes["/f.bin"] = data
    dest = tmp_path / "sub" / "f.bin"
    out = download(server.url("/f.bin"), dest, md5=md5(data), progress=False)
    assert out == dest and dest.read_bytes() == data
    assert md5sum(dest) == md5(data)
    assert sha256sum(dest) == hashlib.sha256(data).hexdigest()
    assert no_leftovers(tmp_path)


def test_checksum_mismatch_removes_file(server, tmp_path):
    data = b"not what was published" * 100
    server.routes["/a.gz"] = data
    server.routes["/b.gz"] = data
    dest = tmp_path / "a.gz"
    with pytest.raises(ChecksumError) as info:
        download([server.url("/a.gz"), server.url("/b.gz")], dest, md5="0" * 32, progress=False)
    msg = str(info.value)
    # Both mirrors tried once each (a checksum failure is not retried on the same mirror).
    assert server.hits == {"/a.gz": 1, "/b.gz": 1}
    assert server.url("/a.gz") in msg and server.url("/b.gz") in msg
    assert "0" * 32 in msg and md5(data) in msg and "removed" in msg
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_checksum_failure_on_first_mirror_falls_back(server, tmp_path):
    good = b"good" * 100
    server.routes["/bad"] = b"bad" * 100
    server.routes["/good"] = good
    dest = tmp_path / "f"
    download([server.url("/bad"), server.url("/good")], dest, md5=md5(good), progress=False)
    assert dest.read_bytes() == good and no_leftovers(tmp_path)


def test_truncated_transfer_is_retried_then_fails(server, tmp_path):
    data = b"x" * 10_000
    server.routes["/cut"] = lambda h, n: send(h, data, upto=len(data) // 2)
    dest = tmp_path / "cut.gz"
    with pytest.raises(DownloadError) as info:
        download(server.url("/cut"), dest, retries=3, progress=False)
    msg = str(info.value)
    assert server.hits["/cut"] == 3
    assert server.url("/cut") in msg and "5000 of 10000" in msg
    assert str(tmp_path) in msg and "root=" in msg  # says what to do
    assert not dest.exists() and list(tmp_path.iterdir()) == []


def test_retry_after_transient_failures(server, tmp_path):
    data = b"payload" * 500

    def flaky_503(h, n):
        if n == 1:
            h.send_error(503, "busy")
        else:
            send(h, data)

    def cut_once(h, n):
        send(h, data, upto=100 if n == 1 else None)

    server.routes["/flaky"] = flaky_503
    server.routes["/cut-once"] = cut_once
    for path in ["/flaky", "/cut-once"]:
        dest = tmp_path / path.strip("/")
        download(server.url(path), dest, md5=md5(data), progress=False)
        assert dest.read_bytes() == data and server.hits[path] == 2
    assert no_leftovers(tmp_path)


def test_all_mirrors_fail_names_every_url(server, tmp_path, dead_url):
    dest = tmp_path / "f.gz"
    urls = [server.url("/nope"), dead_url]
    with pytest.raises(DownloadError) as info:
        download(urls, dest, retries=2, progress=False)
    msg = str(info.value)
    assert all(u in msg for u in urls) and "404" in msg
    assert server.hits["/nope"] == 1  # a 404 is not retried on the same mirror
    assert "download the file by hand" in msg.lower()
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_removes_part_file(server, tmp_path, monkeypatch):
    server.routes["/big"] = b"y" * 50_000

    class Interrupting:
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            raise KeyboardInterrupt

    monkeypatch.setattr(dl, "tqdm", Interrupting)
    with pytest.raises(KeyboardInterrupt):
        download(server.url("/big"), tmp_path / "big", progress=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- fetch_*


def test_fetch_mnist_end_to_end_then_offline(server, tmp_path, monkeypatch, dead_url):
    files = make_mnist()
    monkeypatch.setattr(sources, "MNIST_FILES", serve_table(server, files, "/mnist/"))
    root = tmp_path / "mnist"
    raw = sources.fetch_mnist(root, download=True, progress=False)
    assert raw.x_train.shape == (30, 1, 28, 28) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (10, 1, 28, 28)
    assert raw.y_train.dtype == np.int64 and raw.y_train.tolist() == [i % 10 for i in range(30)]
    assert raw.y_test.tolist() == [(i * 3) % 10 for i in range(10)]
    assert raw.class_names == [str(d) for d in range(10)]
    assert sorted(p.name for p in root.iterdir()) == sorted(files)
    for name, rec in raw.meta["files"].items():
        assert rec["checksum_verified"] is True and rec["downloaded"] is True
        assert rec["sha256"] == hashlib.sha256(files[name]).hexdigest()
    assert raw.meta["source"]

    # Second call: files present, so no request at all (the URLs now point to a closed port).
    hits = dict(server.hits)
    monkeypatch.setattr(sources, "MNIST_FILES", {
        n: {"urls": [dead_url], "md5": md5(d)} for n, d in files.items()})
    again = sources.fetch_mnist(root, download=True, progress=False)
    assert server.hits == hits
    np.testing.assert_array_equal(again.x_train, raw.x_train)
    assert all(r["downloaded"] is False and r["checksum_verified"] for r in again.meta["files"].values())


def test_fetch_mnist_bad_download_checksum(server, tmp_path, monkeypatch):
    files = make_mnist()
    table = serve_table(server, files, "/mnist/")
    table["t10k-labels-idx1-ubyte.gz"]["md5"] = "f" * 32
    monkeypatch.setattr(sources, "MNIST_FILES", table)
    root = tmp_path / "mnist"
    with pytest.raises(ChecksumError, match="f" * 32):
        sources.fetch_mnist(root, download=True, progress=False)
    assert not (root / "t10k-labels-idx1-ubyte.gz").exists()
    assert no_leftovers(root)


def test_fetch_mnist_accepts_consistent_subset_unverified(tmp_path, monkeypatch, dead_url, caplog):
    files = make_mnist()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # Published md5s differ from these files, as for a user's own subset.
    monkeypatch.setattr(sources, "MNIST_FILES", {
        n: {"urls": [dead_url], "md5": "a" * 32} for n in files})
    raw = sources.fetch_mnist(tmp_path, download=False)
    assert len(raw.x_train) == 30
    assert all(r["checksum_verified"] is False for r in raw.meta["files"].values())
    assert "a" * 32 in caplog.text

    # Inconsistent files with unverified checksums are rejected, naming both files.
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(idx_bytes(np.zeros(31, np.uint8)))
    with pytest.raises(FormatError, match="30 images.*31 labels") as info:
        sources.fetch_mnist(tmp_path, download=False)
    assert "download=True" in str(info.value)


def test_fetch_cifar10_end_to_end(server, tmp_path, monkeypatch, dead_url):
    blob, arrays = make_cifar()
    monkeypatch.setattr(sources, "CIFAR10_FILES",
                        serve_table(server, {"cifar-10-python.tar.gz": blob}, "/cifar/"))
    raw = sources.fetch_cifar10(tmp_path, download=True, progress=False)
    assert raw.x_train.shape == (20, 3, 32, 32) and raw.x_train.dtype == np.uint8
    assert raw.x_test.shape == (6, 3, 32, 32)
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
    np.testing.assert_array_equal(raw.x_test, arrays["x_test"])
    assert raw.y_train.dtype == np.int64 and raw.y_test.tolist() == arrays["y_test"].tolist()
    assert raw.class_names == CIFAR_NAMES
    assert raw.meta["files"]["cifar-10-python.tar.gz"]["checksum_verified"] is True
    assert (tmp_path / "cifar-10-python.tar.gz").read_bytes() == blob

    monkeypatch.setattr(sources, "CIFAR10_FILES",
                        {"cifar-10-python.tar.gz": {"urls": [dead_url], "md5": md5(blob)}})
    assert sources.fetch_cifar10(tmp_path, download=True, progress=False).y_train.size == 20


def test_fetch_qnli_end_to_end(server, tmp_path, monkeypatch, dead_url):
    blob = make_qnli_zip()
    table = serve_table(server, {"QNLIv2.zip": blob}, "/glue/")
    table["QNLIv2.zip"]["md5"] = None  # none published
    monkeypatch.setattr(sources, "QNLI_FILES", table)
    raw = sources.fetch_qnli(tmp_path, download=True, progress=False)
    assert len(raw.x_train) == 12 and len(raw.x_test) == 7
    assert raw.x_train[0] == ('What is "item 0?', 'It says "0')
    assert raw.x_test[1] == ("Question 101?", 'The "answer" is 1.')
    assert raw.y_train.tolist() == [i % 2 for i in range(12)]  # entailment = 0
    assert raw.class_names == ["entailment", "not_entailment"]
    assert raw.meta["files"]["QNLIv2.zip"]["checksum_verified"] is None
    assert (tmp_path / "QNLIv2.zip").is_file()

    monkeypatch.setattr(sources, "QNLI_FILES", {"QNLIv2.zip": {"urls": [dead_url], "md5": None}})
    assert len(sources.fetch_qnli(tmp_path, download=True, progress=False).x_train) == 12


@pytest.mark.parametrize("sub", ["QNLI", "."])
def test_fetch_qnli_from_extracted_tsv(tmp_path, sub):
    folder = tmp_path / sub
    folder.mkdir(exist_ok=True)
    (folder / "train.tsv").write_text(qnli_tsv(9))
    (folder / "dev.tsv").write_text(qnli_tsv(4))
    raw = sources.fetch_qnli(tmp_path, download=False)
    assert len(raw.x_train) == 9 and len(raw.x_test) == 4
    assert set(raw.meta["files"]) == {"train.tsv", "dev.tsv"}


def test_fetch_heloc_end_to_end(server, tmp_path, monkeypatch):
    files = {"heloc-train.csv": heloc_table().encode(),
             "heloc-test.csv": heloc_table(numeric_labels=True).encode()}
    table = serve_table(server, files, "/dataverse/")
    for spec in table.values():
        spec["md5"] = None
    monkeypatch.setattr(sources, "HELOC_FILES", table)
    raw = sources.fetch_heloc(tmp_path, download=True, progress=False)
    assert raw.x_train.shape == (4, 4) and raw.x_train.dtype == np.float64
    assert raw.feature_names == HELOC_FEATURES
    assert raw.y_train.tolist() == [0, 1, 1, 0] and raw.y_test.tolist() == [0, 1, 1, 0]
    assert raw.class_names == ["Bad", "Good"]
    assert np.isnan(raw.x_train[0, 2]) and np.isnan(raw.x_train[2, 1])  # -7 and -8
    assert raw.x_train[1].tolist() == [61, 58, 15, 2]
    assert np.isnan(raw.x_train).sum() == 3
    assert raw.meta["dropped_no_record_rows"] == {"train": 1, "test": 1}
    assert all(r["checksum_verified"] is None for r in raw.meta["files"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_download_false_names_missing_files(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(np.zeros((1, 28, 28), np.uint8)))
    with pytest.raises(DataError) as info:
        sources.fetch_mnist(tmp_path, download=False)
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "train-labels-idx1-ubyte.gz" in msg
    assert "train-images-idx3-ubyte.gz," not in msg  # present, so not listed as missing
    assert str(tmp_path) in msg and "ossci-datasets" in msg and "download=True" in msg
    for fetch, needle in [(sources.fetch_cifar10, "cifar-10-python.tar.gz"),
                          (sources.fetch_heloc, "8550942"), (sources.fetch_qnli, "QNLIv2.zip")]:
        with pytest.raises(DataError, match=needle):
            fetch(tmp_path / "empty", download=False)
    assert not (tmp_path / "empty").exists()


# -------------------------------------------------------------------------------------- parsers


def test_read_idx_plain_gzip_and_corrupt(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(2, 28, 28)
    plain, gz = tmp_path / "plain-idx3-ubyte", tmp_path / "img-idx3-ubyte.gz"
    plain.write_bytes(idx_bytes(images, compress=False))
    gz.write_bytes(idx_bytes(images))
    for p in (plain, gz):
        out = read_idx(p, ndim=3)
        assert out.dtype == np.uint8 and out.flags.writeable
        np.testing.assert_array_equal(out, images)

    cases = {
        "truncated-gzip.gz": (gz.read_bytes()[:-30], "gzip"),
        "garbage.gz": (b"<html>503 Service Unavailable</html>", "not an IDX file"),
        "short-data.gz": (gzip.compress(idx_bytes(images, compress=False)[:-10]), "truncated"),
        "tiny.gz": (b"\x00\x00", "not an IDX file"),
    }
    for name, (blob, problem) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FormatError, match=problem) as info:
            read_idx(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(FormatError, match="expected 1"):
        read_idx(gz, ndim=1)


def test_fetch_mnist_corrupt_file_under_root(tmp_path):
    for name, data in make_mnist().items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"PK\x03\x04 not gzip, not idx")
    with pytest.raises(FormatError, match="t10k-images-idx3-ubyte.gz"):
        sources.fetch_mnist(tmp_path, download=False)


def test_read_cifar_corrupt_and_unsafe(tmp_path):
    blob, _ = make_cifar()
    bad = tmp_path / "cut.tar.gz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(FormatError, match="cut.tar.gz"):
        read_cifar10_tarball(bad)

    # A pickle that would call os.system must be refused, not executed.
    evil = pickle.dumps({b"data": __import__("os").system}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(evil)
            tar.addfile(info, io.BytesIO(evil))
    (tmp_path / "evil.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(FormatError, match="refusing"):
        read_cifar10_tarball(tmp_path / "evil.tar.gz")


def test_read_heloc_variants_and_errors(tmp_path):
    comma = tmp_path / "heloc.csv"
    comma.write_text(heloc_table(sep=","))
    X, y, names = read_heloc(comma)
    assert names == HELOC_FEATURES and X.shape == (4, 4) and y.tolist() == [0, 1, 1, 0]
    assert X.attrs["n_dropped_no_record"] == 1

    no_label = tmp_path / "nolabel.csv"
    no_label.write_text("a\tb\n1\t2\n")
    with pytest.raises(FormatError, match="RiskPerformance") as info:
        read_heloc(no_label)
    assert "nolabel.csv" in str(info.value) and "['a', 'b']" in str(info.value)

    odd = tmp_path / "odd.csv"
    odd.write_text("RiskPerformance\tx\nGood\t1\nMaybe\t2\n")
    with pytest.raises(FormatError, match="'Maybe'.*line 3"):
        read_heloc(odd)


def test_read_qnli_quotes_and_errors(tmp_path):
    p = tmp_path / "dev.tsv"
    p.write_text(qnli_tsv(5))
    df = read_qnli(p)
    assert list(df.columns) == ["index", "question", "sentence", "label"]
    assert len(df) == 5 and df.label.tolist() == [0, 1, 0, 1, 0]
    with open(p, "rb") as f:  # file objects (zip members) work too
        assert len(read_qnli(f, name="member")) == 5

    bad = tmp_path / "bad.tsv"
    bad.write_text(QNLI_HEADER + "0\tq?\ts.\tentailment\n1\tq?\ts.\tcontradiction\n")
    with pytest.raises(FormatError, match="bad.tsv.*line 3.*contradiction"):
        read_qnli(bad)
    unlabelled = tmp_path / "test.tsv"
    unlabelled.write_text("index\tquestion\tsentence\n0\tq?\ts.\n")
    with pytest.raises(FormatError, match="header"):
        read_qnli(unlabelled)

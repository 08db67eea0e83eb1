"""The ``affairs`` data set (Fair 1978, statsmodels' fair.csv): parser, fetch, download and load.

Downloads go to a local HTTP server on 127.0.0.1 serving a small synthetic fair.csv (as in
tests/test_download.py); the real file is used when a local copy is present (git-ignored).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from _http import Server, dead_url, no_backoff, server  # noqa: F401 (fixtures)

import ggda.data as gdata
from ggda.data import download as dl
from ggda.data import sources
from ggda.data.errors import ChecksumError, DataError, FormatError
from ggda.data.parsers import read_affairs
from ggda.hparams import default_hparams

# The copy kept by ``ggda.data.load("affairs")``'s default root (data/raw/affairs), or $GGDA_AFFAIRS_CSV.
REAL = Path(os.environ.get("GGDA_AFFAIRS_CSV",
                           Path(__file__).resolve().parents[1] / "data" / "raw" / "affairs" / "fair.csv"))
REAL_SHA256 = "fd5f3f094a34fc35ca346a14c359e046ed27843038d6921efcd50a7ab21f6af0"
FEATURES = ["rate_marriage", "age", "yrs_married", "children", "religious", "educ", "occupation",
            "occupation_husb"]
HEADER = ",".join(f'"{c}"' for c in [*FEATURES, "affairs"]) + "\n"


def need_real() -> Path:
    if not REAL.is_file():
        pytest.skip(f"real affairs file {REAL} not found: run ggda.data.load('affairs') once to download "
                    f"it into data/raw/affairs, or set GGDA_AFFAIRS_CSV to a copy of statsmodels' fair.csv")
    return REAL


def fair_csv(n: int = 20) -> str:
    """A synthetic fair.csv: n rows, every third one with a positive ``affairs`` (labels 1 at i % 3 == 0)."""
    rows = []
    for i in range(n):
        feats = [1 + i % 5, 17.5 + i, 0.5 + i % 7, i % 4, 1 + i % 4, 9 + i % 12, 1 + i % 6, 1 + i % 6]
        affairs = 0.4 * (i + 1) if i % 3 == 0 else 0
        rows.append(",".join(str(v) for v in [*feats, affairs]) + "\n")
    return HEADER + "".join(rows)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve_fair(server: Server, data: bytes, md5_hex: str | None = None) -> dict[str, dict]:
    """Serve `data` as fair.csv and build an AFFAIRS_FILES-style table (a 404 mirror first)."""
    server.routes["/statsmodels/fair.csv"] = data
    return {"fair.csv": {"urls": [server.url("/missing/fair.csv"), server.url("/statsmodels/fair.csv")],
                         "md5": md5(data) if md5_hex is None else md5_hex}}


# ------------------------------------------------------------------------------------ real file


def test_read_affairs_real_file():
    X, y, names = read_affairs(need_real())
    assert X.shape == (6_366, 8) and len(y) == 6_366
    assert names == FEATURES and list(X.columns) == FEATURES
    assert all(dt == np.float64 for dt in X.dtypes) and y.dtype == np.int64
    # 2,053 rows with affairs > 0, counted once with the csv module (float(row[-1]) > 0).
    assert int(y.sum()) == 2_053 and int((y == 0).sum()) == 4_313
    assert X.iloc[0].tolist() == [3, 32, 9, 3, 3, 17, 2, 5] and y[0] == 1  # affairs 0.1111111
    assert not X.isna().any().any()


def test_fetch_and_load_affairs_real_file_in_place():
    real = need_real()
    root = real.parent
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir()}
    # download=True must not touch the network or the folder: the file is present.
    raw = sources.fetch_affairs(root, download=True, progress=False)
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir()} == before
    assert raw.x_train.shape == (5_092, 8) and raw.x_test.shape == (1_274, 8)
    assert raw.x_train.dtype == np.float64 and raw.y_train.dtype == np.int64
    # stratified: 2,053 positives split 1,642 / 411
    assert int(raw.y_train.sum()) == 1_642 and int(raw.y_test.sum()) == 411
    assert raw.class_names == ["no affair", "affair"] and raw.feature_names == FEATURES
    rec = raw.meta["files"]["fair.csv"]
    if rec["sha256"] == REAL_SHA256:  # the published file (a user's own copy may differ)
        assert rec["checksum_verified"] is True and rec["md5"] == "614e1af225cd0261334dd2879db3a82f"
    assert rec["downloaded"] is False
    assert raw.meta["split"] == "stratified, test_size=0.2, random_state=0"

    # The split is fixed: the same for every call (and every experiment seed).
    again = sources.fetch_affairs(root, download=False)
    np.testing.assert_array_equal(again.x_test, raw.x_test)

    bundle = gdata.load("affairs", root=root, download=False, seed=5)
    assert (len(bundle.train), len(bundle.test)) == (5_092, 1_274)
    assert bundle.kind == "tabular" and bundle.meta["input_shape"] == [8]
    xtr = bundle.train.tensors[0].double()
    assert np.allclose(xtr.mean(0).numpy(), 0, atol=1e-5)
    assert np.allclose(xtr.std(0, unbiased=False).numpy(), 1, atol=1e-4)


# ------------------------------------------------------------------------------------- parsers


def test_read_affairs_synthetic_and_extra_columns(tmp_path):
    p = tmp_path / "fair.csv"
    p.write_text(fair_csv(9))
    X, y, names = read_affairs(p)
    assert names == FEATURES and X.shape == (9, 8)
    assert y.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert X.iloc[2].tolist() == [3, 19.5, 2.5, 2, 3, 11, 3, 3]

    # A pandas index column is ignored; the features keep the file's order.
    lines = fair_csv(4).splitlines(keepends=True)
    indexed = tmp_path / "indexed.csv"
    indexed.write_text('"",' + lines[0] + "".join(f"{i}," + line for i, line in enumerate(lines[1:])))
    X2, y2, names2 = read_affairs(indexed)
    assert names2 == FEATURES and X2.shape == (4, 8) and y2.tolist() == [1, 0, 0, 1]


@pytest.mark.parametrize("name, text, problem", [
    ("nocol.csv", HEADER.replace('"educ",', "") + "1,2,3,4,5,6,7,0\n", r"\['educ'\] missing"),
    ("words.csv", HEADER + "3,32,9,3,3,17,2,5,0\n3,27,13,3,1,x17,3,4,0.5\n",
     r"non-numeric value 'x17' in column 'educ', data row 2 \(line 3\)"),
    ("blank.csv", HEADER + "3,32,9,3,3,17,2,5,\n", r"empty value '' in column 'affairs'"),
    ("negative.csv", HEADER + "3,32,9,3,3,17,2,5,0\n3,27,13,3,1,14,3,4,-0.5\n",
     r"negative affairs value -0.5 in data row 2 \(line 3\)"),
    ("header-only.csv", HEADER, "no data rows"),
    ("empty.csv", "", "not a readable affairs table"),
    ("page.html", "<html><body>404: Not Found</body></html>\n", "missing"),
])
def test_read_affairs_errors_name_the_file(tmp_path, name, text, problem):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(FormatError, match=problem) as info:
        read_affairs(p)
    assert str(p) in str(info.value)


def test_missing_column_lists_the_columns_found(tmp_path):
    p = tmp_path / "heloc-like.csv"
    p.write_text("RiskPerformance,x\nGood,1\n")
    with pytest.raises(FormatError) as info:
        read_affairs(p)
    msg = str(info.value)
    assert "['RiskPerformance', 'x']" in msg and "'affairs'" in msg and "fair.csv" in msg


# ----------------------------------------------------------------------------- fetch / download


def test_fetch_affairs_downloads_then_works_offline(server, tmp_path, monkeypatch, dead_url):
    data = fair_csv(20).encode()
    monkeypatch.setattr(sources, "AFFAIRS_FILES", serve_fair(server, data))
    root = tmp_path / "affairs"
    raw = sources.fetch_affairs(root, download=True, progress=False)
    assert server.hits == {"/missing/fair.csv": 1, "/statsmodels/fair.csv": 1}
    assert (root / "fair.csv").read_bytes() == data and [p.name for p in root.iterdir()] == ["fair.csv"]
    assert raw.x_train.shape == (16, 8) and raw.x_test.shape == (4, 8)
    assert raw.x_train.dtype == np.float64 and raw.y_train.dtype == np.int64
    assert int(raw.y_train.sum()) + int(raw.y_test.sum()) == 7  # i % 3 == 0 for i < 20
    assert int(raw.y_test.sum()) in (1, 2)  # stratified: 7 / 20 of 4
    assert raw.feature_names == FEATURES and raw.class_names == ["no affair", "affair"]
    rec = raw.meta["files"]["fair.csv"]
    assert rec["checksum_verified"] is True and rec["downloaded"] is True
    assert rec["md5"] == md5(data) and rec["sha256"] == hashlib.sha256(data).hexdigest()

    # Present now: no request at all (the table points at a closed port), same split.
    hits = dict(server.hits)
    monkeypatch.setattr(sources, "AFFAIRS_FILES", {"fair.csv": {"urls": [dead_url], "md5": md5(data)}})
    again = sources.fetch_affairs(root, download=True, progress=False)
    assert server.hits == hits and again.meta["files"]["fair.csv"]["downloaded"] is False
    np.testing.assert_array_equal(again.x_train, raw.x_train)

    # ggda.data.load dispatches to fetch_affairs and standardises on the training part.
    bundle = gdata.load("affairs", root=root, download=False)
    assert (len(bundle.train), len(bundle.test)) == (16, 4) and bundle.feature_names == FEATURES


def test_fetch_affairs_refuses_md5_mismatch(server, tmp_path, monkeypatch):
    data = fair_csv(20).encode()
    monkeypatch.setattr(sources, "AFFAIRS_FILES", serve_fair(server, data, md5_hex="f" * 32))
    root = tmp_path / "affairs"
    with pytest.raises(ChecksumError) as info:
        sources.fetch_affairs(root, download=True, progress=False)
    msg = str(info.value)
    assert "f" * 32 in msg and md5(data) in msg and server.url("/statsmodels/fair.csv") in msg
    assert not (root / "fair.csv").exists()
    assert not any(".part" in p.name for p in tmp_path.rglob("*"))


def test_download_false_names_file_and_url(tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(DataError) as info:
        sources.fetch_affairs(root, download=False)
    msg = str(info.value)
    assert "fair.csv" in msg and str(root) in msg and "download=True" in msg
    assert ("https://raw.githubusercontent.com/statsmodels/statsmodels/v0.14.4/"
            "statsmodels/datasets/fair/fair.csv") in msg
    with pytest.raises(DataError, match="fair.csv"):
        gdata.load("affairs", root=root, download=False)
    assert not root.exists()


def test_local_copy_with_other_md5_used_unverified(tmp_path, monkeypatch, dead_url, caplog):
    (tmp_path / "fair.csv").write_text(fair_csv(30))
    monkeypatch.setattr(sources, "AFFAIRS_FILES", {"fair.csv": {"urls": [dead_url], "md5": "a" * 32}})
    raw = sources.fetch_affairs(tmp_path, download=False)
    assert len(raw.y_train) + len(raw.y_test) == 30
    assert raw.meta["files"]["fair.csv"]["checksum_verified"] is False and "a" * 32 in caplog.text

    # A bad local file is reported with the hint that its md5 differs from the published one.
    (tmp_path / "fair.csv").write_text(HEADER + "3,32,9,3,3,17,2,5,-1\n")
    with pytest.raises(FormatError, match="negative.*download=True"):
        sources.fetch_affairs(tmp_path, download=False)
    # Too few rows of a class for the stratified split: a FormatError, not sklearn's ValueError.
    (tmp_path / "fair.csv").write_text(fair_csv(3))
    with pytest.raises(FormatError, match="cannot split 3 row"):
        sources.fetch_affairs(tmp_path, download=False)


def test_registry_and_defaults():
    info = gdata.get_info("affairs")
    assert (info.kind, info.num_classes, info.models, info.bundled) == (
        "tabular", 2, ("lr", "ann-s", "ann-m"), False)
    assert "affairs" in {row["name"] for row in gdata.list_datasets()}
    assert default_hparams("affairs", "ann-s").epochs == 20
    assert default_hparams("affairs", "ann-m").batch_size == 128
    assert default_hparams("affairs", "lr").optimizer == "lbfgs"

"""benchmarks/peers.py: its metric helpers, and one small run with the peer libraries absent (simulated, so the
result does not depend on whether the optional ``peers`` extra is installed)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's annotations through sys.modules
    sys.path.insert(0, str(SCRIPT.parent))  # as when run as a script: its sibling modules are importable
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(SCRIPT.parent))


@pytest.fixture
def no_peers(peers, monkeypatch):
    """Every peer library reported as not importable."""

    def missing(name):
        raise peers.PeerSkipped(f"{peers.INSTALL_HINT} (simulated: no module {name!r})")

    monkeypatch.setattr(peers, "import_peer", missing)
    return peers


def test_metrics_on_known_answers(peers):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 50))
    assert np.allclose(peers.rowwise_spearman(a, a), 1.0)
    assert np.allclose(peers.rowwise_pearson(a, 3 * a + 1), 1.0)      # Pearson ignores scale and shift
    assert np.allclose(peers.rowwise_spearman(a, -a), -1.0)
    assert np.allclose(peers.rowwise_spearman(a, np.exp(a)), 1.0)     # Spearman: any increasing map
    assert peers.rowwise_pearson(a, np.exp(a)).max() < 0.999          # ... Pearson: not
    assert np.allclose(peers.topk_overlap(a, a, 5), 1.0)
    assert np.allclose(peers.topk_overlap(a, -a, 5), 0.0)             # top 5 of 50 vs bottom 5
    # known partial overlap: the top 4 of b share exactly 2 with the top 4 of a
    x = np.arange(10.0)[None, :]                                       # top 4 of x: 9, 8, 7, 6
    y = np.array([[0, 1, 2, 3, 10, 11, 6, 7, 4, 5]], dtype=float)     # top 4 of y: 5, 4, 7, 6
    assert peers.topk_overlap(x, y, 4) == pytest.approx([0.5])
    out = peers.compare(a, a[:, ::-1].copy(), 5)
    assert set(out) == {"spearman", "pearson", "topk_overlap"} and -1 <= out["spearman"] < 0.9
    with pytest.raises(ValueError, match="shapes differ"):
        peers.compare(a, a[:, :10], 5)
    bad = a.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        peers.compare(a, bad, 5)


def test_every_peer_skipped_when_not_importable(no_peers, tmp_path):
    peers = no_peers
    out = tmp_path / "peers.csv"
    df = peers.main(["--pairs", "digits/lr", "--targets", "4", "--repeats", "1", "--threads", "1",
                     "--out", str(out)])
    expected = {(m, p) for m, adapters in peers.PEERS.items() for p, _ in adapters}
    assert set(zip(df["method"], df["peer"])) == expected and len(df) == len(expected) == 5
    assert df["status"].str.startswith(f"skipped: {peers.INSTALL_HINT}").all()
    assert df["spearman"].isna().all() and df["peer_s"].isna().all()
    # ggda itself ran: individual and group-64 times for every method
    assert (df["ggda_s"] > 0).all() and (df["ggda_group_s"] > 0).all()
    assert (df["n"] == 1437).all() and (df["targets"] == 4).all() and (df["group_size"] == 64).all()
    assert df["differs"].str.len().gt(0).all()
    written = pd.read_csv(out)
    assert list(written["status"]) == list(df["status"]) and not out.with_suffix(".tmp").exists()


def test_a_matching_peer_a_failing_peer_and_an_absent_one(no_peers, monkeypatch, tmp_path):
    """ggda against itself gives correlation 1; a peer that raises is reported, not fatal."""
    peers = no_peers

    def broken(setup):
        raise RuntimeError("peer exploded")

    adapters = [("self", lambda setup: peers.ggda_scores("tracin", setup)), ("broken", broken),
                ("captum", peers.captum_tracin)]
    monkeypatch.setattr(peers, "PEERS", {"tracin": adapters})
    monkeypatch.setattr(peers, "differs", lambda method, peer, setup: f"{peer} differs")
    df = peers.main(["--pairs", "digits/lr", "--methods", "tracin", "--peers", "self,broken,captum",
                     "--targets", "5", "--repeats", "1", "--threads", "1", "--top-k", "20",
                     "--out", str(tmp_path / "p.csv")]).set_index("peer")
    ok = df.loc["self"]
    assert ok["status"] == "ok"
    assert ok["spearman"] == pytest.approx(1.0) and ok["pearson"] == pytest.approx(1.0)
    assert ok["topk_overlap"] == pytest.approx(1.0) and ok["top_k"] == 20
    assert ok["ratio_ggda_over_peer"] == pytest.approx(ok["ggda_s"] / ok["peer_s"])
    assert ok["peer_over_ggda_group"] == pytest.approx(ok["peer_s"] / ok["ggda_group_s"])
    assert df.loc["broken", "status"] == "skipped: failed: RuntimeError: peer exploded"
    assert df.loc["captum", "status"].startswith("skipped: not installed")

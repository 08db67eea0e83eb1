"""ggda.plots and ggda.provenance on small synthetic tidy tables (no workflow run needed)."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from ggda import plots, provenance

METHODS = ["if", "tracin", "trak"]
GROUPINGS = [("individual", 1), ("random", 16), ("grad-kmeans", 4), ("grad-kmeans", 16)]


def _retraining(datasets=("digits",), models=("lr", "ann-s"), fractions=(0.1, 0.2), seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for d in datasets:
        for m in models:
            for meth in METHODS:
                for g, s in GROUPINGS:
                    for f in fractions:
                        for seed in seeds:
                            rows.append(dict(dataset=d, model=m, method=meth, grouping=g, group_size=s,
                                             kind="attribution", fraction=f, seed=seed, n_removed=int(f * 100),
                                             accuracy=0.9 - f - 0.01 * s ** 0.5 + rng.normal(0, 0.01), loss=1.0,
                                             retrain_s=0.1))
            for seed in seeds:
                rows.append(dict(dataset=d, model=m, method=None, grouping=None, group_size=None, kind="none",
                                 fraction=0.0, seed=seed, n_removed=0, accuracy=0.95, loss=0.2, retrain_s=0.1))
                for f in fractions:
                    rows.append(dict(dataset=d, model=m, method=None, grouping=None, group_size=None, kind="random",
                                     fraction=f, seed=seed, n_removed=int(f * 100), accuracy=0.94, loss=0.3,
                                     retrain_s=0.1))
    return pd.DataFrame(rows)


def _runtime(datasets=("digits",), models=("lr", "ann-s")):
    rows = []
    for d in datasets:
        for m in models:
            for meth in METHODS:
                for g, s in GROUPINGS:
                    rows.append(dict(dataset=d, model=m, variant="main", method=meth, grouping=g, group_size=s,
                                     total_s=2.0 / s, grouping_s=0.01, speedup=float(s)))
    return pd.DataFrame(rows)


def test_label():
    assert plots.label("individual", 1) == "individual"
    assert plots.label("grad-kmeans", 16.0) == "grad-kmeans (16)"


def test_ablation_has_a_panel_per_model_and_method_and_a_bar_per_grouping():
    fig = plots.ablation(_retraining(), _runtime(), "digits", removal=0.2, group_size=16)
    axes = fig.get_axes()
    assert len(axes) == 2 * 3
    # individual, random (16), grad-kmeans (16), random removal, no removal (grad-kmeans (4) is another size)
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels == ["individual", "random (16)", "grad-kmeans (16)", "random removal", "no removal"]
    # the runtime of each attribution is written on its bar
    texts = [t.get_text() for t in axes[0].texts]
    assert "2.0 s" in texts and "125 ms" in texts


def test_ablation_of_an_unknown_dataset_says_so():
    fig = plots.ablation(_retraining(), _runtime(), "mnist")
    assert "no retraining rows" in fig.get_axes()[0].texts[0].get_text()


def test_removal_curves_and_tradeoff_grid():
    ret, rt = _retraining(datasets=("digits", "breast_cancer")), _runtime(datasets=("digits", "breast_cancer"))
    assert len(plots.removal_curves(ret, group_size=16).get_axes()) == 4 * 3
    fig = plots.tradeoff(ret, rt, removal=0.2)
    axes = fig.get_axes()
    assert len(axes) == 4 * 3
    assert axes[0].get_xscale() == "log"


def test_pruning_and_noisy_labels():
    ret = _retraining(models=("lr",))
    pr = ret[ret["method"].isin(["tracin"]) | ret["method"].isna()].copy()
    pr.loc[pr["method"].isna(), ["method", "grouping", "group_size"]] = ["tracin", "individual", 1]
    assert len(plots.pruning(pr).get_axes()) == 1
    curve = pd.DataFrame([dict(dataset="digits", model="lr", method="tracin", grouping=g, group_size=s,
                               fraction_inspected=f, fraction_found=min(1.0, 2 * f), auroc=0.8)
                          for g, s in GROUPINGS for f in (0.1, 0.2, 0.3)])
    rows = pd.DataFrame([dict(method="tracin", grouping="individual", group_size=1, kind=k, seed=s, accuracy=0.9)
                         for k in ("attribution", "none", "random", "oracle") for s in range(3)])
    fig = plots.noisy_labels(curve, rows)
    assert len(fig.get_axes()) == 2
    assert "AUROC 0.80" in " ".join(t.get_text() for t in fig.get_axes()[0].get_legend().get_texts())


def test_missing_column_names_it():
    with pytest.raises(ValueError, match=r"retraining table lacks the column\(s\) \['accuracy'\]"):
        plots.removal_curves(_retraining().drop(columns="accuracy"))


def test_save_writes_every_format_atomically_with_provenance(tmp_path):
    table = tmp_path / "retraining.csv"
    _retraining().to_csv(table, index=False)
    fig = plots.removal_curves(pd.read_csv(table), group_size=16)
    outs = [tmp_path / "fig.png", tmp_path / "fig.pdf"]
    record = plots.save(fig, outs, inputs=[table], config_hash="abc123", figure="removal-curves")
    assert all(p.stat().st_size > 1000 for p in outs)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    prov = json.loads((tmp_path / "fig.provenance.json").read_text())
    assert prov == json.loads(json.dumps(record))
    assert prov["inputs"][str(table)] == hashlib.sha256(table.read_bytes()).hexdigest()
    assert prov["config_hash"] == "abc123" and prov["figure"] == "removal-curves"
    assert prov["packages"]["seaborn"] and prov["packages"]["matplotlib"]
    assert prov["device"]["cpu_count"] >= 1
    assert set(prov["git"] or {}) <= {"commit", "dirty"}


def test_save_is_deterministic(tmp_path):
    ret = _retraining()
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plots.save(plots.removal_curves(ret), [a])
    plots.save(plots.removal_curves(ret), [b])
    assert a.read_bytes() == b.read_bytes()


def test_save_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unsupported figure format"):
        plots.save(plots.removal_curves(_retraining()), [tmp_path / "fig.jpg"])


def test_provenance_git_state_outside_a_repository(tmp_path):
    assert provenance.git_state(tmp_path) is None
    assert provenance.package_versions(["surely-not-a-package"]) == {"surely-not-a-package": None}


def test_lds_bars_follow_the_grouping_order_with_runtime_labels():
    rows = [dict(dataset="digits", model="lr", method=m, grouping=g, group_size=s, lds=0.5 - 0.01 * s, lds_se=0.02)
            for m in METHODS for g, s in GROUPINGS]
    fig = plots.lds(pd.DataFrame(rows), _runtime(models=("lr",)))
    axes = fig.get_axes()
    assert len(axes) == 3
    labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert labels == ["individual", "random (16)", "grad-kmeans (4)", "grad-kmeans (16)"]
    heights = [p.get_height() for p in axes[0].patches]
    assert heights == pytest.approx([0.49, 0.34, 0.46, 0.34])
    assert len(axes[0].texts) == 4  # the runtime on each bar
    with pytest.raises(ValueError, match="lds_se"):
        plots.lds(pd.DataFrame(rows).drop(columns="lds_se"))


def test_named_grouping_variants_get_their_own_colours_after_the_methods():
    many = [(f"grad-kmeans-v{c}", 16) for c in "abcdefghijkl"]  # more variants than the "deep" palette holds
    ret = _retraining(models=("lr",))
    extra = ret[ret["grouping"] == "grad-kmeans"].copy()
    parts = [ret] + [extra.assign(grouping=g) for g, _ in many]
    ret = pd.concat(parts, ignore_index=True)
    rt = _runtime(models=("lr",))
    rt = pd.concat([rt] + [rt[rt["grouping"] == "grad-kmeans"].assign(grouping=g) for g, _ in many],
                   ignore_index=True)
    fig = plots.ablation(ret, rt, "digits", removal=0.2, group_size=16)
    labels = [t.get_text() for t in fig.get_axes()[0].get_xticklabels()]
    assert labels[:3] == ["individual", "random (16)", "grad-kmeans (16)"]
    assert labels[3:-2] == [f"grad-kmeans-v{c} (16)" for c in "abcdefghijkl"]
    fig = plots.tradeoff(ret, rt, removal=0.2)
    legend = [t.get_text() for t in fig.get_axes()[2].get_legend().get_texts()]
    assert legend[:3] == ["individual", "random", "grad-kmeans"] and "grad-kmeans-vl" in legend


def test_the_old_name_of_removal_curves_warns_and_draws_the_same():
    with pytest.warns(FutureWarning, match="removal_curves"):
        fig = plots.fidelity(_retraining(), group_size=16)
    assert len(fig.get_axes()) == len(plots.removal_curves(_retraining(), group_size=16).get_axes())

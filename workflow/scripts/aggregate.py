"""Collect every job's output into tidy tables (one row per measurement) and results/summary.json.

Tables (results/tables/):
  retraining.csv        one row per retrained model: the attribution's removal, and the baselines
                        (kind random / none, with empty method and grouping)
  runtime.csv           one row per attribution: the timing breakdown (and training_s, the training time of
                        the models it attributes, reported apart from it), the group size distribution, the
                        speedup over individual attribution (same data set, model and method) and the
                        grouping's share of that individual attribution's time (grouping_share)
  training.csv          one row per trained model (its training time is in runtime.csv, training_s)
  pruning.csv           one row per retrained model of the pruning experiment
  noisy_labels.csv      one row per point of a detection curve (with the AUROC of its ranking)

Every table except runtime.csv is the same bytes on every run of the same config: the timings are in the
jobs' .timing.json sidecars, runtime.csv and summary.timing.json.
  noisy_retraining.csv  one row per retrained model after removing the flagged points
  lds.csv               one row per attribution: its group linear datamodeling score (mean Spearman over
                        targets, standard error over targets) from the subsets of its grouping
"""

import json
from pathlib import Path

import pandas as pd
import workflow_io as wio

log = wio.setup(snakemake, torch_threads=False)

KEYS = ["dataset", "model", "method", "grouping", "group_size"]
#: {input path: {dataset, model, variant, method, grouping, group_size}}, as the workflow planned them
PLANNED = snakemake.params.planned


def key_of(path):
    try:
        return PLANNED[str(path)]
    except KeyError:
        raise ValueError(f"{path} is not among the inputs the workflow planned for the aggregation") from None


def with_keys(frame, key, names=KEYS):
    frame = frame.copy()
    for i, name in enumerate(names):
        frame.insert(i, name, key[name])
    return frame


def rows_table(paths, baselines=()):
    parts = [with_keys(pd.read_csv(p), key_of(p)) for p in [*paths, *baselines]]  # baselines: no method, grouping
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEYS)
    return frame.astype({"group_size": "Int64"})


inp, out = snakemake.input, {Path(p).stem: p for p in snakemake.output.tables}
tables = {}

# retraining score
tables["retraining"] = rows_table(inp.retrain, inp.baselines)

# runtime: timing breakdown and group sizes, one row per attribution
runtime = []
for p, timing in zip(inp.attr, inp.attr_timing):
    info = json.loads(Path(p).read_text())
    info["timing"] = json.loads(Path(timing).read_text())["timing"]
    key = key_of(p)
    runtime.append({**key, "grouping_method": info["grouping"], "n_train": info["n_train"], "n_targets": info["n_targets"], "ensemble": info["ensemble"],
                    "device": info["device"], **{f"groups_{k}": v for k, v in info["sizes"].items()},
                    **info["timing"]})
runtime = pd.DataFrame(runtime)
if not runtime.empty:
    ind = runtime[runtime["grouping"] == "individual"].set_index(["variant", "dataset", "model", "method"])["total_s"]
    idx = pd.MultiIndex.from_frame(runtime[["variant", "dataset", "model", "method"]])
    runtime["speedup"] = ind.reindex(idx).to_numpy() / runtime["total_s"].to_numpy()
    # what the grouping costs next to the individual attribution it replaces
    runtime["grouping_share"] = runtime["grouping_s"].to_numpy() / ind.reindex(idx).to_numpy()
tables["runtime"] = runtime

# training
training = []
for p in inp.train:
    info = json.loads(Path(p).read_text())
    training.append({"dataset": info["dataset"], "model": info["model"], "seed": info["seed"], **info["metrics"],
                     "epochs": info["hparams"]["epochs"], "optimizer": info["hparams"]["optimizer"]})
tables["training"] = pd.DataFrame(training)

if "pruning" in out:
    tables["pruning"] = rows_table(inp.prune)

if "noisy_labels" in out:
    curves = []
    for curve, info in zip(inp.noisy_curve, inp.noisy_info):
        meta = json.loads(Path(info).read_text())
        frame = with_keys(pd.read_csv(curve), key_of(curve))
        frame["auroc"] = meta["auroc"]
        frame["k"] = meta["meta"].get("k")
        frame["n_flipped"] = meta["meta"].get("n_flipped")
        curves.append(frame)
    tables["noisy_labels"] = pd.concat(curves, ignore_index=True)
    tables["noisy_retraining"] = rows_table(inp.noisy)

if "lds" in out:
    parts = [with_keys(pd.read_csv(p), key_of(p), ["dataset", "model", "grouping", "group_size"]) for p in inp.lds]
    lds_table = pd.concat(parts, ignore_index=True)
    # the method column first, as in the other tables
    tables["lds"] = lds_table[KEYS + [c for c in lds_table.columns if c not in KEYS]]

for name, path in out.items():
    wio.write_csv(tables[name], path)
    log.info("%s: %d rows", path, len(tables[name]))

# summary.json (DVC metrics): accuracy on T after removing the top `removal`, attribution time, speedup
removal = snakemake.params.removal
summary = {"removal": removal, "retraining": {}, "baselines": {}}
summary_timing = {"retraining": {}}  # the part measured on this machine: apart, in summary.timing.json
ret = tables["retraining"]
at = ret[(ret["kind"] == "attribution") & (ret["fraction"] == removal)]
times = runtime[runtime["variant"] == "main"].set_index(KEYS) if not runtime.empty else None
for key, g in at.groupby(KEYS):
    name = "/".join(map(str, key[:3])) + f"/{key[3]}-{key[4]}"
    summary["retraining"][name] = {"accuracy_mean": round(float(g["accuracy"].mean()), 6),
                                   "seeds": int(g["seed"].nunique())}
    if times is not None and key in times.index:
        summary_timing["retraining"][name] = {"attribution_s": round(float(times.loc[key, "total_s"]), 4),
                                              "speedup": round(float(times.loc[key, "speedup"]), 3)}
base = ret[ret["kind"].isin(["random", "none"])]
for (dataset, model, kind), g in base.groupby(["dataset", "model", "kind"]):
    g = g[g["fraction"] == (removal if kind == "random" else 0.0)]
    summary["baselines"][f"{dataset}/{model}/{kind}"] = {"accuracy_mean": round(float(g["accuracy"].mean()), 6)}
if "noisy_labels" in tables:
    nl = tables["noisy_labels"].drop_duplicates(KEYS)
    summary["noisy_labels"] = {"/".join(map(str, r[KEYS[:3]])) + f"/{r['grouping']}-{r['group_size']}":
                               {"auroc": round(float(r["auroc"]), 6)} for _, r in nl.iterrows()}
if "pruning" in tables:
    pr = tables["pruning"]
    top = pr[(pr["kind"] == "attribution") & (pr["fraction"] == pr["fraction"].max())]
    summary["pruning"] = {"/".join(map(str, k[:3])) + f"/{k[3]}-{k[4]}": {"accuracy_mean": round(float(g["accuracy"].mean()), 6)}
                          for k, g in top.groupby(KEYS)}
wio.write_json(summary, snakemake.output.summary)
wio.write_json(summary_timing, snakemake.output.summary_timing)

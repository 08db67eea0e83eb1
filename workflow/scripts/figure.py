"""Draw one figure (ggda.plots) from the tidy tables and save it with its provenance."""

import os

import workflow_io as wio

os.environ.setdefault("MPLBACKEND", "Agg")  # files only, no display

log = wio.setup(snakemake, torch_threads=False)

import pandas as pd  # noqa: E402

from ggda import plots  # noqa: E402

name = snakemake.params.name
tables = {k: pd.read_csv(v) for k, v in snakemake.input.items() if k != "src"}
if name.startswith("ablation-"):
    dataset = name.removeprefix("ablation-")
    fig = plots.ablation(tables["retraining"], tables["runtime"], dataset, removal=snakemake.params.removal,
                         group_size=snakemake.params.group_size)
elif name == "removal-curves":
    fig = plots.removal_curves(tables["retraining"], group_size=snakemake.params.group_size)
elif name == "tradeoff":
    fig = plots.tradeoff(tables["retraining"], tables["runtime"], removal=snakemake.params.removal)
elif name == "pruning":
    fig = plots.pruning(tables["pruning"])
elif name == "lds":
    fig = plots.lds(tables["lds"], tables["runtime"])
elif name == "noisy-labels":
    fig = plots.noisy_labels(tables["noisy_labels"], tables["noisy_retraining"])
else:
    raise ValueError(f"unknown figure {name!r}")

outputs = [p for k, p in snakemake.output.items() if k != "provenance"]
inputs = [p for k, p in snakemake.input.items() if k != "src"]
record = plots.save(fig, outputs, snakemake.output.provenance, inputs=inputs,
                    config_hash=snakemake.params.config_hash, figure=name,
                    options={"removal": snakemake.params.removal, "group_size": snakemake.params.group_size})
log.info("wrote %s (commit %s)", outputs, (record["git"] or {}).get("commit"))

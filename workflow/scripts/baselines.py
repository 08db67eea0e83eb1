"""The baselines of the retraining score, once per data set x model: no removal, and random removal of
the same fractions with the same seeds."""

import numpy as np
import workflow_io as wio

log = wio.setup(snakemake)

from ggda.evaluation import retraining_score  # noqa: E402

p, t = snakemake.params.retrain, snakemake.params.targets
data, _ = wio.load_bundle(snakemake.input.data)
targets, _ = wio.target_subset(data.test, t["m"], t["seed"])
run = wio.load_runs([snakemake.input.run])[0]
# ggda.evaluation has no baselines-only call: a constant importance makes the "attribution" rows a
# tie-broken random removal, which is dropped here.
result = retraining_score(run, data, np.zeros(len(data.train)), fractions=p["fractions"], seeds=p["seeds"],
                          targets=targets, tie_seed=p["tie_seed"], baselines=True, device=snakemake.params.device,
                          progress=False)
rows = result.rows[result.rows["kind"] != "attribution"]
log.info("%s", rows.to_string())
wio.write_csv(rows, snakemake.output[0])

"""The baselines of the retraining score, once per data set x model: no removal, and random removal of
the same fractions with the same seeds."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle, target_subset  # noqa: E402
from ggda.evaluation import baseline_scores  # noqa: E402

p, t = snakemake.params.retrain, snakemake.params.targets
data, _ = load_bundle(snakemake.input.data)
targets, _ = target_subset(data.test, t["m"], t["seed"])
run = wio.load_runs([snakemake.input.run])[0]
result = baseline_scores(run, data, fractions=p["fractions"], seeds=p["seeds"], targets=targets,
                         device=snakemake.params.device, progress=False)
log.info("%s", result.rows.to_string())
wio.write_rows(result.rows, snakemake.output.rows)

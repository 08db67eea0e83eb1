"""Retraining score of the attributions of one grouping (every method): remove the top fractions,
retrain every seed, measure the targets."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle, target_subset  # noqa: E402
from ggda.attribution import Attribution  # noqa: E402
from ggda.evaluation import retraining_score  # noqa: E402

p, t = snakemake.params.retrain, snakemake.params.targets
data, _ = load_bundle(snakemake.input.data)
targets, _ = target_subset(data.test, t["m"], t["seed"])
run = wio.load_runs([snakemake.input.run])[0]
for method, scores, out in zip(snakemake.params.methods, snakemake.input.scores, snakemake.output.rows):
    importance = Attribution.load(scores).importance()
    result = retraining_score(run, data, importance, fractions=p["fractions"], seeds=p["seeds"], targets=targets,
                              tie_seed=p["tie_seed"], baselines=False, device=snakemake.params.device,
                              progress=False)
    log.info("%s: %r\n%s", method, result, result.summary().to_string())
    wio.write_rows(result.rows, out)

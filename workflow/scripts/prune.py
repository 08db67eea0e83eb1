"""Dataset pruning with the attributions of one grouping (every method): remove the least important
points for the validation split, retrain, measure test accuracy."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle  # noqa: E402
from ggda.attribution import Attribution  # noqa: E402
from ggda.evaluation import pruning  # noqa: E402

p = snakemake.params
data, _ = load_bundle(snakemake.input.data)
run = wio.load_runs([snakemake.input.run])[0]
for method, scores, out in zip(p.methods, snakemake.input.scores, snakemake.output.rows):
    importance = Attribution.load(scores).importance()
    result = pruning(run, data, importance, fractions=p.fractions, seeds=p.seeds, tie_seed=p.tie_seed,
                     baselines=True, device=p.device, progress=False)
    log.info("%s: %r\n%s", method, result, result.summary().to_string())
    wio.write_rows(result.rows, out)

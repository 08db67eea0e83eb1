"""Group linear datamodeling score of the attributions of one grouping (every method), from one set of
retrained subset models (ggda.evaluation.lds_many): one row per method."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle, target_subset  # noqa: E402
import pandas as pd  # noqa: E402

from ggda.attribution import Attribution  # noqa: E402
from ggda.evaluation import lds_many  # noqa: E402

p, t = snakemake.params.lds, snakemake.params.targets
data, _ = load_bundle(snakemake.input.data)
targets, _ = target_subset(data.test, t["m"], t["seed"])
run = wio.load_runs([snakemake.input.run])[0]
attributions = {m: Attribution.load(f) for m, f in zip(snakemake.params.methods, snakemake.input.scores)}
results = lds_many(run, data, attributions, subsets=p["subsets"], alpha=p["alpha"], targets=targets, seed=p["seed"],
                   device=snakemake.params.device, progress=False)
rows = []
for method, res in results.items():
    summary = res.summary().iloc[0].to_dict()
    log.info("%s: %r", method, res)
    rows.append({"method": method, **summary, "seed": p["seed"], "retrain_total_s": res.meta["retrain_total_s"]})
wio.write_rows(pd.DataFrame(rows), snakemake.output.rows)

"""Join the retraining rows of one attribution, made one seed per job (retrain.granularity seed), into the
file one job for every seed would have written: the same rows in the same order (fraction, then seed),
and their timings in the same order in the sidecar."""

import json

import pandas as pd
import workflow_io as wio

log = wio.setup(snakemake, torch_threads=False)

frames = [pd.read_csv(f) for f in snakemake.input.rows]        # one per seed, rows in fraction order
timings = [json.loads(open(f).read()) for f in snakemake.input.timing]
n = {len(f) for f in frames}
if len(n) != 1:
    raise ValueError(f"the per-seed files of {snakemake.output.rows} hold different numbers of rows: {sorted(n)}")
order = [(s, r) for r in range(n.pop()) for s in range(len(frames))]   # fraction-major, seed-minor
rows = pd.concat([frames[s].iloc[[r]] for s, r in order], ignore_index=True)
rows["retrain_s"] = [timings[s]["retrain_s"][r] for s, r in order]
log.info("%d rows from %d seeds", len(rows), len(frames))
wio.write_rows(rows, snakemake.output.rows)

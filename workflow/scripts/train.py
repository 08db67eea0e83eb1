"""Train one model (one seed) on a prepared data set and save it with its checkpoints."""

import shutil
from pathlib import Path

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle  # noqa: E402
from ggda import train  # noqa: E402

p = snakemake.params.train
data, _ = load_bundle(snakemake.input.data)
run = train.fit(snakemake.wildcards.model, data, p["hparams"], seed=int(snakemake.wildcards.seed),
                checkpoints=p["checkpoints"], device=snakemake.params.device, model_options=p["model_options"],
                progress=False)
folder = Path(snakemake.output.metrics).parent
shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # none left over from an earlier run
run.save(folder)  # model.pt and checkpoints first, metrics.json (the completion mark) last; each atomic
log.info("saved %s: %s", folder, run.metrics)

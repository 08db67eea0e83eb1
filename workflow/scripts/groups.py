"""Partition the training points into groups (ggda.grouping.make) and save them."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda import grouping  # noqa: E402

data, _ = wio.load_bundle(snakemake.input.data)
run = wio.load_runs([snakemake.input.run[1]])[0] if "run" in snakemake.input.keys() else None
groups = grouping.make(snakemake.wildcards.grouping, run, data, int(snakemake.wildcards.size),
                       device=snakemake.params.device, **snakemake.params.grouping)
log.info("%r", groups)
groups.save(snakemake.output[0])

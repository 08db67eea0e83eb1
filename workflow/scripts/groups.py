"""Partition the training points into groups (ggda.grouping.make) and save them."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle  # noqa: E402
from ggda import grouping  # noqa: E402

if snakemake.params.grouping["method"] in grouping.KMEANS_METHODS:
    # importing scikit-learn's clustering costs about a second in a fresh process: a one-time cost of the
    # job, like importing torch, not part of the grouping time the job records
    import sklearn.cluster  # noqa: E402, F401

data, _ = load_bundle(snakemake.input.data)
run = wio.load_runs([snakemake.input.run[1]])[0] if "run" in snakemake.input.keys() else None
spec = snakemake.params.grouping
groups = grouping.make(spec["method"], run, data, int(snakemake.wildcards.size), device=snakemake.params.device,
                       **spec["options"])
log.info("%r", groups)
groups.save(snakemake.output.groups)  # and output.timing beside it

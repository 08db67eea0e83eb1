"""Load a data set (downloading missing files into its root) or a table of the user's own, optionally
carve a validation split, and keep the prepared tensors for every later job."""

import workflow_io as wio

log = wio.setup(snakemake, torch_threads=False)

from ggda.data import save_bundle  # noqa: E402
import ggda.data  # noqa: E402

p = snakemake.params.data
if "table" in p["load"]:
    load = dict(p["load"])
    bundle = ggda.data.load_table(**load.pop("table"), name=snakemake.wildcards.dataset, **load)
else:
    bundle = ggda.data.load(snakemake.wildcards.dataset, **p["load"])
extra = {}
if p["validation"] is not None:
    from ggda.data import validation_split

    bundle, extra["validation"] = validation_split(bundle, p["validation"], seed=p["validation_seed"])
log.info("%r; extra splits: %s", bundle, {k: len(v) for k, v in extra.items()})

save_bundle(bundle, snakemake.output.bundle, extra)
wio.write_json({"name": bundle.name, "n_train": len(bundle.train), "n_test": len(bundle.test),
                "n_flipped": int(len(bundle.flipped)), **{f"n_{k}": len(v) for k, v in extra.items()},
                "params": p, "meta": {k: v for k, v in bundle.meta.items() if not k.endswith("_indices")}},
               snakemake.output.meta)

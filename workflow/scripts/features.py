"""Make one method's training-side or target-side features (ggda.featurize) and save them."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle, target_subset  # noqa: E402
import ggda  # noqa: E402

p = snakemake.params
data, extra = load_bundle(snakemake.input.data)
runs = wio.load_runs(snakemake.input.runs)[:p.ensemble]
run = runs if p.method == "trak" else runs[0]
if snakemake.rule == "target_features":
    t = p.targets
    targets, _ = target_subset(data.test if t["split"] == "test" else extra[t["split"]], t["m"], t["seed"])
    curvature = snakemake.input.get("curvature")
    features = ggda.featurize(p.method, run, data.train, targets, features=curvature, device=p.device,
                              progress=False, **p.options)
else:
    features = ggda.featurize(p.method, run, data.train, device=p.device, progress=False, **p.options)
log.info("%s on %s/%s: %r, timing %s", p.method, data.name, snakemake.wildcards.model, features, features.timing)
features.save(snakemake.output.features)  # also writes output.timing beside it

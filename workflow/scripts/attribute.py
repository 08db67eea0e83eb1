"""Attribute the targets to the groups of training points with every configured method (ggda.attribute),
from the cache stage's features, each timed on its own, and save the scores (.npz), their timing (.timing.json)
and what describes them (.json)."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle, target_subset  # noqa: E402
from ggda.devices import resolve_device  # noqa: E402
import ggda  # noqa: E402
from ggda.grouping import Groups  # noqa: E402

p = snakemake.params
data, extra = load_bundle(snakemake.input.data)
t = p.targets
targets, _ = target_subset(data.test if t["split"] == "test" else extra[t["split"]], t["m"], t["seed"])
groups = Groups.load(snakemake.input.groups)
runs = wio.load_runs(snakemake.input.runs)
device = str(resolve_device(p.device))

for method, scores_path, info_path in zip(p.methods, snakemake.output.scores, snakemake.output.info):
    ensemble = runs[:p.ensemble[method]]
    attr = ggda.attribute(method, ensemble if method == "trak" else ensemble[0], data.train, targets, groups,
                          features=list(snakemake.input[f"features_{method}"]), device=p.device, progress=False,
                          **p.options[method])
    attr.timing["training_s"] = sum(run.wall_s for run in (ensemble if method == "trak" else ensemble[:1]))
    log.info("%s on %s/%s, %r: timing %s", method, data.name, snakemake.wildcards.model, groups, attr.timing)
    attr.save(scores_path)
    wio.write_json({"method": method, "grouping": groups.method, "group_size": groups.group_size,
                    "n_train": groups.n, "n_targets": len(targets), "target_split": t["split"],
                    "sizes": groups.size_summary(), "options": attr.options,
                    "ensemble": len(ensemble), "device": device}, info_path)

"""Noisy-label detection with one grouping and every configured method: suspicion ranking, detection
curve, AUROC, and retraining after removing the most suspicious points."""

import workflow_io as wio

log = wio.setup(snakemake)

from ggda.data import load_bundle  # noqa: E402
from ggda.evaluation import noisy_label_detection  # noqa: E402
from ggda.grouping import Groups  # noqa: E402

p = snakemake.params
data, _ = load_bundle(snakemake.input.data)
runs = wio.load_runs(snakemake.input.runs)
groups = Groups.load(snakemake.input.groups)
out = snakemake.output
for i, method in enumerate(p.methods):
    ensemble = runs[:p.ensemble[method]]
    result = noisy_label_detection(ensemble if method == "trak" else ensemble[0], data, method, groups,
                                   inspect=p.inspect, remove_fraction=p.remove_fraction, seeds=p.seeds,
                                   attribution_options=p.options[method], tie_seed=p.tie_seed, device=p.device,
                                   progress=False)
    log.info("%s: %r\n%s", method, result, result.curve.to_string())
    meta = dict(result.meta)
    wio.write_rows(result.rows, out.rows[i], timing={"attribution_s": result.attribution_s,
                                                     "timing": meta.pop("timing", {})})
    wio.write_csv(result.curve, out.curve[i])
    wio.write_json({"auroc": result.auroc, "sizes": groups.size_summary(), "meta": meta}, out.info[i])

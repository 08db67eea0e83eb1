# Attribution: one job per data set x model x grouping x group size, running every configured method
# (ggda.attribute) on the same grouping. Per method, the .npz keeps the scores (targets x groups) and the
# .json beside it the timing breakdown and the group size distribution (for the runtime table).
# TRAK gets the whole ensemble (seeds 0..M-1), IF and TracIn the base model (seed 0). What does not depend
# on the grouping comes from the cache stage (cache.smk): IF's curvature and its targets' solutions, every
# method's target features, and with the factored projection the training points' own features. The
# timing of each attribution still counts that cached work (timing.cached_s says how much), so the
# runtime table compares whole attributions.
#
# Why one job for all methods: a fresh Python process that imports torch and ggda costs several CPU
# seconds, more than most attributions of the default config; one job per method tripled the job count
# and the run time (measured). Each method is still timed on its own, inside the job.


ATTRIBUTE_VARIANTS = [("", "main", config["attribution"]["methods"])]
if config["pruning"]["enabled"]:
    ATTRIBUTE_VARIANTS.append(("pruning/", "pruning", config["pruning"]["methods"]))

for _variant, _tag, _methods in ATTRIBUTE_VARIANTS:

    rule:
        name:
            "attribute" if _tag == "main" else f"attribute_{_tag}"
        output:
            scores=[f"results/{{dataset}}/{{model}}/{_variant}attr/{m}/{{grouping}}-{{size}}.npz" for m in _methods],
            info=[f"results/{{dataset}}/{{model}}/{_variant}attr/{m}/{{grouping}}-{{size}}.json" for m in _methods],
            timing=[f"results/{{dataset}}/{{model}}/{_variant}attr/{m}/{{grouping}}-{{size}}.timing.json"
                    for m in _methods],
        input:
            unpack(attribute_inputs(_variant, _methods)),
        params:
            methods=_methods,
            options=lambda wc, methods=_methods: {m: method_options(wc.dataset, wc.model, m) for m in methods},
            ensemble={m: ensemble_size(m) for m in _methods},
            targets=target_params(_variant),
            device=DEVICE,
        log:
            f"logs/attribute/{{dataset}}/{{model}}/{_variant}{{grouping}}-{{size}}.log",
        benchmark:
            f"results/benchmarks/attribute/{{dataset}}/{{model}}/{_variant}{{grouping}}-{{size}}.tsv"
        threads: THREADS
        resources:
            **job_resources("attribute" if _tag == "main" else f"attribute_{_tag}"),
            gpu=GPU,
        script:
            "../scripts/attribute.py"

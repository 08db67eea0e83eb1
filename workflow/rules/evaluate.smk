# Evaluation (ggda.evaluation): with retrain.granularity "grouping" (the default) one retraining job per
# grouping (data set x model x grouping x size) covers the attributions of every method, all removal
# fractions and all seeds (see attribute.smk for why methods share a job); with "seed" (clusters: many GPUs
# share the work) one job per grouping x method x seed, whose rows retrain_gather joins per method into the
# same file, byte for byte. The random and no-removal baselines are retrained once per data set x model in their own job.
# Side experiments: dataset pruning and noisy-label detection (config keys pruning, noisy_labels), and the
# group linear datamodeling score of every main attribution (config key lds): one job per grouping, whose
# S retrained subset models serve every method.
# The aggregation writes the tidy tables (results/tables/*.csv) and results/summary.json.


MAIN_METHODS = config["attribution"]["methods"]


if config["retrain"]["granularity"] == "grouping":

    rule retrain:
        output:
            rows=[retrain_file("{dataset}", "{model}", m, "{grouping}", "{size}") for m in MAIN_METHODS],
            timing=[timing_file(retrain_file("{dataset}", "{model}", m, "{grouping}", "{size}")) for m in MAIN_METHODS],
        input:
            data=lambda wc: data_file(wc.dataset),
            run=lambda wc: run_files(wc.dataset, wc.model, 0)[1],
            scores=lambda wc: [attr_file(wc.dataset, wc.model, m, wc.grouping, wc.size) for m in MAIN_METHODS],
            src=code_inputs("retrain"),
        params:
            methods=MAIN_METHODS,
            retrain=retrain_params,
            targets=target_params(""),
            device=DEVICE,
        log:
            "logs/retrain/{dataset}/{model}/{grouping}-{size}.log",
        benchmark:
            "results/benchmarks/retrain/{dataset}/{model}/{grouping}-{size}.tsv"
        threads: THREADS
        resources:
            **job_resources("retrain"),
            gpu=GPU,
        script:
            "../scripts/retrain.py"

else:  # granularity seed: one job per grouping x method x seed, then the rows gathered per method

    rule retrain_seed:
        output:
            rows=[retrain_file("{dataset}", "{model}", "{method}", "{grouping}", "{size}", "{seed}")],
            timing=[timing_file(retrain_file("{dataset}", "{model}", "{method}", "{grouping}", "{size}", "{seed}"))],
        input:
            data=lambda wc: data_file(wc.dataset),
            run=lambda wc: run_files(wc.dataset, wc.model, 0)[1],
            scores=lambda wc: [attr_file(wc.dataset, wc.model, wc.method, wc.grouping, wc.size)],
            src=code_inputs("retrain"),
        params:
            methods=lambda wc: [wc.method],
            retrain=retrain_params,
            targets=target_params(""),
            device=DEVICE,
        log:
            "logs/retrain/{dataset}/{model}/{method}/{grouping}-{size}/seed{seed}.log",
        benchmark:
            "results/benchmarks/retrain/{dataset}/{model}/{method}/{grouping}-{size}/seed{seed}.tsv"
        threads: THREADS
        resources:
            **job_resources("retrain_seed"),
            gpu=GPU,
        script:
            "../scripts/retrain.py"

    rule retrain_gather:
        output:
            rows=retrain_file("{dataset}", "{model}", "{method}", "{grouping}", "{size}"),
            timing=timing_file(retrain_file("{dataset}", "{model}", "{method}", "{grouping}", "{size}")),
        input:
            rows=lambda wc: [retrain_file(wc.dataset, wc.model, wc.method, wc.grouping, wc.size, s)
                             for s in range(config["retrain"]["seeds"])],
            timing=lambda wc: [timing_file(retrain_file(wc.dataset, wc.model, wc.method, wc.grouping, wc.size, s))
                               for s in range(config["retrain"]["seeds"])],
            src=code_inputs("gather_rows"),
        log:
            "logs/retrain_gather/{dataset}/{model}/{method}/{grouping}-{size}.log",
        benchmark:
            "results/benchmarks/retrain_gather/{dataset}/{model}/{method}/{grouping}-{size}.tsv"
        threads: 1
        script:
            "../scripts/gather_rows.py"


BASELINES = "results/{dataset}/{model}/retrain/baselines.csv"


if config["retrain"]["granularity"] == "grouping":

    rule baselines:
        output:
            rows=BASELINES,
            timing=timing_file(BASELINES),
        input:
            data=lambda wc: data_file(wc.dataset),
            run=lambda wc: run_files(wc.dataset, wc.model, 0)[1],
            src=code_inputs("baselines"),
        params:
            retrain=retrain_params,
            targets=target_params(""),
            device=DEVICE,
        log:
            "logs/baselines/{dataset}/{model}.log",
        benchmark:
            "results/benchmarks/baselines/{dataset}/{model}.tsv"
        threads: THREADS
        resources:
            **job_resources("baselines"),
            gpu=GPU,
        script:
            "../scripts/baselines.py"

else:  # granularity seed: one job per seed (no removal and every random fraction), gathered

    rule baselines_seed:
        output:
            rows="results/{dataset}/{model}/retrain/baselines/seed{seed}.csv",
            timing="results/{dataset}/{model}/retrain/baselines/seed{seed}.timing.json",
        input:
            data=lambda wc: data_file(wc.dataset),
            run=lambda wc: run_files(wc.dataset, wc.model, 0)[1],
            src=code_inputs("baselines"),
        params:
            retrain=retrain_params,
            targets=target_params(""),
            device=DEVICE,
        log:
            "logs/baselines/{dataset}/{model}/seed{seed}.log",
        benchmark:
            "results/benchmarks/baselines/{dataset}/{model}/seed{seed}.tsv"
        threads: THREADS
        resources:
            **job_resources("baselines_seed"),
            gpu=GPU,
        script:
            "../scripts/baselines.py"

    rule baselines_gather:
        output:
            rows=BASELINES,
            timing=timing_file(BASELINES),
        input:
            rows=lambda wc: [f"results/{wc.dataset}/{wc.model}/retrain/baselines/seed{s}.csv"
                             for s in range(config["retrain"]["seeds"])],
            timing=lambda wc: [f"results/{wc.dataset}/{wc.model}/retrain/baselines/seed{s}.timing.json"
                               for s in range(config["retrain"]["seeds"])],
            src=code_inputs("gather_rows"),
        log:
            "logs/baselines_gather/{dataset}/{model}.log",
        benchmark:
            "results/benchmarks/baselines_gather/{dataset}/{model}.tsv"
        threads: 1
        script:
            "../scripts/gather_rows.py"


if config["pruning"]["enabled"]:
    PRUNING_METHODS = config["pruning"]["methods"]

    rule prune:
        output:
            rows=[f"results/{{dataset}}/{{model}}/pruning/prune/{m}/{{grouping}}-{{size}}.csv" for m in PRUNING_METHODS],
            timing=[f"results/{{dataset}}/{{model}}/pruning/prune/{m}/{{grouping}}-{{size}}.timing.json"
                    for m in PRUNING_METHODS],
        input:
            data=lambda wc: data_file(wc.dataset, "pruning"),
            run=lambda wc: run_files(wc.dataset, wc.model, 0, "pruning/")[1],
            scores=lambda wc: [attr_file(wc.dataset, wc.model, m, wc.grouping, wc.size, "pruning/")
                               for m in PRUNING_METHODS],
            src=code_inputs("prune"),
        params:
            methods=PRUNING_METHODS,
            fractions=config["pruning"]["fractions"],
            seeds=list(range(config["pruning"]["seeds"])),
            tie_seed=config["retrain"]["tie_seed"],
            device=DEVICE,
        log:
            "logs/prune/{dataset}/{model}/{grouping}-{size}.log",
        benchmark:
            "results/benchmarks/prune/{dataset}/{model}/{grouping}-{size}.tsv"
        threads: THREADS
        resources:
            **job_resources("prune"),
            gpu=GPU,
        script:
            "../scripts/prune.py"


if config["noisy_labels"]["enabled"]:
    NOISY_METHODS = config["noisy_labels"]["methods"]
    _NOISY = "results/{{dataset}}/{{model}}/noisy/detect/{m}/{{grouping}}-{{size}}"

    rule noisy_labels:
        output:
            rows=[_NOISY.format(m=m) + ".csv" for m in NOISY_METHODS],
            curve=[_NOISY.format(m=m) + ".curve.csv" for m in NOISY_METHODS],
            info=[_NOISY.format(m=m) + ".json" for m in NOISY_METHODS],
            timing=[_NOISY.format(m=m) + ".timing.json" for m in NOISY_METHODS],
        input:
            data=lambda wc: data_file(wc.dataset, "noisy"),
            runs=lambda wc: [run_files(wc.dataset, wc.model, s, "noisy/")[1]
                             for s in range(max(ensemble_size(m) for m in NOISY_METHODS))],
            groups=lambda wc: groups_file(wc.dataset, wc.model, wc.grouping, wc.size, "noisy/"),
            groups_timing=lambda wc: timing_file(groups_file(wc.dataset, wc.model, wc.grouping, wc.size, "noisy/")),
            src=code_inputs("noisy_labels"),
        params:
            methods=NOISY_METHODS,
            options=lambda wc: {m: method_options(wc.dataset, wc.model, m) for m in NOISY_METHODS},
            ensemble={m: ensemble_size(m) for m in NOISY_METHODS},
            inspect=config["noisy_labels"]["inspect"],
            remove_fraction=config["noisy_labels"]["remove"],
            seeds=list(range(config["noisy_labels"]["seeds"])),
            tie_seed=config["retrain"]["tie_seed"],
            device=DEVICE,
        log:
            "logs/noisy_labels/{dataset}/{model}/{grouping}-{size}.log",
        benchmark:
            "results/benchmarks/noisy_labels/{dataset}/{model}/{grouping}-{size}.tsv"
        threads: THREADS
        resources:
            **job_resources("noisy_labels"),
            gpu=GPU,
        script:
            "../scripts/noisy_labels.py"


if config["lds"]["enabled"]:

    rule lds:
        output:
            rows="results/{dataset}/{model}/lds/{grouping}-{size}.csv",
            timing="results/{dataset}/{model}/lds/{grouping}-{size}.timing.json",
        input:
            data=lambda wc: data_file(wc.dataset),
            run=lambda wc: run_files(wc.dataset, wc.model, 0)[1],
            scores=lambda wc: [attr_file(wc.dataset, wc.model, m, wc.grouping, wc.size) for m in MAIN_METHODS],
            src=code_inputs("lds"),
        params:
            methods=MAIN_METHODS,
            lds={k: config["lds"][k] for k in ("subsets", "alpha", "seed")},
            targets=target_params(""),
            device=DEVICE,
        log:
            "logs/lds/{dataset}/{model}/{grouping}-{size}.log",
        benchmark:
            "results/benchmarks/lds/{dataset}/{model}/{grouping}-{size}.tsv"
        threads: THREADS
        resources:
            **job_resources("lds"),
            gpu=GPU,
        script:
            "../scripts/lds.py"


# ------------------------------------------------------------------------------------------ aggregation


rule aggregate:
    output:
        tables=[f"results/tables/{t}.csv" for t in TABLES],
        summary="results/summary.json",
        summary_timing="results/summary.timing.json",
    input:
        unpack(aggregate_inputs),
    params:
        removal=config["figures"]["removal"],
        tables=TABLES,
        planned=aggregate_keys,
    log:
        "logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    threads: 1
    script:
        "../scripts/aggregate.py"

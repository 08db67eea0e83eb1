# Training: one job per data set x model x seed. Seed 0 is the base model (attributed, grouped, and the
# hyper-parameters every retraining reuses); seeds 1..M-1 complete TRAK's ensemble.


rule train:
    output:
        model="results/{dataset}/{model}/{variant}train/seed{seed}/model.pt",
        metrics="results/{dataset}/{model}/{variant}train/seed{seed}/metrics.json",
        timing="results/{dataset}/{model}/{variant}train/seed{seed}/metrics.timing.json",
        checkpoints=directory("results/{dataset}/{model}/{variant}train/seed{seed}/checkpoints"),
    input:
        data=lambda wc: data_file(wc.dataset, VARIANT_VIEW[wc.variant]),
        src=code_inputs("train"),
    params:
        train=train_params,
        device=DEVICE,
    log:
        "logs/train/{dataset}/{model}/{variant}seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{model}/{variant}seed{seed}.tsv"
    threads: THREADS
    resources:
        **job_resources("train"),
        gpu=GPU,
    script:
        "../scripts/train.py"

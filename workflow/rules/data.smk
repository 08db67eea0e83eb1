# Data: download (or find under root) the published files, or read the user's table (datasets[].table),
# subset, add label noise, scale; keep the
# prepared tensors in results/{dataset}/data/{view}.pt for every later job.
#   main     the data set of the main experiment
#   noisy    the same with noisy_labels.noise_rate of the training labels flipped
#   pruning  the main data set with a validation split carved out of its training part


rule data:
    output:
        bundle="results/{dataset}/data/{view}.pt",
        meta="results/{dataset}/data/{view}.json",
    input:
        code_inputs("data"),
        table=table_files,
    params:
        data=data_params,
    wildcard_constraints:
        view="main|noisy|pruning",
    log:
        "logs/data/{dataset}-{view}.log",
    benchmark:
        "results/benchmarks/data/{dataset}-{view}.tsv"
    threads: 1
    script:
        "../scripts/data.py"

# Grouping: one job per data set x model x grouping x group size. {grouping} is the grouping's name (its
# method unless the config names it); its method and options come from the config (grouping_spec).
# repr-kmeans and grad-kmeans need the base model (seed 0); individual, random and kmeans do not, so
# retraining the model does not regroup them.


rule groups:
    output:
        groups="results/{dataset}/{model}/{variant}groups/{grouping}-{size}.npz",
        timing="results/{dataset}/{model}/{variant}groups/{grouping}-{size}.timing.json",
    input:
        unpack(groups_inputs),
    params:
        grouping=groups_params,
        device=DEVICE,
    log:
        "logs/groups/{dataset}/{model}/{variant}{grouping}-{size}.log",
    benchmark:
        "results/benchmarks/groups/{dataset}/{model}/{variant}{grouping}-{size}.tsv"
    threads: THREADS
    resources:
        **job_resources("groups"),
        gpu=lambda wc: GPU if grouping_spec(wc)["method"] in MODEL_GROUPINGS else 0,
    script:
        "../scripts/groups.py"

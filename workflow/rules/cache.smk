# The cache stage: what an attribution computes that does not depend on the grouping, made once per
# data set x model (x variant) x method and read by every grouping's attribution job (ggda.featurize).
#
#   cache/{method}/train.npz     the training side, once per model: IF's curvature (its Cholesky factor
#                                with the exact solver) and mean gradient; TracIn's and TRAK's per-point
#                                features with the factored projection (a group's feature is the sum of
#                                its members'). Only scheduled where there is something to keep
#                                (cache_sides): with the dense projection group gradients are computed
#                                by each attribution job, as the paper does.
#   cache/{method}/targets.npz   the target side, once per model and target set: every method's target
#                                features, and IF's solutions H^-1 grad L(z), the expensive part with CG.
#   cache/{method}/*.timing.json what making each cost (kept apart so that the .npz files are the same
#                                bytes on every run; attribution jobs count it in their timing)
#
# One job per method and side, so that changing one method's options, or the targets, reruns only the
# artifacts that depend on them (params hold only the options that change features).


rule train_features:
    output:
        features="results/{dataset}/{model}/{variant}cache/{method}/train.npz",
        timing="results/{dataset}/{model}/{variant}cache/{method}/train.timing.json",
    input:
        unpack(features_inputs("train")),
    params:
        method=lambda wc: wc.method,
        options=lambda wc: feature_options(wc.dataset, wc.model, wc.method),
        ensemble=lambda wc: ensemble_size(wc.method),
        device=DEVICE,
    log:
        "logs/cache/{dataset}/{model}/{variant}{method}-train.log",
    benchmark:
        "results/benchmarks/cache/{dataset}/{model}/{variant}{method}-train.tsv"
    threads: THREADS
    resources:
        **job_resources("train_features"),
        gpu=GPU,
    script:
        "../scripts/features.py"


rule target_features:
    output:
        features="results/{dataset}/{model}/{variant}cache/{method}/targets.npz",
        timing="results/{dataset}/{model}/{variant}cache/{method}/targets.timing.json",
    input:
        unpack(features_inputs("targets")),
    params:
        method=lambda wc: wc.method,
        options=lambda wc: feature_options(wc.dataset, wc.model, wc.method),
        ensemble=lambda wc: ensemble_size(wc.method),
        targets=lambda wc: target_params(wc.variant),
        device=DEVICE,
    log:
        "logs/cache/{dataset}/{model}/{variant}{method}-targets.log",
    benchmark:
        "results/benchmarks/cache/{dataset}/{model}/{variant}{method}-targets.tsv"
    threads: THREADS
    resources:
        **job_resources("target_features"),
        gpu=GPU,
    script:
        "../scripts/features.py"

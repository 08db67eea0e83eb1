# Figures (ggda.plots), from the tidy tables only; each with a provenance JSON beside it.
# One job per figure: `snakemake results/figures/tradeoff.png` makes just that one.


rule figure:
    output:
        **_figure_outputs(),
        provenance="results/figures/{name}.provenance.json",
    input:
        unpack(figure_tables),
        src=code_inputs("figure"),
    params:
        name="{name}",
        removal=config["figures"]["removal"],
        group_size=config["figures"]["group_size"],
        config_hash=CONFIG_HASH,
    wildcard_constraints:
        name="ablation-[a-z0-9_]+|removal-curves|tradeoff|pruning|noisy-labels|lds",
    log:
        "logs/figures/{name}.log",
    benchmark:
        "results/benchmarks/figures/{name}.tsv"
    threads: 1
    script:
        "../scripts/figure.py"

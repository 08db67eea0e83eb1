# Cluster resources of the model-touching rules (mem_mb, runtime in minutes), scaled from the data and
# model sizes by workflow/scripts/job_resources.py: each rule's work counted in trainings of its model
# on its data set (with the configured hyper-parameters, epochs and rows). Local runs ignore runtime and
# only schedule by mem_mb when `--resources mem_mb=...` is given; a profile's set-resources wins over
# these estimates for the rules it names.

JOB_RESOURCES = _load_script_module("job_resources")
HPARAMS = SIGNATURES.load_module(REPO / "ggda" / "hparams.py")
TABLE_FORMAT = SIGNATURES.load_module(REPO / "ggda" / "data" / "table_format.py")


@functools.cache
def _facts(dataset):
    """(training rows, numbers per example, classes) of a data set: the registry's, or a table's as
    ggda.data.load_table will encode it (table_format.encoded_shape reads it once per parse); a table that
    cannot be read here (say Parquet without pyarrow) is planned as 100,000 rows of 100 numbers, 2 classes."""
    if dataset not in TABLE_DATASETS:
        info = DATA_REGISTRY.REGISTRY[dataset]
        return info.train_rows, info.example_size, info.num_classes
    table = TABLE_DATASETS[dataset]
    keys = ("path", "label", "features", "categorical", "test", "test_fraction")
    facts = TABLE_FORMAT.encoded_shape(**{k: table[k] for k in keys if k in table})
    return facts if facts is not None else (100_000, 100, 2)


def _rows(dataset):
    """Training rows of the data set as configured (n_train caps the published split)."""
    published = _facts(dataset)[0]
    cap = dataset_entry(dataset)["n_train"]
    return published if cap is None else min(cap, published)


def _sizes(dataset, model):
    """(rows, numbers per example, parameter count, minutes per training) of a data set x model."""
    _, example_size, classes = _facts(dataset)
    entry = dataset_entry(dataset)
    options = entry.get("model_options", {}).get(model, {})
    hidden = tuple(options.get("hidden", MODEL_CATALOG.MLP_HIDDEN.get(model, ())))
    params = JOB_RESOURCES.parameters(model, example_size, classes, hidden)
    hp = HPARAMS.default_hparams(dataset, model, **entry.get("hparams", {}).get(model, {}))
    full_batch = hp.optimizer == "lbfgs"
    rows = _rows(dataset)
    minutes = JOB_RESOURCES.training_minutes(model, rows, hp.max_iter if full_batch else hp.epochs, full_batch)
    return rows, example_size, params, minutes


def _passes_per_attribution():
    """Gradient passes of an attribution, in trainings' worth: TracIn one per checkpoint, TRAK one per
    ensemble model, IF's curvature and solve a few."""
    return 0.2 * max(config["train"]["checkpoints"], config["train"]["ensemble"], 3)


def _work(rule, wc):
    """The rule's work per job, in trainings."""
    retrain, pruning, noisy = config["retrain"], config["pruning"], config["noisy_labels"]
    return {
        "train": lambda: 1,
        "groups": lambda: 0.2,
        "train_features": _passes_per_attribution,
        "target_features": _passes_per_attribution,
        "attribute": lambda: _passes_per_attribution() * len(config["attribution"]["methods"]),
        "attribute_pruning": lambda: _passes_per_attribution() * len(pruning["methods"]),
        "retrain": lambda: len(config["attribution"]["methods"]) * len(retrain["fractions"]) * retrain["seeds"],
        "retrain_seed": lambda: len(retrain["fractions"]),
        "baselines": lambda: retrain["seeds"] * (1 + len(retrain["fractions"])),
        "baselines_seed": lambda: 1 + len(retrain["fractions"]),
        "prune": lambda: len(pruning["methods"]) * pruning["seeds"] * (1 + 2 * len(pruning["fractions"])),
        "noisy_labels": lambda: len(noisy["methods"]) * (noisy["seeds"] * 4 + _passes_per_attribution()),
        "lds": lambda: config["lds"]["subsets"],
    }[rule]()


#: Rules whose jobs hold float64 features of every training row, per ensemble model or checkpoint.
FEATURE_RULES = ("train_features", "attribute", "attribute_pruning", "noisy_labels")


def job_resources(rule):
    """``resources:`` entries mem_mb and runtime of ``rule`` (functions of a job's wildcards and attempt)."""

    def mem_mb(wildcards, attempt):
        rows, size, params, _ = _sizes(wildcards.dataset, wildcards.model)
        copies = max(config["train"]["ensemble"], config["train"]["checkpoints"]) if rule in FEATURE_RULES else 0
        return JOB_RESOURCES.memory_mb(params, rows, size, copies, attempt)

    def runtime(wildcards, attempt):
        minutes = _sizes(wildcards.dataset, wildcards.model)[3]
        return JOB_RESOURCES.runtime_minutes(_work(rule, wildcards), minutes, attempt)

    return {"mem_mb": mem_mb, "runtime": runtime}

# Config checks that need the library's facts: which models take which data, which data sets need files,
# and the parameters of the function each option block is passed to. They run when the workflow is parsed,
# so `snakemake -n` already rejects a config whose jobs would fail, and they read ggda's source (an AST
# walk) or its stdlib-only modules (data registry, model catalog), never importing ggda or torch.



def _check_keys(options: dict, accepted: tuple[str, frozenset[str]], key: str) -> None:
    """Every key of an option block must be a parameter of the function it is passed to."""
    where, names = accepted
    for name in options:
        if name not in names:
            _fail(f"{key}.{name}", f"not an option of {where} (it takes: {', '.join(sorted(names)) or 'none'})")


def _check_model(dataset: str, model: str, key: str) -> None:
    """The model must take the data set's inputs (else ggda.models.build fails in the train job)."""
    kind = dataset_kind(dataset)
    takes = MODEL_CATALOG.INPUT_KINDS[model]
    if kind not in takes:
        fits = MODEL_CATALOG.models_for(kind)
        _fail(key, f"model {model!r} takes {' or '.join(takes)} data, and {dataset!r} is a {kind} data set: "
                   f"use {fits[0] if len(fits) == 1 else 'one of ' + ', '.join(fits)} on it")


def _check_files(i: int, entry: dict) -> None:
    """A table's files must exist; with download off, the folder the data job reads must exist (the bundled
    data sets need none)."""
    if "table" in entry:
        for key in ("path", "test"):
            if entry["table"][key] is not None and not Path(entry["table"][key]).is_file():
                _fail(f"datasets[{i}].table.{key}", f"{Path(entry['table'][key]).absolute()} is not a file")
        return
    if entry["download"] or DATA_REGISTRY.REGISTRY[entry["name"]].bundled:
        return
    if entry["root"] is not None:
        if not Path(entry["root"]).is_dir():  # relative to the working directory, as in the data job
            _fail(f"datasets[{i}].root", f"{Path(entry['root']).absolute()} is not a folder, and download is off: "
                                         f"set root to the folder holding the published files of "
                                         f"{entry['name']}, or turn download on")
        return
    default = DATA_REGISTRY.default_root(entry["name"])
    if not default.is_dir():
        _fail(f"datasets[{i}].download", f"download is off, root is not set and the default folder "
                                         f"{default.absolute()} does not exist: set datasets[{i}].root to the "
                                         f"folder holding the published files of {entry['name']}, or turn "
                                         f"download on")


def _grouping_lists() -> list[tuple[list, str]]:
    """[(groupings list, its key)] of every grouping list of the config that jobs will use."""
    out = [(config["groupings"], "groupings")]
    out += [(d["groupings"], f"datasets[{i}].groupings") for i, d in enumerate(config["datasets"]) if "groupings" in d]
    out += [(config[exp]["groupings"], f"{exp}.groupings") for exp in ("pruning", "noisy_labels")
            if config[exp]["enabled"]]
    return out


#: The side experiments that run: their data set and model are trained and attributed too.
SIDE_EXPERIMENTS = [config[exp] | {"key": exp} for exp in ("pruning", "noisy_labels") if config[exp]["enabled"]]


def _check_models_and_files() -> None:
    for i, d in enumerate(config["datasets"]):
        for j, model in enumerate(d["models"]):
            _check_model(d["name"], model, f"datasets[{i}].models[{j}]")
        _check_files(i, d)
    for side in SIDE_EXPERIMENTS:
        _check_model(side["dataset"], side["model"], f"{side['key']}.model")


def _check_option_keys() -> None:
    attribution = SIGNATURES.attribution_options(REPO)
    model_options = SIGNATURES.model_options(REPO)
    hparams = SIGNATURES.hparams_options(REPO)
    grouping = SIGNATURES.grouping_options(REPO)
    used = {name: set(d["models"]) for name, d in DATASETS.items()}  # the models trained on each data set
    for side in SIDE_EXPERIMENTS:
        used.setdefault(side["dataset"], set()).add(side["model"])
    for i, d in enumerate(config["datasets"]):
        for block in ("model_options", "attribution"):
            for model in d.get(block, {}):
                if model not in used[d["name"]]:
                    _fail(f"datasets[{i}].{block}.{model}", f"model {model!r} is not trained on {d['name']} "
                                                            f"(models {d['models']}), so these options would be "
                                                            f"ignored: drop them or add the model")
        for model, options in d.get("model_options", {}).items():
            _check_keys(options, model_options[model], f"datasets[{i}].model_options.{model}")
        for model, options in d.get("hparams", {}).items():
            _check_keys(options, hparams, f"datasets[{i}].hparams.{model}")
        for model, methods in d.get("attribution", {}).items():
            for method, options in methods.items():
                _check_keys(options, attribution[method], f"datasets[{i}].attribution.{model}.{method}")
    for method, options in config["attribution"]["options"].items():
        _check_keys(options, attribution[method], f"attribution.options.{method}")
    _check_keys(config["grouping_options"], grouping, "grouping_options")
    for groupings, key in _grouping_lists():
        for j, g in enumerate(groupings):
            _check_keys(g.get("options", {}), grouping, f"{key}[{j}].options")


def _check_noisy_label_options() -> None:
    """The noisy-label job ranks points by self-influence (ggda.attribution.self_influence), which takes the
    attribution options of its method except those it has no use for."""
    c = config["noisy_labels"]
    if not c["enabled"]:
        return
    self_influence = SIGNATURES.self_influence_options(REPO)
    overrides = dataset_entry(c["dataset"]).get("attribution", {}).get(c["model"], {})
    for method in c["methods"]:
        names = self_influence[method][1]
        for name in method_options(c["dataset"], c["model"], method):
            if name in names:
                continue
            key = (f"datasets[{list(DATASETS).index(c['dataset'])}].attribution.{c['model']}.{method}.{name}"
                   if name in overrides.get(method, {}) else f"attribution.options.{method}.{name}")
            _fail(key, f"the noisy-label experiment ranks points by {method}'s self-influence "
                       f"(ggda.attribution.self_influence), which does not take {name!r} (it takes: "
                       f"{', '.join(sorted(names))}): drop it, or leave {method} out of noisy_labels.methods")


_check_models_and_files()
_check_option_keys()
_check_noisy_label_options()

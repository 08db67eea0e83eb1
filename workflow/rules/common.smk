# Config validation (with defaults), cross-checks, and the helpers every rule file uses.
#
# Nothing here imports torch or ggda: parsing the workflow (e.g. a dry run of config/paper.yaml) stays fast
# and needs no data.

import hashlib
import json
import math
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate


# ------------------------------------------------------------------------------------------ validation


def _key_path(error, extra=None):
    """'retrain.fractions[0]' from a jsonschema error's path (and an extra key below it)."""
    out = ""
    for part in [*error.absolute_path, *([extra] if extra is not None else [])]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_error(cause):
    """(key, message) of a jsonschema ValidationError, in the user's terms."""
    if cause.validator in ("oneOf", "anyOf") and cause.context:
        # several alternatives failed (e.g. a positive integer or null): list what each wanted
        wants = list(dict.fromkeys(e.message for e in cause.context if len(e.absolute_path) == len(cause.absolute_path)))
        deeper = [e for e in cause.context if len(e.absolute_path) > len(cause.absolute_path)]
        if deeper:  # one alternative matched the shape and failed inside: report that one
            return _schema_error(min(deeper, key=lambda e: len(e.absolute_path)))
        return _key_path(cause), f"{cause.instance!r} is not valid: " + ", and ".join(wants)
    if cause.validator == "additionalProperties":
        known = sorted(cause.schema.get("properties", {}))
        unknown = sorted(set(cause.instance) - set(known))
        return _key_path(cause, unknown[0]), f"unknown key (known here: {', '.join(known)})"
    return _key_path(cause), cause.message


def _validate_config(cfg):
    try:
        validate(cfg, "../schemas/config.schema.yaml")
    except WorkflowError as err:
        import jsonschema

        cause = err.__cause__ or err.__context__  # validate() raises from within `except ValidationError`
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        key, message = _schema_error(cause)
        raise WorkflowError(
            f"Invalid config: key '{key}': {message}. "
            f"See config/README.md for every key and workflow/schemas/config.schema.yaml for the rules."
        ) from None


_validate_config(config)


def _fail(key, message):
    raise WorkflowError(f"Invalid config: key '{key}': {message}. See config/README.md.")


def _grouping_pairs(groupings, key):
    """[(method, size)] from a groupings list; individual is size 1, the others need sizes."""
    pairs = []
    for i, g in enumerate(groupings):
        if g["method"] == "individual":
            if g.get("sizes", [1]) != [1]:
                _fail(f"{key}[{i}].sizes", "individual groupings are singletons: omit sizes (or use [1])")
            pairs.append(("individual", 1))
        else:
            if "sizes" not in g:
                _fail(f"{key}[{i}].sizes", f"grouping {g['method']!r} needs a list of group sizes")
            pairs += [(g["method"], int(s)) for s in g["sizes"]]
    if len(set(pairs)) != len(pairs):
        _fail(key, f"a grouping and size is listed twice: {pairs}")
    return pairs


TEXT_DATASETS = {"qnli"}

DATASETS = {}  # name -> dataset entry (with defaults)
for _i, _d in enumerate(config["datasets"]):
    if _d["name"] in DATASETS:
        _fail(f"datasets[{_i}].name", f"data set {_d['name']!r} is listed twice")
    for _m in _d.get("hparams", {}):
        if _m not in _d["models"]:
            _fail(f"datasets[{_i}].hparams.{_m}", f"model {_m!r} is not among this data set's models {_d['models']}")
    DATASETS[_d["name"]] = _d


def groupings_of(dataset, key="groupings"):
    """[(grouping, size)] of the main experiment on ``dataset``."""
    entry = DATASETS[dataset]
    if "groupings" in entry:
        return _grouping_pairs(entry["groupings"], f"datasets[{list(DATASETS).index(dataset)}].groupings")
    return _grouping_pairs(config["groupings"], key)


for _name in DATASETS:
    _pairs = groupings_of(_name)
    if _name in TEXT_DATASETS and any(g == "kmeans" for g, _ in _pairs):
        _fail("groupings", f"'kmeans' clusters raw inputs, which the text data set {_name!r} does not have: "
                           f"give datasets[{list(DATASETS).index(_name)}].groupings without kmeans")

for _exp in ("pruning", "noisy_labels"):
    _c = config[_exp]
    if _c["enabled"]:
        _pairs = _grouping_pairs(_c["groupings"], f"{_exp}.groupings")
        if _c["dataset"] in TEXT_DATASETS and any(g == "kmeans" for g, _ in _pairs):
            _fail(f"{_exp}.groupings", "'kmeans' is not available on text data")

if config["figures"]["removal"] not in config["retrain"]["fractions"]:
    _fail("figures.removal", f"{config['figures']['removal']} is not one of retrain.fractions "
                             f"{config['retrain']['fractions']}")


# ------------------------------------------------------------------------------------------ environment

REPO = Path(workflow.basedir).resolve().parent


def _rel(path):
    """A path relative to the working directory when it lies below it (readable logs), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(Path(path).resolve())


# The scripts import the ggda of this checkout (the code listed as inputs below), whatever is installed.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)


def _cuda_visible():
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


#: GPUs requested by each model-touching job (resources gpu=...): with `--resources gpu=1` at most one
#: such job runs at a time on a GPU machine; CPU-only machines run them in parallel on their cores.
GPU = (1 if _cuda_visible() else 0) if config["gpu"] == "auto" else int(config["gpu"])
DEVICE = config["device"]
THREADS = config["threads"]

#: sha256 of the validated config (defaults filled in): recorded in every figure's provenance.
CONFIG_HASH = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ggda_sources(*names):
    """The ggda/ source files a rule uses (a module name, or a sub-package name for all its files)."""
    out = []
    for name in names:
        path = REPO / "ggda" / name
        if path.is_dir():
            out += sorted(_rel(p) for p in path.glob("*.py"))
        else:
            out.append(_rel(path.with_suffix(".py")))
    return out


# Per stage: the library code it runs (imports of ggda/__init__ are not listed: they do not change results).
SRC_DATA = ggda_sources("data", "_io")
SRC_TRAIN = ggda_sources("train", "hparams", "models")
SRC_GROUPS = ggda_sources("grouping")
SRC_ATTRIBUTE = ggda_sources("attribution", "gradients")
SRC_EVALUATE = ggda_sources("evaluation")
SRC_PLOTS = ggda_sources("plots", "provenance")
SCRIPTS = REPO / "workflow" / "scripts"


wildcard_constraints:
    dataset="[a-z0-9_]+",
    model="[a-z0-9-]+",
    method="if|tracin|trak",
    grouping="individual|random|kmeans|repr-kmeans|grad-kmeans",
    size="[0-9]+",
    seed="[0-9]+",
    variant="(|noisy/|pruning/)",


# ------------------------------------------------------------------------------------------ paths

#: A "variant" is a sub-experiment with its own data view and models: "" (the main experiment),
#: "noisy/" (trained on flipped labels) or "pruning/" (trained without the validation split).
VARIANT_VIEW = {"": "main", "noisy/": "noisy", "pruning/": "pruning"}


def data_file(dataset, view="main"):
    return f"results/{dataset}/data/{view}.pt"


def train_dir(dataset, model, seed, variant=""):
    return f"results/{dataset}/{model}/{variant}train/seed{seed}"


def run_files(dataset, model, seed, variant=""):
    d = train_dir(dataset, model, seed, variant)
    return [f"{d}/model.pt", f"{d}/metrics.json"]


def groups_file(dataset, model, grouping, size, variant=""):
    return f"results/{dataset}/{model}/{variant}groups/{grouping}-{size}.npz"


def attr_file(dataset, model, method, grouping, size, variant=""):
    return f"results/{dataset}/{model}/{variant}attr/{method}/{grouping}-{size}.npz"


def ensemble_size(method):
    return config["train"]["ensemble"] if method == "trak" else 1


def main_experiments():
    """[(dataset, model)] of the main experiment."""
    return [(d, m) for d, entry in DATASETS.items() for m in entry["models"]]


def main_attributions():
    """[(dataset, model, method, grouping, size)] of the main experiment."""
    return [(d, m, meth, g, s) for d, m in main_experiments() for meth in config["attribution"]["methods"]
            for g, s in groupings_of(d)]


def side_experiment(name):
    """(dataset, model, [(method, grouping, size)]) of 'pruning' or 'noisy_labels', or None when disabled."""
    c = config[name]
    if not c["enabled"]:
        return None
    pairs = _grouping_pairs(c["groupings"], f"{name}.groupings")
    return c["dataset"], c["model"], [(meth, g, s) for meth in c["methods"] for g, s in pairs]


def dataset_entry(dataset):
    """The data set's config entry; data sets used only by a side experiment get the defaults."""
    return DATASETS.get(dataset, {"name": dataset, "root": None, "download": True, "n_train": None,
                                  "n_test": None, "hparams": {}, "model_options": {}})


def figure_names():
    names = [f"ablation-{d}" for d in DATASETS] + ["fidelity", "tradeoff"]
    if config["pruning"]["enabled"]:
        names.append("pruning")
    if config["noisy_labels"]["enabled"]:
        names.append("noisy-labels")
    return names


def figure_files():
    return [f"results/figures/{n}.{fmt}" for n in figure_names() for fmt in config["figures"]["formats"]]


TABLES = ["retraining", "runtime", "training"]
if config["pruning"]["enabled"]:
    TABLES.append("pruning")
if config["noisy_labels"]["enabled"]:
    TABLES += ["noisy_labels", "noisy_retraining"]


def final_targets():
    return [f"results/tables/{t}.csv" for t in TABLES] + ["results/summary.json"] + figure_files()


# ------------------------------------------------------------------------------------------ rule inputs and params


# data.smk
def data_params(wildcards):
    entry = dataset_entry(wildcards.dataset)
    load = {"root": entry["root"], "download": entry["download"], "n_train": entry["n_train"],
            "n_test": entry["n_test"], "seed": config["data_seed"], "noise_rate": 0.0}
    validation = None
    if wildcards.view == "noisy":
        load["noise_rate"] = config["noisy_labels"]["noise_rate"]
    elif wildcards.view == "pruning":
        validation = config["pruning"]["validation"]
    return {"load": load, "validation": validation, "validation_seed": config["data_seed"]}


# train.smk
def train_params(wildcards):
    entry = dataset_entry(wildcards.dataset)
    return {
        "hparams": entry.get("hparams", {}).get(wildcards.model, {}),
        "model_options": entry.get("model_options", {}).get(wildcards.model, {}),
        "checkpoints": config["train"]["checkpoints"],
    }


# groups.smk
MODEL_GROUPINGS = ("repr-kmeans", "grad-kmeans")  # the groupings that need the base model


def groups_inputs(wildcards):
    out = {"data": data_file(wildcards.dataset, VARIANT_VIEW[wildcards.variant]), "src": SRC_GROUPS}
    if wildcards.grouping in MODEL_GROUPINGS:
        out["run"] = run_files(wildcards.dataset, wildcards.model, 0, wildcards.variant)
    return out


# attribute.smk
def method_options(dataset, model, method):
    """ggda.attribute options: attribution.options.<method>, updated by the data set's per-model ones."""
    opts = dict(config["attribution"]["options"][method])
    opts.update(dataset_entry(dataset).get("attribution", {}).get(model, {}).get(method, {}))
    return opts


# attribute.smk
def attribute_inputs(variant, methods):
    def inputs(wildcards):
        m = max(ensemble_size(meth) for meth in methods)
        return {
            "data": data_file(wildcards.dataset, VARIANT_VIEW[variant]),
            "groups": groups_file(wildcards.dataset, wildcards.model, wildcards.grouping, wildcards.size, variant),
            "runs": [run_files(wildcards.dataset, wildcards.model, s, variant)[1] for s in range(m)],
            "src": SRC_ATTRIBUTE,
        }

    return inputs


# attribute.smk
def target_params(variant):
    """The attribution targets: the test split (or a seeded subset of it); pruning: the validation split."""
    if variant == "pruning/":
        return {"split": "validation", "m": None, "seed": 0}
    return {"split": "test", "m": config["attribution"]["targets"], "seed": config["attribution"]["target_seed"]}


# evaluate.smk
def retrain_params(wildcards):
    return {"fractions": config["retrain"]["fractions"], "seeds": list(range(config["retrain"]["seeds"])),
            "tie_seed": config["retrain"]["tie_seed"]}


# evaluate.smk
def aggregate_inputs(wildcards):
    out = {"retrain": [], "baselines": [], "attr": [], "train": [], "prune": [], "noisy": [], "noisy_curve": [],
           "noisy_info": []}
    for d, m, meth, g, s in main_attributions():
        out["retrain"].append(f"results/{d}/{m}/retrain/{meth}/{g}-{s}.csv")
        out["attr"].append(attr_file(d, m, meth, g, s).replace(".npz", ".json"))
    for d, m in main_experiments():
        out["baselines"].append(f"results/{d}/{m}/retrain/baselines.csv")
        out["train"] += [run_files(d, m, seed)[1] for seed in range(config["train"]["ensemble"])]
    side = side_experiment("pruning")
    if side:
        d, m, runs = side
        out["prune"] = [f"results/{d}/{m}/pruning/prune/{meth}/{g}-{s}.csv" for meth, g, s in runs]
        out["attr"] += [attr_file(d, m, meth, g, s, "pruning/").replace(".npz", ".json") for meth, g, s in runs]
    side = side_experiment("noisy_labels")
    if side:
        d, m, runs = side
        base = [f"results/{d}/{m}/noisy/detect/{meth}/{g}-{s}" for meth, g, s in runs]
        out["noisy"] = [f"{b}.csv" for b in base]
        out["noisy_curve"] = [f"{b}.curve.csv" for b in base]
        out["noisy_info"] = [f"{b}.json" for b in base]
    return out


# figures.smk
def figure_tables(wildcards):
    name = wildcards.name
    if name.startswith("ablation-") or name in ("fidelity", "tradeoff"):
        tables = ["retraining", "runtime"]
    elif name == "pruning":
        tables = ["pruning"]
    elif name == "noisy-labels":
        tables = ["noisy_labels", "noisy_retraining"]
    else:
        raise WorkflowError(f"unknown figure {name!r}; the figures are: {', '.join(figure_names())}")
    return {t: f"results/tables/{t}.csv" for t in tables}


# figures.smk
def _figure_outputs():
    out = {}
    for fmt in config["figures"]["formats"]:
        out[fmt] = report(
            f"results/figures/{{name}}.{fmt}",
            caption="../report/figure.rst",
            category="Figures",
            subcategory="{name}",
            labels={"figure": "{name}", "format": fmt},
        )
    return out

# Config validation (with defaults), cross-checks, and the helpers every rule file uses.
#
# Nothing here imports torch or ggda: parsing the workflow (e.g. a dry run of config/paper.yaml) stays fast
# and needs no data.

import functools
import hashlib
import json
import math
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
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


#: Old config keys still accepted: {old: new}. The old block is merged over the new one (a user's config file
#: written for the old name overrides the embedded default) before validation.
DEPRECATED_KEYS = {"grouping": "grouping_options"}


def _rename_deprecated_keys(cfg):
    for old, new in DEPRECATED_KEYS.items():
        if old in cfg:
            if not isinstance(cfg[old], dict):
                raise WorkflowError(f"Invalid config: key '{old}': deprecated old name of '{new}', which is a "
                                    f"mapping, not {cfg[old]!r}. See config/README.md.")
            logger.warning(f"Config key '{old}' is deprecated: it is now '{new}' (the same keys); rename it in "
                           f"your config file.")
            cfg[new] = {**cfg.get(new, {}), **cfg.pop(old)}


_rename_deprecated_keys(config)
_validate_config(config)


# ------------------------------------------------------------------------------------------ library facts
# ggda's stdlib-only modules (data registry, model catalog, hyper-parameters) and the AST reader of its
# signatures, loaded from their files: parsing the workflow never imports ggda or torch.

REPO = Path(workflow.basedir).resolve().parent
SCRIPTS = REPO / "workflow" / "scripts"


def _load_script_module(name):
    """A stdlib-only helper of workflow/scripts, loaded from its file (the scripts folder is not on the
    Snakefile's import path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SIGNATURES = _load_script_module("signatures")
DATA_REGISTRY = SIGNATURES.load_module(REPO / "ggda" / "data" / "registry.py")
MODEL_CATALOG = SIGNATURES.load_module(REPO / "ggda" / "models" / "catalog.py")


def _fail(key, message):
    raise WorkflowError(f"Invalid config: key '{key}': {message}. See config/README.md.")


KMEANS_GROUPINGS = ("kmeans", "repr-kmeans", "grad-kmeans")


def _grouping_specs(groupings, key):
    """{name: {"method", "options", "sizes"}} from a groupings list, in order. The name defaults to the
    method; the options are the top-level ``grouping_options`` block updated by the entry's own ``options``.
    individual is size 1; the others need sizes."""
    specs = {}
    for i, g in enumerate(groupings):
        name = g.get("name", g["method"])
        if name in specs:
            _fail(f"{key}[{i}].name", f"grouping name {name!r} is used twice: give each entry of one method "
                                      f"its own name (e.g. name: {g['method']}-within-class)")
        if g["method"] == "individual":
            if g.get("sizes", [1]) != [1]:
                _fail(f"{key}[{i}].sizes", "individual groupings are singletons: omit sizes (or use [1])")
            sizes = [1]
        elif "sizes" not in g:
            _fail(f"{key}[{i}].sizes", f"grouping {g['method']!r} needs a list of group sizes")
        else:
            sizes = [int(s) for s in g["sizes"]]
        options = {**config["grouping_options"], **g.get("options", {})}
        cap = options["max_group_size"]
        if options["oversize"] == "reassign" and cap is not None and g["method"] != "individual":
            where = f"{key}[{i}].options" if "options" in g else "grouping_options"
            if g["method"] not in KMEANS_GROUPINGS:
                _fail(f"{where}.oversize", f"'reassign' moves points between K-Means clusters, which "
                                           f"{g['method']!r} does not make: use 'split'")
            if cap < max(sizes):
                _fail(f"{where}.max_group_size", f"{cap} is below the group size {max(sizes)}, which "
                                                 f"oversize 'reassign' cannot meet: raise it or use 'split'")
        specs[name] = {"method": g["method"], "options": options, "sizes": sizes}
    return specs


def _grouping_pairs(groupings, key):
    """[(name, size)] from a groupings list (see _grouping_specs)."""
    return [(name, s) for name, spec in _grouping_specs(groupings, key).items() for s in spec["sizes"]]


TEXT_DATASETS = {name for name, info in DATA_REGISTRY.REGISTRY.items() if info.kind == "text"}

DATASETS = {}  # name -> dataset entry (with defaults)
for _i, _d in enumerate(config["datasets"]):
    if _d["name"] in DATASETS:
        _fail(f"datasets[{_i}].name", f"data set {_d['name']!r} is listed twice")
    for _m in _d.get("hparams", {}):
        if _m not in _d["models"]:
            _fail(f"datasets[{_i}].hparams.{_m}", f"model {_m!r} is not among this data set's models {_d['models']}")
    DATASETS[_d["name"]] = _d

#: name -> table block of the data sets read from a table of the user's own (datasets[].table)
TABLE_DATASETS = {}
for _i, _d in enumerate(config["datasets"]):
    if "table" in _d:
        if _d["name"] in DATA_REGISTRY.REGISTRY:
            _fail(f"datasets[{_i}].name", f"{_d['name']!r} is a registered data set: give your table another name")
        TABLE_DATASETS[_d["name"]] = _d["table"]
    elif _d["name"] not in DATA_REGISTRY.REGISTRY:
        _fail(f"datasets[{_i}].name", f"{_d['name']!r} is not a registered data set (known: "
                                      f"{', '.join(DATA_REGISTRY.REGISTRY)}); for a table of your own, add a "
                                      f"table block (datasets[{_i}].table: path, label)")
for _exp in ("pruning", "noisy_labels"):
    if config[_exp]["enabled"] and config[_exp]["dataset"] not in {**DATA_REGISTRY.REGISTRY, **TABLE_DATASETS}:
        _fail(f"{_exp}.dataset", f"{config[_exp]['dataset']!r} is neither a registered data set nor a table "
                                 f"data set of datasets (known: {', '.join([*DATA_REGISTRY.REGISTRY, *TABLE_DATASETS])})")


def dataset_kind(name):
    """"tabular", "image" or "text": a table data set is tabular."""
    return "tabular" if name in TABLE_DATASETS else DATA_REGISTRY.REGISTRY[name].kind


def _groupings_key(dataset):
    entry = DATASETS[dataset]
    if "groupings" in entry:
        return entry["groupings"], f"datasets[{list(DATASETS).index(dataset)}].groupings"
    return config["groupings"], "groupings"


@functools.cache  # the config is fixed once parsed; every groups job asks several times
def grouping_specs(dataset, variant=""):
    """{name: {"method", "options", "sizes"}} of the groupings of ``dataset`` in a variant ("" = the main
    experiment, "pruning/" or "noisy/" = that side experiment's own list)."""
    if variant:
        exp = {"pruning/": "pruning", "noisy/": "noisy_labels"}[variant]
        return _grouping_specs(config[exp]["groupings"], f"{exp}.groupings")
    return _grouping_specs(*_groupings_key(dataset))


def groupings_of(dataset):
    """[(grouping name, size)] of the main experiment on ``dataset``."""
    return _grouping_pairs(*_groupings_key(dataset))


for _name in DATASETS:  # every grouping list is checked now, before any job is planned
    _specs = grouping_specs(_name)
    if _name in TEXT_DATASETS and any(s["method"] == "kmeans" for s in _specs.values()):
        _fail("groupings", f"'kmeans' clusters raw inputs, which the text data set {_name!r} does not have: "
                           f"give datasets[{list(DATASETS).index(_name)}].groupings without kmeans")

for _variant, _exp in (("pruning/", "pruning"), ("noisy/", "noisy_labels")):
    _c = config[_exp]
    if _c["enabled"]:
        _specs = grouping_specs(_c["dataset"], _variant)
        if _c["dataset"] in TEXT_DATASETS and any(s["method"] == "kmeans" for s in _specs.values()):
            _fail(f"{_exp}.groupings", "'kmeans' is not available on text data")

if config["figures"]["removal"] not in config["retrain"]["fractions"]:
    _fail("figures.removal", f"{config['figures']['removal']} is not one of retrain.fractions "
                             f"{config['retrain']['fractions']}")


# ------------------------------------------------------------------------------------------ environment



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

#: Config keys that only schedule work (which GPU, how many threads, how retrainings are split into jobs):
#: the same results on a laptop and on a cluster, so they are left out of the config hash.
SCHEDULING_KEYS = ("gpu", "threads", "retrain.granularity")


def _results_config(cfg):
    """The config without SCHEDULING_KEYS."""
    out = json.loads(json.dumps(cfg, default=str))
    for key in SCHEDULING_KEYS:
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return out


#: sha256 of the validated config (defaults filled in), scheduling keys aside: in every figure's provenance.
CONFIG_HASH = hashlib.sha256(json.dumps(_results_config(config), sort_keys=True).encode()).hexdigest()[:16]


def _module_file(mod):
    """The file of a ggda mod or of a workflow script mod (e.g. workflow_io), or None (torch, ...)."""
    parts = mod.split(".")
    base = REPO if parts[0] == "ggda" else REPO / "workflow" / "scripts"
    path = base.joinpath(*parts)
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imports(path, functions=None):
    """[(absolute mod, imported names or None)] of the import statements of a file: all of them, nested
    ones too; or, with ``functions``, those at mod level and in the named top-level functions."""
    import ast

    tree = ast.parse(path.read_text(), str(path))
    if functions is None:
        nodes = list(ast.walk(tree))
    else:
        nodes = [n for stmt in tree.body if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef))
                 for n in ast.walk(stmt)]
        nodes += [n for stmt in tree.body if isinstance(stmt, ast.FunctionDef) and stmt.name in functions
                  for n in ast.walk(stmt)]
    package = path.parent.relative_to(REPO).parts if path.is_relative_to(REPO / "ggda") else ()
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.append((mod, [alias.name for alias in node.names]))
    return out


def _defined(path):
    """Names a mod defines itself at top level (functions, classes, assignments), not by importing."""
    import ast

    out = set()
    for stmt in ast.parse(path.read_text(), str(path)).body:
        if isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            out.add(stmt.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            out |= {t.id for t in targets if isinstance(t, ast.Name)}
    return out


def _helpers_used(script_path):
    """[(workflow helper mod, the functions the script calls from it)] (``import workflow_io as wio``
    then ``wio.load_bundle(...)``): a helper's function-level imports count only for the functions used."""
    import ast

    tree = ast.parse(script_path.read_text(), str(script_path))
    aliases = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
               if (REPO / "workflow" / "scripts" / f"{a.name}.py").is_file()}
    used = {m: set() for m in aliases.values()}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases:
            used[aliases[n.value.id]].add(n.attr)
    return used


@functools.cache
def code_inputs(script):
    """The ggda and workflow files that ``workflow/scripts/<script>.py`` runs, from its imports (an AST
    walk: nothing is imported). A ggda mod brings everything it imports; a package's __init__ only the
    names taken from it (``from ggda.evaluation import pruning`` depends on evaluation/retraining.py, not on
    the rest of ggda.evaluation), or all of it when the package itself is imported (``import ggda.data``);
    a workflow helper (workflow_io) its mod-level imports and those of the functions the script calls."""
    path = REPO / "workflow" / "scripts" / f"{script}.py"
    helpers = _helpers_used(path)
    seen, files = set(), set()
    todo = [(m, names) for m, names in _imports(path) if m not in helpers]
    for helper, functions in helpers.items():
        files.add(_module_file(helper))
        todo += _imports(_module_file(helper), functions)
    while todo:
        mod, names = todo.pop()
        path = _module_file(mod)
        if path is None or (mod, tuple(names or ())) in seen:
            continue
        seen.add((mod, tuple(names or ())))
        files.add(path)
        statements = _imports(path)
        if path.name != "__init__.py" or names is None or set(names) & _defined(path):
            todo += statements  # a name defined in the __init__ itself may use any of its imports
            continue
        for name in names:
            if _module_file(f"{mod}.{name}") is not None:  # a submodule
                todo.append((f"{mod}.{name}", None))
            todo += [(m, [name]) for m, bound in statements if bound and name in bound]
    return sorted(_rel(f) for f in files)


# Results damaged since their job wrote them (truncated, overwritten) are rebuilt, not trusted: each job
# records its outputs' checksums (workflow/scripts/output_checksums.py); here, before the DAG is built, a
# damaged output gets the mtime 0, so that its job and everything downstream rerun.
_checksums = _load_script_module("output_checksums")
# Only the main snakemake process: a cluster job re-reads the workflow, and must not mark a file that a
# job running beside it has just written and not yet recorded.
for _output, _rule, _why in _checksums.damaged() if workflow.is_main_process else []:
    logger.warning(f"{_output} no longer matches what rule {_rule} wrote ({_why}): it will be rebuilt")
    _checksums.mark_for_rebuild(_output)


wildcard_constraints:
    dataset="[a-z0-9_]+",
    model="[a-z0-9-]+",
    method="if|tracin|trak",
    grouping="[a-z]([a-z0-9-]*[a-z])?",
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
    """The outputs of one training run: model, metrics (the completion mark), checkpoints folder."""
    d = train_dir(dataset, model, seed, variant)
    return [f"{d}/model.pt", f"{d}/metrics.json", f"{d}/checkpoints"]


def timing_file(path):
    """The timing sidecar of a result (``x.npz``, ``x.csv`` or ``x.json`` -> ``x.timing.json``, as
    ggda._io.timing_path): timings live apart so that the same results are the same bytes."""
    return str(Path(path).with_suffix(".timing.json"))


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
    names = [f"ablation-{d}" for d in DATASETS] + ["removal-curves", "tradeoff"]
    if config["pruning"]["enabled"]:
        names.append("pruning")
    if config["noisy_labels"]["enabled"]:
        names.append("noisy-labels")
    if config["lds"]["enabled"]:
        names.append("lds")
    return names


def figure_files():
    return [f"results/figures/{n}.{fmt}" for n in figure_names() for fmt in config["figures"]["formats"]]


TABLES = ["retraining", "runtime", "training"]
if config["pruning"]["enabled"]:
    TABLES.append("pruning")
if config["noisy_labels"]["enabled"]:
    TABLES += ["noisy_labels", "noisy_retraining"]
if config["lds"]["enabled"]:
    TABLES.append("lds")


def final_targets():
    return ([f"results/tables/{t}.csv" for t in TABLES] + ["results/summary.json", "results/summary.timing.json"]
            + figure_files())


# ------------------------------------------------------------------------------------------ rule inputs and params


# data.smk
def data_params(wildcards):
    entry = dataset_entry(wildcards.dataset)
    load = {"root": entry["root"], "download": entry["download"], "n_train": entry["n_train"],
            "n_test": entry["n_test"], "seed": config["data_seed"], "noise_rate": 0.0}
    if wildcards.dataset in TABLE_DATASETS:  # ggda.data.load_table: the table block, no root or download
        load = {"table": TABLE_DATASETS[wildcards.dataset],
                **{k: v for k, v in load.items() if k not in ("root", "download")}}
    validation = None
    if wildcards.view == "noisy":
        load["noise_rate"] = config["noisy_labels"]["noise_rate"]
    elif wildcards.view == "pruning":
        validation = config["pruning"]["validation"]
    return {"load": load, "validation": validation, "validation_seed": config["data_seed"]}


def table_files(wildcards):
    """The files of a table data set (inputs of its data job: editing them reruns it), else none."""
    table = TABLE_DATASETS.get(wildcards.dataset)
    return [] if table is None else [table["path"]] + ([table["test"]] if table["test"] else [])


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


def grouping_spec(wildcards):
    """The method and options of the grouping named by the wildcards (a WorkflowError if not configured)."""
    specs = grouping_specs(wildcards.dataset, wildcards.variant)
    if wildcards.grouping not in specs:
        raise WorkflowError(f"no grouping named {wildcards.grouping!r} is configured for {wildcards.dataset} "
                            f"(configured: {', '.join(specs)})")
    return specs[wildcards.grouping]


#: The grouping options each method uses: only these reach its jobs, so that changing an option of
#: grad-kmeans (say) does not rerun the random or repr-kmeans groupings. Written out rather than read from
#: ggda (parsing must not import torch); tests/test_workflow_option_tables.py checks it against the library.
GROUPING_OPTIONS = {
    "individual": (),
    "random": ("seed", "within_class", "max_group_size", "oversize"),
    "kmeans": ("seed", "within_class", "max_group_size", "oversize", "proj_dim", "feature_dim"),
    "repr-kmeans": ("seed", "within_class", "max_group_size", "oversize"),
    "grad-kmeans": ("seed", "within_class", "max_group_size", "oversize", "proj_dim", "feature_dim", "gradient",
                    "normalize"),
}


def groups_params(wildcards):
    spec = grouping_spec(wildcards)
    return {"method": spec["method"],
            "options": {k: v for k, v in spec["options"].items() if k in GROUPING_OPTIONS[spec["method"]]}}


def groups_inputs(wildcards):
    out = {"data": data_file(wildcards.dataset, VARIANT_VIEW[wildcards.variant]), "src": code_inputs("groups")}
    if grouping_spec(wildcards)["method"] in MODEL_GROUPINGS:
        out["run"] = run_files(wildcards.dataset, wildcards.model, 0, wildcards.variant)
    return out


# attribute.smk
def method_options(dataset, model, method):
    """ggda.attribute options: attribution.options.<method>, updated by the data set's per-model ones."""
    opts = dict(config["attribution"]["options"][method])
    opts.update(dataset_entry(dataset).get("attribution", {}).get(model, {}).get(method, {}))
    return opts


# cache.smk
#: Options that change a method's scores but not its features: they do not reach the cache jobs, so
#: changing them reruns only the attributions (checked against the library, as GROUPING_OPTIONS is).
SCORING_OPTIONS = {"if": ("centre", "solve_for"), "tracin": (), "trak": ("kernel", "relative_damping", "damping")}


def feature_options(dataset, model, method):
    """The method's options that its cached features depend on (see SCORING_OPTIONS). TRAK's projection
    "auto" (the default) chooses dense or factored by its relative damping too, so there it stays."""
    opts = method_options(dataset, model, method)
    scoring = set(SCORING_OPTIONS[method])
    if method == "trak" and opts.get("projection", "auto") == "auto":
        scoring -= {"relative_damping", "damping"}
    return {k: v for k, v in opts.items() if k not in scoring}


def cache_sides(dataset, model, method):
    """The cached sides of ``method`` ("train", "targets"). IF: both (its curvature; its targets'
    solutions). TracIn / TRAK: the targets, and the training side when the factored projection may apply
    (proj_dim set and projection not "dense": TRAK's default proj_dim is 256, TracIn's None = exact);
    with the dense projection their attribution jobs compute group gradients directly."""
    if method == "if":
        return ["train", "targets"]
    opts = method_options(dataset, model, method)
    proj_dim = opts.get("proj_dim", 256 if method == "trak" else None)
    factored = proj_dim is not None and opts.get("projection", "auto") != "dense"
    return ["train", "targets"] if factored else ["targets"]


def cache_file(dataset, model, method, side, variant=""):
    return f"results/{dataset}/{model}/{variant}cache/{method}/{side}.npz"


def features_inputs(side):
    def inputs(wildcards):
        out = {
            "data": data_file(wildcards.dataset, VARIANT_VIEW[wildcards.variant]),
            "runs": [run_files(wildcards.dataset, wildcards.model, s, wildcards.variant)[1]
                     for s in range(ensemble_size(wildcards.method))],
            "src": code_inputs("features"),
        }
        if side == "targets" and wildcards.method == "if":  # the solve uses the curvature
            out["curvature"] = cache_file(wildcards.dataset, wildcards.model, "if", "train", wildcards.variant)
            out["curvature_timing"] = timing_file(out["curvature"])
        return out

    return inputs


# attribute.smk
def attribute_inputs(variant, methods):
    def inputs(wildcards):
        m = max(ensemble_size(meth) for meth in methods)
        out = {
            "data": data_file(wildcards.dataset, VARIANT_VIEW[variant]),
            "groups": groups_file(wildcards.dataset, wildcards.model, wildcards.grouping, wildcards.size, variant),
            "groups_timing": timing_file(
                groups_file(wildcards.dataset, wildcards.model, wildcards.grouping, wildcards.size, variant)),
            "runs": [run_files(wildcards.dataset, wildcards.model, s, variant)[1] for s in range(m)],
            "runs_timing": [timing_file(run_files(wildcards.dataset, wildcards.model, s, variant)[1])
                            for s in range(m)],  # the training time, recorded with the attribution's
            "src": code_inputs("attribute"),
        }
        for meth in methods:
            files = [cache_file(wildcards.dataset, wildcards.model, meth, side, variant)
                     for side in cache_sides(wildcards.dataset, wildcards.model, meth)]
            out[f"features_{meth}"] = files  # Features.load reads each one's timing sidecar
            out[f"timing_{meth}"] = [timing_file(f) for f in files]
        return out

    return inputs


# attribute.smk
def target_params(variant):
    """The attribution targets: the test split (or a seeded subset of it); pruning: the validation split."""
    if variant == "pruning/":
        return {"split": "validation", "m": None, "seed": 0}
    return {"split": "test", "m": config["attribution"]["targets"], "seed": config["attribution"]["target_seed"]}


# evaluate.smk
def retrain_params(wildcards):
    """Fractions, seeds and tie seed of one retraining job: every seed, or the job's own (granularity seed)."""
    seeds = [int(wildcards.seed)] if "seed" in wildcards.keys() else list(range(config["retrain"]["seeds"]))
    return {"fractions": config["retrain"]["fractions"], "seeds": seeds, "tie_seed": config["retrain"]["tie_seed"]}


def retrain_file(dataset, model, method, grouping, size, seed=None):
    """The retraining rows of one attribution (seed: of one retraining seed, with granularity seed)."""
    base = f"results/{dataset}/{model}/retrain/{method}/{grouping}-{size}"
    return f"{base}.csv" if seed is None else f"{base}/seed{seed}.csv"


# evaluate.smk
def aggregate_inputs(wildcards):
    out = {"retrain": [], "baselines": [], "attr": [], "attr_timing": [], "train": [], "prune": [], "noisy": [], "noisy_curve": [],
           "noisy_info": [], "lds": [], "src": code_inputs("aggregate")}
    for d, m, meth, g, s in main_attributions():
        out["retrain"].append(f"results/{d}/{m}/retrain/{meth}/{g}-{s}.csv")
        out["attr"].append(attr_file(d, m, meth, g, s).replace(".npz", ".json"))
        out["attr_timing"].append(timing_file(attr_file(d, m, meth, g, s)))
    if config["lds"]["enabled"]:
        out["lds"] = [f"results/{d}/{m}/lds/{g}-{s}.csv" for d, m in main_experiments() for g, s in groupings_of(d)]
    for d, m in main_experiments():
        out["baselines"].append(f"results/{d}/{m}/retrain/baselines.csv")
        out["train"] += [run_files(d, m, seed)[1] for seed in range(config["train"]["ensemble"])]
    side = side_experiment("pruning")
    if side:
        d, m, runs = side
        out["prune"] = [f"results/{d}/{m}/pruning/prune/{meth}/{g}-{s}.csv" for meth, g, s in runs]
        out["attr"] += [attr_file(d, m, meth, g, s, "pruning/").replace(".npz", ".json") for meth, g, s in runs]
        out["attr_timing"] += [timing_file(attr_file(d, m, meth, g, s, "pruning/")) for meth, g, s in runs]
    side = side_experiment("noisy_labels")
    if side:
        d, m, runs = side
        base = [f"results/{d}/{m}/noisy/detect/{meth}/{g}-{s}" for meth, g, s in runs]
        out["noisy"] = [f"{b}.csv" for b in base]
        out["noisy_curve"] = [f"{b}.curve.csv" for b in base]
        out["noisy_info"] = [f"{b}.json" for b in base]
    return out


# evaluate.smk
def aggregate_keys(wildcards):
    """{input path: its key (dataset, model, variant, method, grouping, group_size)} of every per-attribution
    input of the aggregation: the tables are keyed by what the workflow planned, not by parsing paths."""
    keys = {}

    def add(paths, d, m, variant, meth, g, s):
        for p in paths:
            keys[p] = {"dataset": d, "model": m, "variant": variant, "method": meth, "grouping": g, "group_size": s}

    for d, m, meth, g, s in main_attributions():
        add([f"results/{d}/{m}/retrain/{meth}/{g}-{s}.csv", attr_file(d, m, meth, g, s).replace(".npz", ".json"),
             timing_file(attr_file(d, m, meth, g, s))], d, m, "main", meth, g, s)
    if config["lds"]["enabled"]:
        for d, m in main_experiments():
            for g, s in groupings_of(d):
                add([f"results/{d}/{m}/lds/{g}-{s}.csv"], d, m, "main", None, g, s)
    for exp, variant, folder in (("pruning", "pruning", "prune"), ("noisy_labels", "noisy", "detect")):
        side = side_experiment(exp)
        for meth, g, s in side[2] if side else []:
            d, m = side[:2]
            base = f"results/{d}/{m}/{variant}/{folder}/{meth}/{g}-{s}"
            add([f"{base}.csv", f"{base}.curve.csv", f"{base}.json"], d, m, variant, meth, g, s)
            if exp == "pruning":
                add([attr_file(d, m, meth, g, s, "pruning/").replace(".npz", ".json"),
                     timing_file(attr_file(d, m, meth, g, s, "pruning/"))], d, m, variant, meth, g, s)
    for d, m in main_experiments():
        add([f"results/{d}/{m}/retrain/baselines.csv"], d, m, "main", None, None, None)
    return keys


# figures.smk
def figure_tables(wildcards):
    name = wildcards.name
    if name.startswith("ablation-") or name in ("removal-curves", "tradeoff"):
        tables = ["retraining", "runtime"]
    elif name == "pruning":
        tables = ["pruning"]
    elif name == "noisy-labels":
        tables = ["noisy_labels", "noisy_retraining"]
    elif name == "lds":
        tables = ["lds", "runtime"]
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

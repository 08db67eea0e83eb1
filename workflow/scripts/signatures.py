"""What the workflow knows of ggda before any job runs, read from its source without importing it (torch
would cost seconds on every parse): the parameters of the functions each config block is passed to (an
AST walk), and the library's stdlib-only fact modules (data set registry, model catalog), run from their
files. Used by workflow/rules/checks.smk and by the tests that compare the schema with the code.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]

#: The keys of one config block: (the library function or class they go to, for messages; the keys).
Options = tuple[str, frozenset[str]]

#: Parameters the workflow passes itself, or keeps out of the config, per block (never config keys).
ATTRIBUTION_SET_BY_WORKFLOW = frozenset({
    "groups", "features", "device", "progress",
    "solve_for",  # the cache stage solves for the targets once, and every grouping reuses the solutions
})
SELF_INFLUENCE_SET_BY_WORKFLOW = frozenset({"device", "progress"})
GROUPING_SET_BY_WORKFLOW = frozenset({
    "device",
    "batch_size",  # memory only; the groups rule forwards the options each method uses (GROUPING_OPTIONS)
})


def load_module(path: Path) -> ModuleType:
    """Run a module file that needs no torch on its own (its package, which imports torch, is not imported)."""
    name = f"_ggda_facts_{path.parent.name}_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve string annotations through sys.modules
        spec.loader.exec_module(module)
    return sys.modules[name]


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _dotted(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def _top(path: Path, name: str) -> ast.FunctionDef | ast.ClassDef:
    for node in _tree(path).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return node
    raise LookupError(f"{_dotted(path)} defines no function or class {name!r}")


def optional_parameters(path: Path, name: str) -> frozenset[str]:
    """The parameters with a default of function ``name`` in ``path`` (a class: its ``__init__``'s, or a
    dataclass's fields with a default). A ``**kwargs`` parameter is an error: its keys are not readable."""
    node = _top(path, name)
    if isinstance(node, ast.ClassDef):
        init = [n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
        if not init:  # a dataclass: its annotated fields with a default value
            return frozenset(n.target.id for n in node.body if isinstance(n, ast.AnnAssign)
                             and isinstance(n.target, ast.Name) and n.value is not None)
        node = init[0]
    args = node.args
    if args.kwarg is not None:
        raise ValueError(f"{_dotted(path)}.{name} takes **{args.kwarg.arg}: its options cannot be read from its "
                         f"signature; name them as parameters")
    positional = args.posonlyargs + args.args
    with_default = positional[len(positional) - len(args.defaults):] if args.defaults else []
    with_default += [a for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return frozenset(a.arg for a in with_default)


def dispatch(path: Path, table: str) -> dict[str, tuple[Path, str]]:
    """{key: (file, function name)} of a top-level dict literal ``table = {"if": influence, ...}`` in
    ``path``, each function found where it is defined (this file, or the module it is imported from)."""
    imported = {}
    for node in _tree(path).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            for alias in node.names:
                imported[alias.asname or alias.name] = path.parent / f"{node.module.replace('.', '/')}.py"
    for node in _tree(path).body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == table for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            return {ast.literal_eval(k): (imported.get(v.id, path), v.id)
                    for k, v in zip(node.value.keys, node.value.values)}
    raise LookupError(f"{_dotted(path)} has no dict literal {table}")


def _block(path: Path, name: str, set_by_workflow: frozenset[str] = frozenset()) -> Options:
    return f"{_dotted(path)}.{name}", optional_parameters(path, name) - set_by_workflow


def attribution_options(repo: Path = REPO) -> dict[str, Options]:
    """Per method, the keys of ``attribution.options.<method>``: the method function's options."""
    table = dispatch(repo / "ggda" / "attribution" / "__init__.py", "METHODS")
    return {m: _block(path, fn, ATTRIBUTION_SET_BY_WORKFLOW) for m, (path, fn) in table.items()}


def self_influence_options(repo: Path = REPO) -> dict[str, Options]:
    """Per method, the attribution options the noisy-label experiment's self-influence takes."""
    table = dispatch(repo / "ggda" / "attribution" / "__init__.py", "SELF_INFLUENCE")
    return {m: _block(path, fn, SELF_INFLUENCE_SET_BY_WORKFLOW) for m, (path, fn) in table.items()}


def grouping_options(repo: Path = REPO) -> Options:
    """The keys of the ``grouping_options`` block (and of a grouping entry's ``options``): ggda.grouping.make's."""
    return _block(repo / "ggda" / "grouping.py", "make", GROUPING_SET_BY_WORKFLOW)


def hparams_options(repo: Path = REPO) -> Options:
    """The keys of ``datasets[].hparams.<model>``: the fields of ggda.hparams.HParams."""
    return _block(repo / "ggda" / "hparams.py", "HParams")


def model_options(repo: Path = REPO) -> dict[str, Options]:
    """Per model, the keys of ``datasets[].model_options.<model>``: its class's constructor options."""
    catalog = load_module(repo / "ggda" / "models" / "catalog.py")
    return {m: _block(repo / "ggda" / "models" / f"{module}.py", cls, frozenset(catalog.DATA_ARGUMENTS))
            for m, (module, cls) in catalog.CLASSES.items()}

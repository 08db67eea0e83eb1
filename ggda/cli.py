"""The ``ggda`` command: a thin layer over the library.

    ggda datasets                         list the registered data sets
    ggda train --dataset digits --model ann-s --seed 0 --out results/digits/ann-s/train/seed0
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence


def _parse_value(text: str):
    """A --hparam value: JSON when it parses (numbers, true/false), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .data import list_datasets

    rows = list_datasets()
    cols = ["name", "kind", "num_classes", "models", "bundled", "source"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from . import data, train

    overrides = {}
    for item in args.hparam:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--hparam expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    bundle = data.load(args.dataset, root=args.root, download=not args.no_download, n_train=args.n_train,
                       n_test=args.n_test, noise_rate=args.noise_rate, seed=args.data_seed)
    run = train.fit(args.model, bundle, overrides, seed=args.seed, checkpoints=args.checkpoints,
                    device=args.device)
    if args.out:
        run.save(args.out)
    print(json.dumps({"dataset": args.dataset, "model": args.model, "seed": args.seed, **run.metrics,
                      "out": args.out}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ggda", description="Generalized Group Data Attribution")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the registered data sets")
    p.set_defaults(func=_cmd_datasets)

    p = sub.add_parser("train", help="train a model with its default hyper-parameters and save it")
    p.add_argument("--dataset", required=True, help="registry name (see `ggda datasets`)")
    p.add_argument("--model", required=True, help="lr, ann-s, ann-m, cnn, resnet9 or bert")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of subsets and label noise (default 0)")
    p.add_argument("--root", default=None, help="folder holding the published files (default data/raw/<dataset>)")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.add_argument("--n-train", type=int, default=None, help="stratified training subset size")
    p.add_argument("--n-test", type=int, default=None, help="stratified test subset size")
    p.add_argument("--noise-rate", type=float, default=0.0, help="fraction of training labels flipped")
    p.add_argument("--checkpoints", type=int, default=3, help="checkpoints saved along training (default 3)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="override a default hyper-parameter, e.g. --hparam epochs=5 (repeatable)")
    p.add_argument("--out", default=None, help="folder for model.pt, checkpoints/ and metrics.json")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"ggda: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # DataError and friends: report without a traceback
        from .data.errors import DataError

        if isinstance(err, DataError):
            print(f"ggda: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Featurize once, score many: the grouping-independent parts of an attribution as named artifacts.

An attribution splits into work that depends on the grouping (group gradients, the scores) and work
that does not, done once per model and data:

=======  ==============================================  ==============================================
method   training side (``side="train"``)                target side (``side="targets"``)
=======  ==============================================  ==============================================
if       the curvature: its Cholesky factor (exact       the target gradients grad L(z) and, with
         solver or factored projection), the mean        ``solve=True``, their solutions H^-1 grad L(z)
         training gradient g_bar, and with the           (the expensive part with CG), made from the
         factored projection every point's feature        training side's curvature
tracin   every point's feature at each checkpoint         lr_t grad L(z; theta_t) at each checkpoint
         (factored projection only: a group's feature    (projected, or the per-layer factors of the
         is then exactly the sum of its members')        exact layer-wise inner products)
trak     every point's feature and Q for each model       phi_z of each ensemble model
         (factored projection only, as for TracIn)
=======  ==============================================  ==============================================

With the dense projection (or none), a group's gradient is computed directly for each grouping, as
the paper does: summing individual features would cost what individual attribution costs.

A :class:`Features` records a fingerprint of what it was made from (the model parameters, the data,
the options that change its values). Scoring refuses one whose fingerprint differs from the call's,
naming each differing entry, so a cache made by another model, projection seed, dimension or target
set is never used by mistake. Scores from loaded features are bitwise identical to a single call's,
because a single call computes the same features with the same code before scoring them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._io import load_npz, save_npz

SIDES = ("train", "targets")
FORMAT = "ggda-features/1"


class FeaturesMismatch(ValueError):
    """A Features artifact was made from other inputs than those of the call that wants to use it."""


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


@dataclass
class Features:
    """The grouping-independent part of one method's attribution, on one side (module docstring).

    method: "if", "tracin" or "trak". side: "train" or "targets".
    key: what the arrays were computed from: fingerprints of the model parameters and the data, and the
        options that change the values (projection, checkpoints, damping, ...). JSON-able.
    arrays: named numpy arrays (names and shapes are the method's business, e.g. "ckpt0" (m, d)).
    timing: seconds spent making them, under the keys of ``Attribution.timing`` (saved beside the
        ``.npz``, see :meth:`save`; empty when that sidecar is missing).
    """

    method: str
    side: str
    key: dict[str, Any]
    arrays: dict[str, np.ndarray]
    timing: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.side not in SIDES:
            raise ValueError(f"side must be 'train' or 'targets', got {self.side!r}")

    def __repr__(self) -> str:
        mb = sum(a.nbytes for a in self.arrays.values()) / 2**20
        return f"Features({self.method!r}, side={self.side!r}, arrays={len(self.arrays)}, {mb:.1f} MiB)"

    def tensor(self, name: str, device: torch.device | str = "cpu") -> torch.Tensor:
        """Array ``name`` as a tensor on ``device`` (its stored dtype)."""
        return torch.from_numpy(np.ascontiguousarray(self.arrays[name])).to(device)

    def has(self, name: str) -> bool:
        return name in self.arrays

    def require(self, method: str, side: str, key: dict[str, Any], source: str = "features") -> None:
        """Raise :class:`FeaturesMismatch` unless these are ``method``'s ``side`` features made from ``key``."""
        if (self.method, self.side) != (method, side):
            raise FeaturesMismatch(f"{source} holds {self.method!r} {self.side}-side features, but {method!r} "
                                   f"{side}-side ones are needed")
        mine, wanted = _flatten(json.loads(json.dumps(self.key, default=str))), \
            _flatten(json.loads(json.dumps(key, default=str)))
        diffs = [f"{k}: made with {mine.get(k, '(absent)')!r}, this call has {wanted.get(k, '(absent)')!r}"
                 for k in sorted(set(mine) | set(wanted)) if mine.get(k) != wanted.get(k)]
        if diffs:
            raise FeaturesMismatch(f"{source} was made from other inputs than this call's ({method}, {side} side): "
                                   + "; ".join(diffs) + ". Recompute them (ggda.featurize) for these inputs.")

    # -------------------------------------------------------------------------------------- on disk
    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (the arrays, a JSON header, a checksum) and the timing beside it
        (``<name>.timing.json``), each atomically: the same features are the same bytes."""
        save_npz(path, self.arrays, {"format": FORMAT, "method": self.method, "side": self.side,
                                     "key": self.key}, self.timing)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Features:
        """Read a file written by :meth:`save`; a truncated, altered or foreign file is refused."""
        arrays, meta, timing = load_npz(path, "ggda features")
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}: make it again")
        return cls(meta["method"], meta["side"], meta["key"], arrays, timing)


def loaded(features) -> list[Features]:
    """``features`` (None, one, or a list of Features objects or paths) as a list of Features, each file
    read (and its checksum verified) once."""
    if features is None:
        return []
    if isinstance(features, (Features, str, os.PathLike)):
        features = [features]
    return [f if isinstance(f, Features) else Features.load(f) for f in features]


def pick(features: list[Features], side: str) -> Features | None:
    """The one item of ``features`` (from :func:`loaded`) for ``side``; its method and inputs are checked
    by :meth:`Features.require`."""
    found = [f for f in features if f.side == side]
    if len(found) > 1:
        raise ValueError(f"features holds {len(found)} {side}-side artifacts; pass one per side")
    return found[0] if found else None

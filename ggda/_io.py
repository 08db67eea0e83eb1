"""Artifacts on disk: atomic writes, the same bytes for the same content, corruption detected on load.

Every file is written to a temporary name in its folder, then renamed: a killed job never leaves a
half-written file under its final name. ``.npz`` artifacts carry a sha256 of their arrays, checked on
load, and keep run-to-run noise (timings) out of the file, in a ``<name>.timing.json`` sidecar, so that
identical results are identical bytes (stable DVC hashes).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a result gets the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def jsonable(obj: Any):
    """``json.dumps`` default for numpy scalars and arrays (anything else: its str)."""
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def save_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically, through memory: saved to a file, torch records the (temporary) file's
    name inside the archive, so the same object would give different bytes on every run."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())


def load_torch(path: str | os.PathLike, what: str) -> Any:
    """``torch.load(path, weights_only=True)``; a missing file is a FileNotFoundError and a truncated or
    foreign one a ValueError, each naming the path and ``what`` it is (torch's zip reader checks the CRC
    of every record, so a damaged file does not load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise ValueError(f"{path} is not a readable {what} file ({type(err).__name__}: {str(err)[:200]}); it "
                         "may be truncated: delete it and make it again") from None


def array_checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of named arrays (names, dtypes, shapes and bytes), independent of their order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def timing_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar holding the timing of the artifact at ``path`` (``x.npz`` -> ``x.timing.json``)."""
    return Path(path).with_suffix(".timing.json")


def save_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any],
             timing: dict[str, float] | None = None) -> None:
    """Write ``arrays`` and a JSON ``meta`` (plus the arrays' sha256) to an ``.npz``, and ``timing`` (when
    given) to its :func:`timing_path` sidecar, each atomically."""
    if any(name.startswith("__") for name in arrays):
        raise ValueError("array names may not start with '__'")
    header = json.dumps({**meta, "sha256": array_checksum(arrays)}, sort_keys=True, default=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, __meta__=np.array(header), **arrays)
    if timing is not None:
        save_json({"timing": timing}, timing_path(path))


def load_npz(path: str | os.PathLike, what: str) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, float]]:
    """(arrays, meta, timing) of a file written by :func:`save_npz`; timing is {} without its sidecar.
    A missing, truncated, altered or foreign file is a ValueError naming the path and ``what`` it is."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            arrays = {name: z[name] for name in z.files if name != "__meta__"}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise ValueError(f"{path} is not a readable {what} file ({type(err).__name__}: {err}); it may be "
                         "truncated: delete it and make it again") from None
    if array_checksum(arrays) != meta.pop("sha256", None):
        raise ValueError(f"{path} is corrupt (its arrays do not match the checksum written with them): "
                         "delete it and make it again")
    sidecar = timing_path(path)
    timing = json.loads(sidecar.read_text())["timing"] if sidecar.is_file() else {}
    return arrays, meta, timing

"""Provenance of generated artifacts: which code, configuration, packages, machine and inputs made them.

    from ggda import provenance
    record = provenance.collect(inputs=["results/tables/retraining.csv"], config_hash="3f2a...")
    provenance.write(record, "results/figures/tradeoff.provenance.json")

``collect`` gathers the git commit of the working tree (and whether it had uncommitted changes), the
versions of the packages that shape a result, the device, and the sha256 of every input file, so that a
figure can be traced back to exactly what produced it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from ._io import save_json

#: Packages whose versions are recorded (those missing are recorded as None).
PACKAGES = ("ggda", "torch", "numpy", "pandas", "scikit-learn", "matplotlib", "seaborn", "snakemake", "dvc")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_state(folder: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """{"commit": HEAD's hash, "dirty": uncommitted changes to tracked files} of the git work tree holding
    ``folder`` (default: the current directory); None when there is no git or no repository."""
    cwd = Path(folder) if folder is not None else Path.cwd()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when it is not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """The machine: platform, processor, CPU count, Python, and the CUDA device when torch sees one."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
                            "python": sys.version.split()[0], "cuda": None}
    if "torch" in sys.modules:  # only report CUDA if torch is already loaded (importing it costs seconds)
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            info["cuda"] = {"device": torch.cuda.get_device_name(0), "version": torch.version.cuda}
    return info


def collect(inputs: Iterable[str | os.PathLike] = (), config_hash: str | None = None,
            repo: str | os.PathLike | None = None, **extra: Any) -> dict[str, Any]:
    """A provenance record: git state, config hash, package versions, device, sha256 of each input.

    inputs: the files the artifact was made from (hashed; their paths are kept as given).
    config_hash: a hash of the configuration that produced the inputs (e.g. the workflow's).
    repo: a folder inside the git work tree to report (default: the current directory).
    extra: further JSON-able fields (e.g. figure name, options).
    """
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(repo),
        "config_hash": config_hash,
        "packages": package_versions(),
        "device": device_info(),
        "inputs": {str(p): sha256_file(p) for p in inputs},
        **extra,
    }


def write(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a record as indented, key-sorted JSON, atomically."""
    save_json(record, path)
    return Path(path)

"""Checksums of every job's outputs, so that a damaged result is rebuilt instead of trusted.

Snakemake decides what to rerun from modification times: a result truncated or overwritten after its job
finished looks newer than its inputs, hence up to date. So each job, once its script has finished,
records the size, mtime and sha256 of every file it wrote (directories: of every file below them) under
``.snakemake/ggda-checksums/<output path>.json``; when the workflow is parsed (any ``snakemake`` command,
a dry run included), every recorded output is compared with its record (a stat; the sha256 only when the
mtime moved), and one that no longer matches gets the modification time 0 (1970): older than its inputs,
so Snakemake reruns the job that makes it, and everything downstream, with the reason "updated input
files". Nothing is deleted; a file that was only touched (same bytes) is left alone.

Standard library only: the Snakefile imports this module while parsing, before any job runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Where the records live, relative to the workflow's working directory (beside Snakemake's own metadata:
#: not results, not versioned).
RECORDS = Path(".snakemake") / "ggda-checksums"
#: Snakemake's marker inside directory outputs (its mtime is the directory's): not part of the result.
DIR_STAMP = ".snakemake_timestamp"


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(output: Path) -> Iterator[Path]:
    """The files of one output: itself, or every file below a directory (Snakemake's stamp aside)."""
    if output.is_dir():
        yield from sorted(p for p in output.rglob("*") if p.is_file() and p.name != DIR_STAMP)
    elif output.is_file():
        yield output


def _record_path(output: str | os.PathLike, root: Path) -> Path:
    return root / f"{Path(output)}.json"


def record(outputs: Iterable[str | os.PathLike], rule: str, root: Path = RECORDS) -> None:
    """Record the size, mtime and sha256 of the files of ``outputs`` (relative paths, as Snakemake gives
    them), made by ``rule``. Each record is written atomically."""
    for output in outputs:
        files = {}
        for f in _files(Path(output)):
            st = f.stat()
            files[str(f)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256(f)}
        path = _record_path(output, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump({"output": str(output), "rule": rule, "files": files}, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)


def _damage(files: dict[str, dict]) -> str | None:
    """Why the recorded files no longer match (None when they do)."""
    for name, want in files.items():
        try:
            st = os.stat(name)
        except FileNotFoundError:
            return f"{name} is missing"
        if st.st_size != want["size"]:
            return f"{name} has {st.st_size} bytes, its job wrote {want['size']}"
        if st.st_mtime_ns != want["mtime_ns"] and sha256(name) != want["sha256"]:
            return f"{name} was changed after its job wrote it (sha256 differs)"
    return None


def damaged(root: Path = RECORDS) -> list[tuple[str, str, str]]:
    """[(output, rule, why)] for every recorded output that exists but no longer matches its record.
    Outputs that are gone are left to Snakemake (a missing output is rebuilt anyway)."""
    out = []
    if not root.is_dir():
        return out
    for path in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
            output, rule, files = rec["output"], rec["rule"], rec["files"]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # an unreadable record protects nothing: drop it
            continue
        if not os.path.exists(output):
            continue
        why = _damage(files)
        if why is not None:
            out.append((output, rule, why))
    return out


def mark_for_rebuild(output: str | os.PathLike) -> None:
    """Give ``output`` (and, for a directory, its Snakemake stamp) the mtime 0, so that Snakemake finds it
    older than its inputs and reruns the job that makes it."""
    output = Path(output)
    for p in (output / DIR_STAMP, output) if output.is_dir() else (output,):
        if p.exists():
            os.utime(p, ns=(0, 0))

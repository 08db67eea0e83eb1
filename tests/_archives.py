"""Archive builders shared by the download and real-data tests (imported by those test modules)."""

from __future__ import annotations

import io
import tarfile


def cifar_tar_gz(members: dict[str, bytes]) -> bytes:
    """A cifar-10-python.tar.gz holding ``members`` (name -> pickled batch) under cifar-10-batches-py/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()

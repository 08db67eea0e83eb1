"""Checksummed, retried, atomic file downloads (standard library only, plus tqdm for progress).

`download` streams a URL into a temporary file next to the destination, checks the transfer is
complete and the md5 matches, and only then renames it to its final name, so a killed or failed
download never leaves a file that looks complete.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import ChecksumError, DataError, DownloadError

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
"""Read/hash block size (1 MiB)."""

RETRY_BACKOFF_S = 0.5
"""Pause before retry number k of the same URL is ``RETRY_BACKOFF_S * k`` seconds (tests set 0)."""

USER_AGENT = "ggda-downloader/0.1 (Python urllib)"

# HTTP status codes worth retrying on the same URL; any other HTTP error moves to the next mirror.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _TruncatedError(Exception):
    """The server closed the connection before sending Content-Length bytes."""


# Errors of one attempt that are worth retrying (URLError, ConnectionError and timeouts are OSError).
_TRANSIENT = (OSError, http.client.HTTPException, _TruncatedError, socket.timeout)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            h.update(block)
    return h.hexdigest()


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in 1 MiB blocks."""
    return _digest(Path(path), "md5")


def sha256sum(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    return _digest(Path(path), "sha256")


def file_digests(path: str | os.PathLike) -> tuple[str, str]:
    """(md5, sha256) hex digests of a file in a single pass (large files are read once)."""
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def _fetch_once(url: str, dest: Path, md5: str | None, timeout: float, progress: bool) -> None:
    """One attempt: stream `url` to a temp file beside `dest`, verify, rename. Cleans up on any exit."""
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".part-", dir=dest.parent)
    except OSError as exc:
        # Not a network problem: retrying would not help, so this is not a transient error.
        raise DataError(f"cannot create a temporary file in {dest.parent}: {exc}") from exc
    tmp: Path | None = Path(tmp_name)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        hasher = hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.strip().isdigit() else None
            with tqdm(
                total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                while chunk := resp.read(CHUNK_BYTES):
                    out.write(chunk)
                    hasher.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            # read(amt) returns b"" rather than raising when the peer closes early, so compare counts.
            if expected is not None and received < expected:
                raise _TruncatedError(
                    f"transfer cut short: received {received} of {expected} bytes"
                )
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None:
            actual = hasher.hexdigest()
            if actual.lower() != md5.lower():
                raise ChecksumError(
                    f"md5 mismatch for {url}: expected {md5.lower()}, got {actual} "
                    f"({received} bytes); the downloaded file was removed"
                )
        os.replace(tmp, dest)
        tmp = None
        logger.info("downloaded %s -> %s (%d bytes)", url, dest, received)
    finally:
        # Also runs on KeyboardInterrupt: never leave a .part file behind.
        if tmp is not None:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def download(
    urls: str | list[str],
    dest: str | os.PathLike,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download a file from the first mirror that works, checking completeness and md5.

    urls: one URL or mirrors to try in order; each is tried up to `retries` times (pause
        ``RETRY_BACKOFF_S * attempt`` seconds between tries) on transient errors (network errors,
        timeouts, truncated transfers, HTTP 408/429/5xx); other HTTP errors (e.g. 404) and
        checksum mismatches move on to the next mirror at once.
    dest: final path; its folder is created. Written only after the transfer is complete and
        verified (atomic `os.replace` from ``<dest.name>.part-<random>`` in the same folder); the
        temporary file is removed on any failure, including KeyboardInterrupt.
    md5: expected hex md5 of the file, or None to skip the check.
    timeout: socket timeout of each connect/read, in seconds.
    progress: show a tqdm progress bar (bytes).

    Returns `dest` as a Path. Raises ChecksumError if at least one mirror delivered a complete file
    whose md5 differs and no mirror delivered a good one; DownloadError if every attempt failed
    otherwise. Both name every URL tried and the last error of each.
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ValueError("download() needs at least one URL")
    if retries < 1:
        raise ValueError(f"retries must be >= 1, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: dict[str, BaseException] = {}
    checksum_failed = False
    for url in url_list:
        for attempt in range(1, retries + 1):
            logger.info("downloading %s (attempt %d/%d) -> %s", url, attempt, retries, dest)
            try:
                _fetch_once(url, dest, md5, timeout, progress)
                return dest
            except ChecksumError as exc:
                # A complete transfer with the wrong content: the same mirror would serve it again.
                logger.warning("%s", exc)
                failures[url] = exc
                checksum_failed = True
                break
            except urllib.error.HTTPError as exc:
                logger.warning("attempt %d/%d for %s failed: HTTP %s %s",
                               attempt, retries, url, exc.code, exc.reason)
                failures[url] = exc
                exc.close()  # an HTTPError holds the open response
                if exc.code not in _RETRY_STATUS:
                    break
            except _TRANSIENT as exc:
                logger.warning("attempt %d/%d for %s failed: %r", attempt, retries, url, exc)
                failures[url] = exc
            if attempt < retries:
                time.sleep(RETRY_BACKOFF_S * attempt)

    tried = "; ".join(f"{u} ({_describe(e)})" for u, e in failures.items())
    advice = (f"Download the file by hand and put it in {dest.parent}, "
              f"or pass root= a folder holding the published files.")
    if checksum_failed:
        raise ChecksumError(
            f"no mirror delivered {dest.name} with the expected md5 {md5}. Tried: {tried}. {advice}"
        )
    last = list(failures.values())[-1]
    raise DownloadError(
        f"could not download {dest.name} ({retries} attempt(s) per URL). Tried: {tried}. "
        f"Last error: {_describe(last)}. {advice}"
    ) from last


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{type(exc).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"

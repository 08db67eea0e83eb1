"""Errors raised while locating, downloading or parsing data sets.

Every message names the file, URL or argument at fault and says what to do.
"""


class DataError(Exception):
    """Base class of every data-loading error."""


class DownloadError(DataError):
    """A download failed after all retries (network, HTTP error, truncated transfer)."""


class ChecksumError(DataError):
    """A file's checksum differs from the publisher's."""


class FormatError(DataError):
    """A file exists but is not in the expected format (corrupt, truncated, wrong kind of file)."""

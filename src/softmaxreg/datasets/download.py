"""Download dataset files from their mirrors into the cache, safely.

Each file is streamed to a hidden temporary file in the destination folder,
verified (IDX structure, size and SHA-256 of the uncompressed content), then
renamed into place: a failed or interrupted download never leaves a half file
under the real name. On any failure the next mirror is tried.

Uses ``urllib`` from the standard library.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import urllib.parse
import urllib.request
from pathlib import Path

from .. import __version__
from ..errors import DataError, DownloadError
from .idx import read_idx

_CHUNK = 1 << 16
_USER_AGENT = f"softmaxreg/{__version__} (+dataset download)"


def download_files(spec, file_specs, folder, *, timeout=30.0):
    """Download each of ``file_specs`` (of dataset ``spec``) into ``folder``.

    Parameters
    ----------
    spec : DatasetSpec
        The dataset; its ``mirrors`` are tried in order for every file.
    file_specs : iterable of FileSpec
        The files to fetch; each is saved as ``folder / (name + ".gz")``.
    folder : path-like
        Destination, created if needed.
    timeout : float
        Seconds to wait on a silent connection before giving up on a mirror.

    Raises
    ------
    DownloadError
        Every mirror failed for some file; the one-line message lists each URL
        tried and why it failed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for file_spec in file_specs:
        _download_one(spec, file_spec, folder, timeout)


def _download_one(spec, file_spec, folder, timeout):
    """Try each mirror in turn until one gives a verified copy of ``file_spec``."""
    target = folder / (file_spec.name + ".gz")
    failures = []
    for mirror in spec.mirrors:
        url = urllib.parse.urljoin(mirror, file_spec.name + ".gz")
        try:
            _fetch_verified(url, file_spec, target, timeout)
            return target
        except (DataError, OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {_reason(exc)}")
    if not failures:
        failures.append("no mirror is registered for this dataset")
    raise DownloadError(
        f"could not download {file_spec.name} of dataset {spec.name!r}: "
        + "; ".join(failures)
    )


def _reason(exc):
    """A short readable reason for a failed mirror."""
    if isinstance(exc, http.client.IncompleteRead):
        return (
            f"transfer cut after {len(exc.partial)} bytes "
            f"({exc.expected} more expected)"
        )
    reason = getattr(exc, "reason", None)
    code = getattr(exc, "code", None)
    if code is not None:
        return f"HTTP {code} {reason or ''}".rstrip()
    if reason is not None:
        return str(reason)
    return str(exc) or type(exc).__name__


def _fetch_verified(url, file_spec, target, timeout):
    """Stream ``url`` to a temporary file, verify it, rename it to ``target``."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"refusing a non-HTTP(S) mirror URL {url!r}")
    # A gzip file is never much larger than its content; more means a wrong file.
    limit = file_spec.size + file_spec.size // 8 + 65536
    # NOTE: a process killed mid-download (SIGKILL) leaves its hidden ``.part``
    # file behind; it is never read under the real name, and the next download
    # of the same file deletes it once it is an hour old.
    from ..saving import create_temporary, remove_stale_temporaries

    remove_stale_temporaries(target, ".part")
    handle, temporary = create_temporary(target, ".part")
    try:
        with os.fdopen(handle, "wb") as out:
            _stream_to(url, out, limit, timeout)
            out.flush()
            os.fsync(out.fileno())
        _verify(temporary, file_spec)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _stream_to(url, out, limit, timeout):
    """Copy the body of ``url`` into ``out``, refusing more than ``limit`` bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        declared = response.headers.get("Content-Length", "")
        received = 0
        while chunk := response.read(_CHUNK):
            received += len(chunk)
            if received > limit:
                raise DataError(f"server sent more than {limit} bytes; not this file")
            out.write(chunk)
    # Reading in pieces, http.client reports a closed connection as a short
    # body rather than an error: compare with the announced length.
    if declared.isdigit() and received != int(declared):
        raise DataError(
            f"transfer cut after {received} bytes ({int(declared) - received} more "
            "expected)"
        )


def _verify(path, file_spec):
    """Check the downloaded file's structure and checksum, in bounded memory."""
    try:
        read_idx(
            path, magic=file_spec.magic, sha256=file_spec.sha256, size=file_spec.size
        )
    except DataError as exc:
        # The temporary name means nothing to the user: keep only the reason.
        raise DataError(str(exc).removeprefix(f"{path}: ")) from None

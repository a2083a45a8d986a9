"""Reader for IDX files (the format of MNIST and Fashion-MNIST), raw or gzip.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (``TT`` the element type,
``DD`` the number of dimensions), then ``DD`` big-endian uint32 dimension sizes,
then the elements in C order, big-endian.

The reader is built for hostile input: gzip is recognised by its first bytes,
never by the file name; the declared size is checked against what the file can
hold *before* anything is allocated; decompression goes through a bounded stream
that stops one byte past the declared content; every failure is a
:class:`~softmaxreg.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import ChecksumError, DataError, DatasetNotFoundError

GZIP_MAGIC = b"\x1f\x8b"

# Deflate emits at least one bit per 258-byte match, so a stream inflates at most
# about 1032 times; a header declaring more than that is corrupt (or a bomb).
MAX_DEFLATE_RATIO = 1032
_GZIP_OVERHEAD = 1024  # gzip header, trailer and slack for tiny files

_CHUNK = 1 << 18  # bytes decompressed, hashed and copied per step

_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_MAGIC_KIND = {
    0x00000803: "images (uint8, 3 dimensions)",
    0x00000801: "labels (uint8, 1 dimension)",
}


def read_idx(path, *, magic=None, sha256=None, size=None):
    """Read one IDX file, raw or gzip-compressed, into a NumPy array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Compression is detected from its first bytes (``1F 8B``).
    magic : int, optional
        The magic number the file must have (``0x803`` for MNIST images,
        ``0x801`` for labels). Any valid IDX magic is accepted when omitted.
    sha256 : str, optional
        Expected hex SHA-256 of the *uncompressed* content, checked while
        streaming.
    size : int, optional
        Expected size in bytes of the uncompressed content, checked against
        the header before any allocation.

    Returns
    -------
    numpy.ndarray
        Native byte order, of the shape the header declares: for MNIST images
        ``(n_samples, 28, 28)`` uint8, for labels ``(n_samples,)`` uint8.

    Raises
    ------
    DataError
        Malformed, truncated, oversized or wrongly typed content; the message
        names the file.
    ChecksumError
        The content's SHA-256 differs from ``sha256``.
    DatasetNotFoundError
        The file does not exist.
    """
    path = Path(path)
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise DatasetNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None

    with file:
        disk_size = os.fstat(file.fileno()).st_size
        is_gzip = file.read(2) == GZIP_MAGIC
        file.seek(0)
        stream = gzip.GzipFile(fileobj=file, mode="rb") if is_gzip else file
        try:
            array = _read_stream(stream, path, disk_size, is_gzip, magic, sha256, size)
        except (EOFError, zlib.error, OSError) as exc:
            what = "corrupt or truncated gzip data" if is_gzip else "read error"
            raise DataError(
                f"{path}: {what} ({exc}); delete the file and get it again"
            ) from None
    return _to_native(array)


def _read_stream(stream, path, disk_size, is_gzip, magic, sha256, size):
    """Parse the header, check sizes, then fill the array; see :func:`read_idx`."""
    dtype, shape, header = _read_header(stream, path, magic)
    total = len(header) + dtype.itemsize * _product(shape)

    if size is not None and total != size:
        raise DataError(
            f"{path}: header declares shape {shape} ({total} bytes), but the "
            f"registered file holds {size} bytes; the file is corrupt or not "
            "the registered one"
        )
    _check_fits(path, shape, total, disk_size, is_gzip)

    digest = hashlib.sha256(header) if sha256 else None
    try:
        array = np.empty(shape, dtype)
    except ValueError:
        # An empty dimension next to ones whose product overflows NumPy's
        # index range: no bytes are declared, yet no array can have the shape.
        raise DataError(
            f"{path}: header declares shape {shape}, which no array can have; "
            "the file is corrupt or not IDX"
        ) from None
    _fill(stream, array, path, digest, total)
    _check_nothing_left(stream, path, total, is_gzip)

    if digest is not None and digest.hexdigest() != sha256.lower():
        raise ChecksumError(
            f"{path}: SHA-256 of the uncompressed content is {digest.hexdigest()}, "
            f"expected {sha256.lower()}; the file is corrupt or a different "
            "version: delete it and get it again"
        )
    return array


# NumPy's limit on the number of array dimensions (numpy 2); the format's
# one-byte count allows up to 255.
_MAX_DIMS = 64


def _read_header(stream, path, magic):
    """Read and check the magic and the dimensions; return (dtype, shape, bytes)."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataError(
            f"{path}: {len(head)} bytes long, too short for an IDX header "
            "(at least 4 bytes); the file is empty or truncated"
        )
    found = int.from_bytes(head, "big")
    if head[:2] != b"\0\0" or head[2] not in _TYPES or head[3] == 0:
        raise DataError(_bad_magic_message(path, head, magic))
    if magic is not None and found != magic:
        raise DataError(_bad_magic_message(path, head, magic))

    n_dims = head[3]
    if n_dims > _MAX_DIMS:
        raise DataError(
            f"{path}: header declares {n_dims} dimensions, more than the "
            f"{_MAX_DIMS} an array may have; the file is corrupt or not IDX"
        )
    dims_bytes = stream.read(4 * n_dims)
    if len(dims_bytes) < 4 * n_dims:
        raise DataError(
            f"{path}: header declares {n_dims} dimensions but the file ends "
            f"inside the header; the file is truncated"
        )
    shape = struct.unpack(f">{n_dims}I", dims_bytes)
    return _TYPES[head[2]], shape, head + dims_bytes


def _bad_magic_message(path, head, magic):
    """Name the expected and found magic in hex, with a hint at the likely cause."""
    found = int.from_bytes(head, "big")
    if magic is None:
        expected = "00 00 TT DD (TT an IDX type code 08-0E, DD >= 1 dimensions)"
    else:
        expected = f"0x{magic:08X}"
        if magic in _MAGIC_KIND:
            expected += f" ({_MAGIC_KIND[magic]})"
    message = f"{path}: bad IDX magic number: expected {expected}, found 0x{found:08X}"
    hint = _magic_hint(head, magic)
    return f"{message}; {hint}" if hint else message


def _magic_hint(head, magic):
    """A guess at why the first bytes are wrong, or '' when there is none."""
    found = int.from_bytes(head, "big")
    if head[:2] == GZIP_MAGIC:
        return "the content is still gzip-compressed once inflated (compressed twice?)"
    if head[:3] == b"BZh" or head[:4] == b"\xfd7zX" or head[:4] == b"PK\x03\x04":
        return "the file looks compressed (bzip2, xz or zip): decompress it first"
    if head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1] == b"<":
        return (
            "the file looks like an HTML/XML page, probably a server's error page "
            "saved by a failed download: delete it and download again"
        )
    if head[2:] == b"\0\0" and head[1] in _TYPES and head[0] > 0:
        return (
            "the header looks byte-swapped (little-endian); IDX headers are "
            "big-endian: write the magic and sizes with '>' byte order"
        )
    if magic in _MAGIC_KIND and found in _MAGIC_KIND:
        return (
            f"this is an {_MAGIC_KIND[found].split()[0]} file: are two files swapped?"
        )
    return ""


def _product(shape):
    result = 1
    for dim in shape:
        result *= dim
    return result


def _check_fits(path, shape, total, disk_size, is_gzip):
    """Refuse a header declaring more than the file can hold, before allocating."""
    if not is_gzip:
        if disk_size < total:
            raise DataError(
                f"{path}: truncated: header declares shape {shape} ({total} bytes) "
                f"but the file has {disk_size} bytes ({total - disk_size} missing); "
                "delete it and get it again"
            )
        if disk_size > total:
            raise DataError(
                f"{path}: {disk_size - total} unexpected bytes after the "
                f"{total} bytes that header shape {shape} declares; the file is "
                "corrupt or the header is wrong"
            )
        return
    limit = disk_size * MAX_DEFLATE_RATIO + _GZIP_OVERHEAD
    if total > limit:
        raise DataError(
            f"{path}: header declares shape {shape} ({total} bytes), more than a "
            f"{disk_size}-byte gzip file can inflate to (at most about {limit}); "
            "the header is corrupt"
        )


def _fill(stream, array, path, digest, total):
    """Stream the elements into ``array`` chunk by chunk, hashing as they come."""
    flat = array.reshape(-1).view(np.uint8)
    start = total - flat.size  # header length, for messages
    position = 0
    while position < flat.size:
        window = flat[position : position + _CHUNK]
        count = stream.readinto(window)
        if not count:
            raise DataError(
                f"{path}: truncated: the content ends after {start + position} bytes "
                f"but the header declares {total}; delete the file and get it again"
            )
        if digest is not None:
            digest.update(window[:count])
        position += count


def _check_nothing_left(stream, path, total, is_gzip):
    """Refuse content past the declared size (reading one byte, never more)."""
    if stream.read(1):
        what = "inflates past" if is_gzip else "continues past"
        raise DataError(
            f"{path}: content {what} the {total} bytes its header declares "
            "(a decompression bomb or a corrupt header); refused"
        )


def _to_native(array):
    """Turn a big-endian array into native byte order in place (no copy)."""
    if array.dtype.itemsize > 1 and not array.dtype.isnative:
        array.byteswap(inplace=True)
        array = array.view(array.dtype.newbyteorder("="))
    return array


def write_idx(path, array, *, compress=None):
    """Write ``array`` as an IDX file (big-endian), gzip-compressed if asked.

    Parameters
    ----------
    path : path-like
        Destination; written in place (not atomically).
    array : array_like
        At least one dimension; dtype uint8, int8, int16, int32, float32 or
        float64.
    compress : bool, optional
        gzip the file; by default, when ``path`` ends in ``.gz``.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder(">"): code for code, dtype in _TYPES.items()}
    big_endian = array.dtype.newbyteorder(">")
    if big_endian not in codes or array.ndim == 0 or array.ndim > 255:
        raise DataError(
            f"array: expected 1 to 255 dimensions of dtype uint8, int8, int16, "
            f"int32, float32 or float64, got shape {array.shape} {array.dtype}"
        )
    header = bytes([0, 0, codes[big_endian], array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=big_endian)
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    opener = gzip.open if compress else open
    with opener(path, "wb") as file:
        file.write(header)
        file.write(payload.tobytes())

"""The IDX reader on small generated files: valid, broken, hostile."""

import gzip
import hashlib
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softmaxreg.datasets import read_idx, write_idx
from softmaxreg.errors import ChecksumError, DataError, DatasetNotFoundError

IMAGES, LABELS = 0x803, 0x801


def idx_bytes(array):
    """Reference encoder written independently of write_idx: header + big-endian."""
    codes = {"u1": 8, "i1": 9, "i2": 11, "i4": 12, "f4": 13, "f8": 14}
    code = codes[array.dtype.str[1:]]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def images(n_samples=6, side=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n_samples, side, side), dtype=np.uint8)


@pytest.fixture
def write(tmp_path):
    """Write bytes to a file in tmp_path and return its path."""

    def _write(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    return _write


def peak_bytes(function, *args, **kwargs):
    """Peak traced allocation while calling function; exceptions propagate."""
    tracemalloc.start()
    try:
        function(*args, **kwargs)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --- valid files -------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8", "<i2", "<f4", "<f8"]
)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_type(tmp_path, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.normal(size=(3, 5, 2)) * 50).astype(dtype)
    path = tmp_path / f"data{suffix}"
    write_idx(path, array)
    result = read_idx(path)
    assert result.shape == (3, 5, 2)
    assert result.dtype.isnative
    assert result.dtype.kind == np.dtype(dtype).kind
    assert result.dtype.itemsize == np.dtype(dtype).itemsize
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize(
    "array", [np.zeros(3, bool), np.zeros(3, complex), np.int64(3)]
)
def test_write_idx_refuses_what_idx_cannot_hold(tmp_path, array):
    with pytest.raises(DataError, match=r"array: expected 1 to 255 dimensions"):
        write_idx(tmp_path / "x", array)


def test_reads_independently_encoded_file_and_checks_sha(write):
    array = images()
    data = idx_bytes(array)
    path = write("x", data)
    digest = hashlib.sha256(data).hexdigest()
    result = read_idx(path, magic=IMAGES, sha256=digest, size=len(data))
    np.testing.assert_array_equal(result, array)


def test_gzip_named_as_raw_is_recognised_by_content(write):
    array = images()
    path = write("train-images-idx3-ubyte", gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path, magic=IMAGES), array)


def test_raw_named_gz_is_recognised_by_content(write):
    array = images()
    path = write("train-images-idx3-ubyte.gz", idx_bytes(array))
    np.testing.assert_array_equal(read_idx(path, magic=IMAGES), array)


def test_multi_member_gzip_reads_whole(write):
    data = idx_bytes(images())
    path = write("x.gz", gzip.compress(data[:50]) + gzip.compress(data[50:]))
    np.testing.assert_array_equal(read_idx(path), images())


def test_empty_dimension_gives_empty_array(write):
    path = write("x", idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert read_idx(path).shape == (0, 28, 28)


# --- broken files ------------------------------------------------------------


def test_truncated_by_one_byte_raw(write):
    path = write("t10k-images-idx3-ubyte", idx_bytes(images())[:-1])
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte: truncated.*1 missing"
    ):
        read_idx(path, magic=IMAGES)


def test_truncated_by_one_byte_gz(write):
    path = write("x.gz", gzip.compress(idx_bytes(images()))[:-1])
    with pytest.raises(DataError, match=r"x\.gz: corrupt or truncated gzip"):
        read_idx(path)


def test_truncated_content_inside_valid_gzip(write):
    path = write("x.gz", gzip.compress(idx_bytes(images())[:-1]))
    with pytest.raises(DataError, match=r"x\.gz: truncated: the content ends after"):
        read_idx(path)


def test_trailing_bytes_after_declared_content(write):
    path = write("x", idx_bytes(images()) + b"\0")
    with pytest.raises(DataError, match=r"x: 1 unexpected bytes after"):
        read_idx(path)


def test_wrong_magic_names_expected_and_found_in_hex(write):
    path = write("labels", b"ABCD" + bytes(20))
    with pytest.raises(
        DataError,
        match=r"labels: bad IDX magic number: expected 0x00000801.*found 0x41424344",
    ):
        read_idx(path, magic=LABELS)


def test_swapped_images_and_labels_files_are_named(write):
    path = write("y", idx_bytes(np.arange(4, dtype=np.uint8)))
    with pytest.raises(
        DataError, match=r"expected 0x00000803.*found 0x00000801.*swapped"
    ):
        read_idx(path, magic=IMAGES)


def test_byte_swapped_header_gets_a_hint(write):
    array = images()
    little = struct.pack("<4I", IMAGES, *array.shape) + array.tobytes()
    path = write("x", little)
    with pytest.raises(DataError, match=r"found 0x03080000.*byte-swapped"):
        read_idx(path)


def test_html_page_saved_as_gz(write):
    page = b"<!DOCTYPE html><html><body>403 Forbidden</body></html>\n"
    path = write("train-labels-idx1-ubyte.gz", page)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz: .*HTML"):
        read_idx(path, magic=LABELS)


def test_compressed_twice_gets_a_hint(write):
    path = write("x.gz", gzip.compress(gzip.compress(idx_bytes(images()))))
    with pytest.raises(DataError, match=r"found 0x1F8B.*compressed twice"):
        read_idx(path)


@pytest.mark.parametrize("data", [b"", b"\0\0", b"\0\0\x08\x03\0\0\0\x05"])
def test_too_short_for_a_header(write, data):
    path = write("short", data)
    with pytest.raises(DataError, match=r"short: .*(too short|inside the header)"):
        read_idx(path)


@pytest.mark.parametrize("n_dims", [65, 255])
def test_more_dimensions_than_numpy_allows(write, n_dims):
    # every dimension 1: the declared size is tiny, only the count is wrong
    header = bytes([0, 0, 0x08, n_dims]) + struct.pack(f">{n_dims}I", *[1] * n_dims)
    path = write("deep", header + b"\x07")
    with pytest.raises(DataError, match=f"declares {n_dims} dimensions, more than"):
        read_idx(path)


def test_empty_shape_beyond_numpy_index_range(write):
    header = bytes([0, 0, 0x08, 4]) + struct.pack(">4I", 0, *[2**32 - 1] * 3)
    path = write("empty-but-huge", header)
    with pytest.raises(DataError, match="which no array can have"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nope: no such file"):
        read_idx(tmp_path / "nope")


def test_flipped_byte_inside_gz_is_detected(write):
    compressed = bytearray(gzip.compress(idx_bytes(images(n_samples=200)), mtime=0))
    failures = 0
    for position in range(20, len(compressed) - 8, max(1, len(compressed) // 40)):
        mutated = bytearray(compressed)
        mutated[position] ^= 0x10
        path = write("flip.gz", bytes(mutated))
        with pytest.raises(DataError, match=r"flip\.gz: "):
            read_idx(path)
        failures += 1
    assert failures >= 30


def test_sha_mismatch_names_file_and_both_digests(write):
    data = idx_bytes(images())
    path = write("x.gz", gzip.compress(data))
    wanted = "0" * 64
    actual = hashlib.sha256(data).hexdigest()
    with pytest.raises(
        ChecksumError, match=rf"x\.gz: SHA-256 .* is {actual}, expected {wanted}"
    ):
        read_idx(path, sha256=wanted)


def test_registered_size_mismatch_is_refused_before_reading(write):
    data = idx_bytes(images())
    path = write("x", data)
    with pytest.raises(DataError, match=r"registered file holds 999 bytes"):
        read_idx(path, size=999)


# --- hostile sizes: no large allocation --------------------------------------


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "header",
    [
        struct.pack(">I3I", IMAGES, 2**32 - 1, 28, 28),  # 4 billion images
        struct.pack(">I2I", 0x00000802, 2**16, 2**16),  # 2^32 items
        struct.pack(">I1I", 0x00000E01, 2**32 - 1),  # 32 GiB of float64
    ],
)
def test_huge_header_is_refused_without_allocating(write, header, compress):
    data = header + bytes(1000)
    path = write("huge.gz", gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=r"huge\.gz: .*header declares shape"):
        peak = peak_bytes(read_idx, path)
    peak = peak_bytes(_swallow, read_idx, path)
    assert peak < 1 << 20


def _swallow(function, *args):
    try:
        function(*args)
    except DataError:
        pass


def zeros_gzip(n_bytes, header):
    """A gzip stream of header + n_bytes zeros, built without holding n_bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [compressor.compress(header)]
    block = bytes(1 << 20)
    for _ in range(n_bytes >> 20):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return b"".join(parts)


def test_decompression_bomb_is_refused_in_bounded_memory(write):
    header = struct.pack(">I3I", IMAGES, 10, 28, 28)  # declares 7840 bytes
    bomb = zeros_gzip(200 << 20, header)  # inflates to 200 MiB
    assert len(bomb) < 1 << 20
    path = write("bomb.gz", bomb)
    with pytest.raises(
        DataError, match=r"bomb\.gz: content inflates past the 7856 bytes"
    ):
        read_idx(path)
    assert peak_bytes(_swallow, read_idx, path) < 4 << 20


def test_large_declared_gzip_allocates_no_more_than_declared(write):
    n_images = 2000  # 1.5 MiB declared, all present
    header = struct.pack(">I3I", IMAGES, n_images, 28, 28)
    path = write("zeros.gz", gzip.compress(header + bytes(n_images * 784)))
    peak = peak_bytes(read_idx, path)
    assert peak < n_images * 784 + (3 << 20)


# --- property-based ----------------------------------------------------------

PROPERTY = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _read_bounded(path, n_file_bytes, compressed):
    """Read path; allow only DataError; check the allocation stays bounded."""
    tracemalloc.start()
    try:
        result = read_idx(path)
    except DataError:
        result = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    ratio = 1100 if compressed else 2
    assert peak < n_file_bytes * ratio + (2 << 20)
    if result is not None:
        assert result.nbytes <= n_file_bytes * ratio + 2048
    return result


@PROPERTY
@given(data=st.binary(max_size=600))
def test_random_bytes_only_raise_data_error(tmp_path, data):
    path = tmp_path / "random"
    path.write_bytes(data)
    _read_bounded(path, len(data), compressed=data[:2] == b"\x1f\x8b")


@PROPERTY
@given(
    data=st.binary(max_size=600),
    suffix=st.sampled_from([b"", b"\x00\x00\x08\x03\x00\x00\x00\x02"]),
)
def test_random_gzip_payloads_only_raise_data_error(tmp_path, data, suffix):
    path = tmp_path / "random.gz"
    blob = gzip.compress(suffix + data)
    path.write_bytes(blob)
    _read_bounded(path, len(blob), compressed=True)


_mutation = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "overwrite"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


def _mutate(data, mutations):
    data = bytearray(data)
    for kind, position, value in mutations:
        position %= max(len(data), 1)
        if kind == "flip" and data:
            data[position] ^= 1 << (value % 8)
        elif kind == "truncate":
            del data[position:]
        elif kind == "insert":
            data[position:position] = bytes([value])
        elif data:
            data[position] = value
    return bytes(data)


@PROPERTY
@given(
    mutations=st.lists(_mutation, min_size=1, max_size=4),
    compress=st.booleans(),
    dtype=st.sampled_from(["u1", ">i2", ">f8"]),
)
def test_mutated_valid_files_only_raise_data_error(
    tmp_path, mutations, compress, dtype
):
    array = images(n_samples=3).astype(dtype)
    valid = idx_bytes(array)
    if compress:
        valid = gzip.compress(valid, mtime=0)
    data = _mutate(valid, mutations)
    path = tmp_path / "mutated"
    path.write_bytes(data)
    result = _read_bounded(path, len(data), compressed=data[:2] == b"\x1f\x8b")
    if result is not None and data == valid:
        np.testing.assert_array_equal(result, array)

"""Downloads, against a local HTTP server on 127.0.0.1 only (never the network)."""

import gzip
import hashlib
import os
import struct
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from softmaxreg import datasets
from softmaxreg.datasets import download, locate, registry
from softmaxreg.errors import DataError, DatasetNotFoundError, DownloadError

ROLES = ("x_train", "y_train", "x_test", "y_test")
FILE_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SERVER_LIFETIME_S = 60  # the server stops itself after this, whatever happens


def idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


class _Handler(BaseHTTPRequestHandler):
    """Serves ``server.routes``: path -> (behaviour, body)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        behaviour, body = self.server.routes.get(self.path, ("missing", b""))
        if behaviour == "missing":
            self.send_error(404)
            return
        if behaviour == "slow":
            time.sleep(1.5)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour == "cut":
            body = body[: len(body) // 2]
            self.close_connection = True
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first, as some tests intend

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A bounded, self-stopping HTTP server on 127.0.0.1 with a free port."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.requests = {}, []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    watchdog = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    watchdog.daemon = True
    thread.start()
    watchdog.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    watchdog.cancel()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def tiny(tmp_path, monkeypatch, server):
    """A small dataset registered with two mirrors on the local server."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("SOFTMAXREG_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(locate, "SYSTEM_DIRS", [tmp_path / "system"])

    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.integers(0, 256, (10, 4, 4), dtype=np.uint8),
        "y_train": rng.integers(0, 3, 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (4, 4, 4), dtype=np.uint8),
        "y_test": rng.integers(0, 3, 4).astype(np.uint8),
    }
    encoded = {role: idx_bytes(arrays[role]) for role in ROLES}
    files = tuple(
        registry.FileSpec(
            FILE_NAMES[r], hashlib.sha256(encoded[r]).hexdigest(), len(encoded[r]), r
        )
        for r in ROLES
    )
    spec = registry.register(
        registry.DatasetSpec(
            name="tiny-download",
            class_names=["a", "b", "c"],
            files=files,
            licence="test only",
            mirrors=(f"{server.base}/first/", f"{server.base}/second/"),
        )
    )
    yield {
        "spec": spec,
        "arrays": arrays,
        "encoded": encoded,
        "cache": tmp_path / "xdg" / "softmaxreg" / "tiny-download",
    }
    registry.unregister("tiny-download")


def serve(server, tiny, mirror, behaviour="ok", transform=gzip.compress, roles=ROLES):
    for role in roles:
        body = transform(tiny["encoded"][role])
        server.routes[f"/{mirror}/{FILE_NAMES[role]}.gz"] = (behaviour, body)


def assert_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, role in zip((x_train, y_train, x_test, y_test), ROLES, strict=True):
        np.testing.assert_array_equal(got, arrays[role])


def cache_entries(tiny):
    folder = tiny["cache"]
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_caches(server, tiny):
    serve(server, tiny, "first")
    assert_loaded(datasets.load("tiny-download"), tiny["arrays"])
    assert cache_entries(tiny) == sorted(f"{n}.gz" for n in FILE_NAMES.values())
    served = len(server.requests)
    server.routes.clear()
    assert_loaded(datasets.load("tiny-download"), tiny["arrays"])
    assert len(server.requests) == served


def test_first_mirror_404_then_the_next_one(server, tiny):
    serve(server, tiny, "second")
    assert_loaded(datasets.load("tiny-download"), tiny["arrays"])
    first = f"/first/{FILE_NAMES['x_train']}.gz"
    second = f"/second/{FILE_NAMES['x_train']}.gz"
    assert server.requests.index(first) < server.requests.index(second)


def _other_content(data):
    changed = bytearray(data)
    changed[-1] ^= 0x01
    return gzip.compress(bytes(changed))


def test_checksum_mismatch_is_rejected_and_nothing_cached(server, tiny):
    serve(server, tiny, "first", transform=_other_content)
    serve(server, tiny, "second", transform=_other_content)
    with pytest.raises(DatasetNotFoundError) as caught:
        datasets.load("tiny-download")
    message = str(caught.value)
    assert message.count("SHA-256") == 2
    assert "/first/" in message and "/second/" in message
    assert cache_entries(tiny) == []


def test_transfer_cut_falls_back_to_the_next_mirror(server, tiny):
    serve(server, tiny, "first", behaviour="cut")
    serve(server, tiny, "second")
    assert_loaded(datasets.load("tiny-download"), tiny["arrays"])
    assert not [name for name in cache_entries(tiny) if name.endswith(".part")]


def test_transfer_cut_everywhere_leaves_no_half_file(server, tiny):
    serve(server, tiny, "first", behaviour="cut")
    with pytest.raises(DatasetNotFoundError, match=r"transfer cut after \d+ bytes"):
        datasets.load("tiny-download")
    assert cache_entries(tiny) == []


def test_html_error_page_with_status_200_is_rejected(server, tiny):
    page = b"<html><body>Service unavailable</body></html>"
    serve(server, tiny, "first", transform=lambda data: page)
    with pytest.raises(
        DatasetNotFoundError, match=r"/first/.*HTML.*; .*second.*HTTP 404"
    ):
        datasets.load("tiny-download")
    assert cache_entries(tiny) == []


def test_endless_body_is_cut_off(server, tiny):
    serve(server, tiny, "first", transform=lambda data: bytes(200_000))
    with pytest.raises(DatasetNotFoundError, match=r"server sent more than \d+ bytes"):
        datasets.load("tiny-download")
    assert cache_entries(tiny) == []


def test_silent_server_times_out(server, tiny):
    serve(server, tiny, "first", behaviour="slow", roles=["y_test"])
    file_spec = tiny["spec"].file("y_test")
    with pytest.raises(DownloadError, match=r"/first/t10k-labels.*timed out"):
        download.download_files(tiny["spec"], [file_spec], tiny["cache"], timeout=0.3)
    assert cache_entries(tiny) == []


def test_non_http_mirror_is_refused(tiny, tmp_path):
    spec = replace(tiny["spec"], mirrors=(f"file://{tmp_path}/",))
    with pytest.raises(DownloadError, match="refusing a non-HTTP"):
        download.download_files(spec, spec.files[:1], tiny["cache"])


def test_bad_cached_file_is_removed_then_downloaded_afresh(server, tiny):
    serve(server, tiny, "first")
    datasets.load("tiny-download")
    bad = tiny["cache"] / f"{FILE_NAMES['x_test']}.gz"
    bad.unlink()
    bad.write_bytes(b"<!DOCTYPE html><title>502 Bad Gateway</title>")
    with pytest.raises(
        DataError, match=r"t10k-images-idx3-ubyte\.gz: .*HTML.*; removed"
    ):
        datasets.load("tiny-download")
    assert not bad.exists()
    server.requests.clear()
    assert_loaded(datasets.load("tiny-download"), tiny["arrays"])
    assert server.requests == [f"/first/{FILE_NAMES['x_test']}.gz"]


def test_split_downloads_only_its_own_files(server, tiny):
    serve(server, tiny, "first")
    x_test, y_test = datasets.load("tiny-download", split="test")
    np.testing.assert_array_equal(x_test, tiny["arrays"]["x_test"])
    np.testing.assert_array_equal(y_test, tiny["arrays"]["y_test"])
    assert cache_entries(tiny) == sorted(
        f"{FILE_NAMES[role]}.gz" for role in ("x_test", "y_test")
    )


def test_downloads_get_umask_permissions_and_sweep_stale_parts(server, tiny):
    serve(server, tiny, "first")
    tiny["cache"].mkdir(parents=True)
    name = FILE_NAMES["x_train"] + ".gz"
    stale = tiny["cache"] / f".{name}.dead1234.part"  # left by a killed download
    fresh = tiny["cache"] / f".{name}.live5678.part"  # maybe still being written
    for leftover in (stale, fresh):
        leftover.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    previous = os.umask(0o022)
    try:
        datasets.load("tiny-download")
    finally:
        os.umask(previous)
    assert not stale.exists() and fresh.exists()
    assert (tiny["cache"] / name).stat().st_mode & 0o777 == 0o644

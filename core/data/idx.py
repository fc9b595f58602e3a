"""IDX files: read them (MNIST-style image and label archives) and fetch them from mirrors.

The IDX format (used by MNIST, Fashion-MNIST, KMNIST, ...) is a 4-byte magic number
(two zero bytes, a type code, the number of dimensions), one big-endian uint32 per
dimension, then the values in C order. Files are usually gzipped; `read_idx` accepts both.

`fetch_from_mirrors` fetches one file into a directory with an MD5 check and an atomic rename.
Every wait is bounded, because the app must fall back quickly on machines whose network silently
drops packets and a request must never be held by a mirror that trickles: each file has a total
deadline that is checked after every small read, and may not be larger than its published size.
One process or session downloads a given file at a time (a lock file beside it); the others wait
for its result instead of opening a download of their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
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
# mirrors at 3 s each fit the offline fallback's 10 s (core.data.mnist.MIRROR_BUDGET_S).
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 5.0
# Once bytes flow the network is evidently up, so a whole file may take longer than the connect
# budget; but a mirror slower than this rate is given up on (MNIST's 9.9 MB training images then
# have 99 s + slack). A read waits at most READ_TIMEOUT_S, so the deadline is overshot by that.
MIN_RATE_BYTES_S = 100_000
TRANSFER_SLACK_S = 10.0
_CHUNK = 1 << 14


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


def transfer_deadline_s(size: int) -> float:
    """The longest a file of `size` bytes may take to arrive once its mirror answers."""
    return TRANSFER_SLACK_S + size / MIN_RATE_BYTES_S


def download(url: str, dest: str | os.PathLike, *, md5: str, size: int,
             deadline: float | None = None) -> Path:
    """Fetch `url` into the file `dest`, verifying its size and the MD5 of its bytes.

    The bytes go to a temporary `.part` file in the destination directory and are renamed into
    place only after the checksum matches, so an interrupted or corrupt download never leaves
    something that looks like a valid file. `deadline` (a time.monotonic() value) bounds how
    long we wait for a first answer; the whole transfer must end by transfer_deadline_s(size)
    after that, and a mirror that announces or sends more than `size` bytes is cut off.
    """
    dest = Path(dest)
    if deadline is None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
    response = _open_url(url, deadline)
    with response:
        announced = response.headers.get("Content-Length")
        if announced and announced.isdigit() and int(announced) > size:
            raise DownloadError(f"{url}: announces {int(announced):,} bytes, expected {size:,}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            _receive(response, fd, url, size, md5, time.monotonic() + transfer_deadline_s(size))
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


def _receive(response, fd: int, url: str, size: int, md5: str, stop_at: float) -> None:
    """Copy the response into `fd` in small reads, checking size and clock after each."""
    digest = hashlib.md5()
    received = 0
    with os.fdopen(fd, "wb") as out:
        # read1 returns whatever has arrived (read(n) would wait for all n bytes, ~4.5 h at
        # 1 byte/s); each such wait is bounded by the socket's READ_TIMEOUT_S.
        while chunk := response.read1(_CHUNK):
            received += len(chunk)
            if received > size:
                raise DownloadError(f"{url}: sent more than the expected {size:,} bytes")
            if time.monotonic() > stop_at:
                raise DownloadError(f"{url}: too slow ({received:,} of {size:,} bytes by the "
                                    f"{transfer_deadline_s(size):.0f} s deadline)")
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != md5:
        raise DownloadError(f"{url}: MD5 is {digest.hexdigest()}, expected {md5}")


def fetch_from_mirrors(
    filename: str, dest_dir: str | os.PathLike, *, md5: str, size: int, mirrors: tuple[str, ...],
    budget_s: float,
) -> str:
    """Download `filename` into `dest_dir` from the first mirror that delivers it intact.

    Returns the URL that worked, or "" when another process or session delivered the file while
    this one waited for it. `budget_s` bounds the total time spent waiting for mirrors to answer
    (and for another caller's download of the same file); raises DownloadError naming each
    mirror's failure otherwise.
    """
    if not mirrors:
        raise DownloadError("no mirrors configured")
    dest = Path(dest_dir) / filename
    deadline = time.monotonic() + budget_s
    with _single_flight(dest, deadline + transfer_deadline_s(size)) as lock:
        if _intact(dest, md5):
            return ""   # another caller's download, finished while we waited for the lock
        if lock.failure:
            raise DownloadError(lock.failure)   # the attempt we waited for failed: not again now
        for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
            _unlink_quietly(str(stale))  # left by a process killed mid-download
        failures = []
        for base in mirrors:
            url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", filename)
            try:
                download(url, dest, md5=md5, size=size, deadline=deadline)
                return url
            except DownloadError as exc:
                failures.append(str(exc))
        lock.fail("; ".join(failures))
        raise DownloadError("; ".join(failures))


class _Flight:
    """The lock file of one download; it holds the last failure, for the callers who waited."""

    def __init__(self, fh) -> None:
        self.fh = fh
        self.failure = ""

    def fail(self, message: str) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"{time.time()} {message}")
        self.fh.flush()


@contextlib.contextmanager
def _single_flight(dest: Path, give_up_at: float):
    """Hold the lock file of `dest` (`.<name>.lock` beside it) across threads and processes.

    flock locks belong to an open file description, so two sessions (threads) of one server
    exclude each other as two processes do; the kernel drops the lock of a process that dies.
    A caller waits at most until `give_up_at` (the longest the holder's download may take), and
    one that waited learns the holder's failure (`.failure`) instead of trying again at once.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(dest.parent / f".{dest.name}.lock", "a+") as fh:
        waited = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up_at:
                    raise DownloadError(f"{dest.name}: another download of it is still running")
                waited = True
                time.sleep(0.05)
        flight = _Flight(fh)
        try:
            fh.seek(0)
            when, _, message = fh.read().partition(" ")
            try:
                failed_at = float(when)
            except ValueError:
                failed_at = 0.0
            if waited and message and failed_at >= started:
                flight.failure = message
            yield flight
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _intact(path: Path, md5: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "md5").hexdigest() == md5
    except OSError:
        return False


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

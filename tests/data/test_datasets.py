"""Tests for core.data.datasets: the registry, digits and the toy sets, reproducible splits, the
description; MNIST's and Fashion-MNIST's sources are tested in test_mnist.py."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.data.datasets import (
    DATASETS,
    IMAGE_DATASETS,
    TOY_DATASETS,
    describe_datasets,
    load_splits,
)
from tests.data.helpers import standardise


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
    z = standardise(s, s.x_train)
    assert abs(float(z.mean())) < 1e-4 and abs(float(z.std()) - 1) < 1e-4
    assert abs(s.mean.item() - s.x_train.astype(np.float64).mean()) < 1e-4  # raw pixel units


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
    z = standardise(s, s.x_train)
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

"""Test-wide settings: never touch the network, never write to the user's real directories.

Set at import time (before test modules are collected) so code that reads these variables
at import also sees them.
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="satlab-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

# One thread per test process, as the app trains (core.cpus.configure_for_server): the nets are
# tiny, so a second OpenMP thread only spins against the other jobs on a 2-core machine (the
# suite takes half the time), and results are those a user of the app sees.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["SATLAB_OFFLINE"] = "1"
os.environ["SATLAB_DATA_DIR"] = os.path.join(_SCRATCH, "data")
os.environ["SATLAB_STORE"] = os.path.join(_SCRATCH, "store")


import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item (browser tests screenshot failures)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for this test process (each xdist worker starts its own, about
    1 s), as a URL; skipped where PostgreSQL is not installed, a failure under CI
    (SATLAB_REQUIRE_POSTGRES)."""
    from tests.helpers import postgres_binaries, postgres_server
    if postgres_binaries() is None:
        message = "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql)"
        if os.environ.get("SATLAB_REQUIRE_POSTGRES"):
            pytest.fail(message + " and SATLAB_REQUIRE_POSTGRES is set")
        pytest.skip(message)
    # Not under pytest's tmp_path: its parent is private to root, and the server runs as postgres.
    scratch = tempfile.mkdtemp(prefix="satlab-pg-")
    try:
        with postgres_server(pathlib.Path(scratch)) as url:
            yield url
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def new_store(request, tmp_path):
    """`new_store(name, max_bytes=...)`: an empty run store on each backend, one per name (the same
    name again opens the same store): a SQLite file in tmp_path, or a schema of its own in the
    session's PostgreSQL server."""
    from core.store import RunStore
    made: dict[str, str] = {}

    def make(name: str = "runs", **kwargs):
        if request.param == "sqlite":
            return RunStore(tmp_path / f"{name}.sqlite3", **kwargs)
        if name not in made:
            import uuid

            import psycopg
            url = request.getfixturevalue("postgres_url")
            schema = f"t_{uuid.uuid4().hex[:16]}"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            made[name] = f"{url}?options=-csearch_path%3D{schema}"
        return RunStore(made[name], **kwargs)

    return make


# The longest tests (measured with --durations), started first: under pytest-xdist each then runs
# beside the many short ones instead of alone at the end, which set the suite's wall time.
LONGEST_FIRST = (
    "tests/app/test_browser.py::test_every_lesson_opens_right_from_every_entry_point",
    "tests/test_memory.py::test_the_memory_estimates_bound_the_measured_peaks",
    "tests/lab/test_doctor.py::test_every_fix_offered_clears_its_finding",
    "tests/lab/test_sweep_ray.py",
)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not item.nodeid.startswith(LONGEST_FIRST))   # stable

"""Test-wide settings: never touch the network, never write to the user's real directories.

Set at import time (before test modules are collected) so code that reads these variables
at import also sees them.
"""

from __future__ import annotations

import atexit
import os
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

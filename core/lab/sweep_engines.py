"""Where a sweep's work units train: in this process, in N local processes, or as Ray tasks.

    run_sweep(spec, engine=make_engine(jobs=4))                      # 4 local worker processes
    run_sweep(spec, engine=make_engine("ray", address="10.0.0.5:6379"))   # an existing cluster

    python -m core sweep --x depth=2,4,8,16 --y lr=1e-3,1e-2 --jobs 4
    RAY_ADDRESS=10.0.0.5:6379 python -m core sweep --x ... --y ... --engine ray

A unit is a stacked group (core.lab.stacked.batch_groups) or one cell alone, and `train_unit`
trains it the same way wherever it runs, on one torch thread as the app does: a cell's numbers do
not depend on the engine. Where there are more workers than groups, the largest groups are
halved (`split_for_workers`); members of a stacked model are independent, and a half trains to
the same bits as inside the whole (tests/lab/test_sweep_engines.py checks it).

The caller (run_sweep) is the store's one writer: it looks cells up, takes their training locks
and writes each unit's results as the unit finishes. Workers never open the store, so a cluster's
nodes need no access to it. A unit that raises, or whose worker dies after Ray's retries, comes
back as a `UnitFailed` naming the error; run_sweep names its cells.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from core import cache
from core.lab.config import RunConfig
from core.lab.stacked import train_batched
from core.lab.trainer import train
from core.settings import ConfigError

ENGINES = ("local", "ray")
MAX_JOBS = 256
POLL = 0.25          # seconds between looks at the workers: progress, and a chance to stop
RAY_RETRIES = 2      # a unit whose Ray worker or node dies is run again this many times

# Workers fork from a server that has imported these once, so a pool starts in ~0.1 s, not
# seconds. The last two are imported lazily by a first training (load_digits; the
# torch.func.stack_module_state of stacking): measured 2.4 s and 3.0 s in each new worker here.
WORKER_IMPORTS = (__name__, "sklearn.datasets", "torch._dynamo")

Unit = tuple[RunConfig, ...]
FractionFn = Callable[[int, float], None]     # (unit index, fraction of it done)
WaitFn = Callable[[str], None]


@dataclass(frozen=True)
class UnitFailed:
    """What came back instead of a unit's results: the error, as one line."""

    error: str


def train_unit(unit: Unit, on_fraction: Callable[[float], None] | None = None) -> Any:
    """A stacked group's CellSummary list, or a lone cell's full RunResult (a Lab run)."""
    if len(unit) > 1:
        return train_batched(list(unit), on_fraction)
    cfg = unit[0]

    def on_epoch(partial) -> None:
        if on_fraction and len(partial.epochs):
            on_fraction(int(partial.epochs.epoch.max()) / cfg.epochs)
    return train(cfg, on_epoch)


def split_for_workers(groups: list[list[int]], workers: int) -> list[list[int]]:
    """Halve the largest groups until each worker has one (or every group is a single cell)."""
    groups = [list(g) for g in groups]
    while len(groups) < workers:
        largest = max(range(len(groups)), key=lambda j: len(groups[j]), default=None)
        if largest is None or len(groups[largest]) < 2:
            break
        g = groups.pop(largest)
        groups[largest:largest] = [g[:len(g) // 2], g[len(g) // 2:]]
    return groups


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


# --- in this process ---------------------------------------------------------------------------
class InProcess:
    """One unit after another here, each in one of the process's training slots (core.cache)."""

    name, workers = "local", 1

    def run(self, units: list[Unit], on_fraction: FractionFn,
            on_wait: WaitFn) -> Iterator[tuple[int, Any]]:
        for i, unit in enumerate(units):
            with cache.admission().slot(on_wait):
                result = train_unit(unit, lambda f, i=i: on_fraction(i, f))
            yield i, result


# --- local worker processes --------------------------------------------------------------------
_progress_queue: Any = None


def _start_worker(progress_queue) -> None:
    import torch

    global _progress_queue
    _progress_queue = progress_queue
    torch.set_num_threads(1)   # one per worker, as the app trains: the workers are the parallelism


def _train_in_worker(i: int, unit: Unit) -> Any:
    return train_unit(unit, lambda f: _progress_queue.put((i, f)))


class LocalPool:
    """N worker processes on this machine (spawned or forkserver-started: torch and fork do not
    mix), one torch thread each. The sweep holds one of the process's training slots for all of
    them, so on a busy server its workers share the CPUs with other sessions' trainings; the
    page sizes the pool to the trainings the process may run at once (`page_engine`)."""

    name = "local"

    def __init__(self, jobs: int):
        self.workers = jobs

    def run(self, units: list[Unit], on_fraction: FractionFn,
            on_wait: WaitFn) -> Iterator[tuple[int, Any]]:
        if len(units) < 2:  # nothing to share out: no workers to start
            yield from InProcess().run(units, on_fraction, on_wait)
            return
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(list(WORKER_IMPORTS))
        progress = ctx.Queue()
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(units)), mp_context=ctx,
                                   initializer=_start_worker, initargs=(progress,))
        try:
            with cache.admission().slot(on_wait):
                futures = {pool.submit(_train_in_worker, i, unit): i
                           for i, unit in enumerate(units)}
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=POLL, return_when=FIRST_COMPLETED)
                    _drain(progress, on_fraction)
                    for future in done:
                        try:
                            yield futures[future], future.result()
                        except Exception as err:  # raised in the unit, or a worker killed
                            yield futures[future], UnitFailed(_one_line(err))
        finally:  # also when the caller stops listening (a closed tab): drop what has not run
            pool.shutdown(wait=False, cancel_futures=True)
            progress.close()


def _drain(progress, on_fraction: FractionFn) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            on_fraction(*progress.get_nowait())


# --- Ray ---------------------------------------------------------------------------------------
def _train_on_ray(unit: Unit) -> Any:
    import torch

    torch.set_num_threads(1)
    return train_unit(unit)


class RayCluster:
    """Each unit a Ray task on an existing cluster; results come back to the caller, which
    stores them. The `core` package travels with the job (runtime_env py_modules), so the
    cluster's nodes need torch, pandas and scikit-learn, not this repository."""

    name = "ray"

    def __init__(self, address: str, retries: int = RAY_RETRIES):
        self.address, self.retries = address, retries
        self.workers = self._connect()

    def _connect(self) -> int:
        _check_reachable(self.address)
        try:
            import ray
        except ImportError:
            raise ConfigError("engine", "ray is not installed here; pip install "
                              "'saturation-lab[ray]'") from None
        if not ray.is_initialized():  # once per process: later sweeps reuse the connection
            try:
                ray.init(address=self.address, log_to_driver=False,
                         runtime_env={"py_modules": [str(Path(__file__).parents[1])]})
            except Exception as err:  # ConnectionError, a version mismatch, ...
                raise ConfigError("RAY_ADDRESS", f"could not join the Ray cluster at "
                                  f"{self.address}: {_one_line(err)}") from None
        return max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, units: list[Unit], on_fraction: FractionFn,
            on_wait: WaitFn) -> Iterator[tuple[int, Any]]:
        import ray

        task = ray.remote(num_cpus=1, max_retries=self.retries)(_train_on_ray)
        refs = {task.remote(unit): i for i, unit in enumerate(units)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL)
                if not done:
                    on_wait(f"{len(pending)} of {len(units)} groups still running on the "
                            f"Ray cluster")
                for ref in done:
                    try:
                        yield refs[ref], ray.get(ref)
                    except Exception as err:  # RayTaskError (raised), WorkerCrashedError, ...
                        cause = getattr(err, "cause", None) or err
                        yield refs[ref], UnitFailed(_one_line(cause))
        finally:
            for ref in pending:
                ray.cancel(ref)


Engine = InProcess | LocalPool | RayCluster


def _check_reachable(address: str) -> None:
    """ray.init waits minutes for a head that is not there: ask its port first."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except ValueError:
        raise ConfigError("RAY_ADDRESS", f"expected HOST:PORT (e.g. 10.0.0.5:6379) or "
                          f"ray://HOST:PORT, got {address!r}") from None
    except OSError as err:
        raise ConfigError("RAY_ADDRESS", f"no Ray cluster answers at {address} "
                          f"({err.strerror or err}); start one with `ray start --head` or "
                          f"point RAY_ADDRESS at its head") from None


def page_engine() -> Engine:
    """The Sweep page's engine: the Ray cluster RAY_ADDRESS names, else as many local workers
    as this process may run trainings at once (core.cache.max_trainings: the container's CPUs,
    or SATLAB_MAX_TRAININGS)."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return make_engine("ray")
    return make_engine(jobs=min(cache.max_trainings(), MAX_JOBS))


# --- choosing ----------------------------------------------------------------------------------
def make_engine(engine: str = "local", jobs: int = 1, address: str | None = None) -> Engine:
    """The engine a sweep runs on; ConfigError naming the setting for a bad value. For "ray",
    `address` defaults to RAY_ADDRESS."""
    if engine not in ENGINES:
        raise ConfigError("engine", f"must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "ray":
        if jobs != 1:
            raise ConfigError("jobs", "sets local worker processes; a Ray cluster runs as many "
                              "tasks at once as it has CPUs")
        address = address or os.environ.get("RAY_ADDRESS", "").strip()
        if not address:
            raise ConfigError("RAY_ADDRESS", "the ray engine joins an existing cluster: set "
                              "RAY_ADDRESS to its head (HOST:PORT), e.g. after "
                              "`ray start --head`")
        return RayCluster(address)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise ConfigError("jobs", f"must be a whole number of worker processes from 1 to "
                          f"{MAX_JOBS}; got {jobs!r}")
    return InProcess() if jobs == 1 else LocalPool(jobs)

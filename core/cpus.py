"""How many CPUs this process may really use: the container's share, not the host's cores.

    from core.cpus import container_cpus
    container_cpus()        # e.g. 2 on a 64-core host whose container has a 2-CPU quota

`python -m core` calls `size_openmp_to_container()` before torch is imported; the app's server
sizes torch's thread pools with `configure_for_server()`.

`os.cpu_count()` is the host's count, and so are torch's and OpenMP's defaults once a container
is limited by a CPU *quota* (Kubernetes CPU limits, `docker run --cpus`, Streamlit Community
Cloud) rather than by pinned cores: a 2-CPU container on a 64-core host would get 64 threads,
each throttled to a sliver of the quota. The answer here is the smallest of
- the CPUs the process may be scheduled on (`os.sched_getaffinity`: cpusets, `taskset`), and
- the CFS quota of its cgroup or any ancestor: cgroup v2 `cpu.max` ("200000 100000" = 2 CPUs,
  "max 100000" = none), cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = none);
  a fractional quota is rounded up (1.5 CPUs: 2 threads, each busy 75% of the time).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# Where the v1 cpu controller is mounted, by distribution; v2 is the root itself (or unified/
# on a hybrid system, which never carries the cpu controller in v2).
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name, for a benchmark's header ("Intel(R) Xeon(R) …"): Linux's
    /proc/cpuinfo, else what `platform` knows ("x86_64")."""
    import platform

    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def affinity_cpus() -> int:
    """The CPUs the scheduler may run this process on (all of the host's, without a cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = one and a half), None if none.

    Reads cgroup v2 if the cpu controller is there, else v1. The process's own cgroup and each
    ancestor up to the mount point are checked, and the tightest quota wins. Inside a container
    the mount point usually *is* the container's cgroup (its path in /proc/self/cgroup is "/" or
    names a directory not visible in the container), which is then the one read.
    """
    paths = _cgroup_paths(proc_cgroup)
    if (root / "cgroup.controllers").exists():  # cgroup v2 mounted here
        return _tightest(root, paths.get("v2", "/"), _read_cpu_max)
    for name in _V1_CPU_DIRS:
        mount = root / name
        if (mount / "cpu.cfs_quota_us").exists():
            return _tightest(mount, paths.get("cpu", "/"), _read_cfs_quota)
    return None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP,
                   affinity: int | None = None) -> int:
    """CPUs this process can keep busy: its affinity, capped by its cgroup's quota (≥ 1)."""
    cpus = affinity_cpus() if affinity is None else affinity
    limit = cgroup_cpu_limit(root, proc_cgroup)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


@functools.cache
def container_cpus() -> int:
    """`available_cpus()` of this process, read once (quotas do not change under a running app)."""
    return available_cpus()


def size_openmp_to_container(environ=os.environ) -> None:
    """Where a CPU quota is tighter than the affinity, default OpenMP to the quota's CPUs.

    Must run before torch (or numpy) is imported: their OpenMP and BLAS pools read
    OMP_NUM_THREADS once, at start-up. A value the user has set is kept; without a binding
    quota nothing is set, so torch's own default (the affinity) stands.
    """
    cpus = container_cpus()
    if cpus < affinity_cpus():
        environ.setdefault("OMP_NUM_THREADS", str(cpus))


def configure_for_server(threads: int = 1) -> None:
    """Settings for a process that serves many sessions (the Streamlit app).

    One intra-op thread per run: the app's networks are small, so splitting each op over cores
    gains little, while extra OpenMP threads spin against the web server's own thread and
    against other sessions' runs (measured here on 2 cores under load: the default run took
    3.1 s with 2 threads and 0.8 s with 1). Parallelism comes from the sessions instead.

    The inter-op pool (idle unless something forks work, e.g. `torch.jit.fork`) defaults to the
    host's core count; on a shared cloud host that is far more than the container's CPU quota,
    so it is sized to the container. Torch allows that once per process.

    Before torch is imported (Home and the settings forms need none of it: importing it cost a
    cold server's first page ~1.1 s), only OMP_NUM_THREADS and MKL_NUM_THREADS are set, which
    torch's pools read when it loads; the next call after it has loaded (the router runs this
    every rerun, core.tools.warmup once it has imported torch) sizes the inter-op pool.
    """
    if "torch" not in sys.modules:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        return
    import torch  # here, not above: `python -m core` imports this module before torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(container_cpus())
    except RuntimeError:  # set before, or inter-op work already started: keep what it has
        pass


def _cgroup_paths(proc_cgroup: Path) -> dict[str, str]:
    """{"v2": path} and/or {"cpu": path} from /proc/self/cgroup ("ID:controllers:path" lines)."""
    paths: dict[str, str] = {}
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            paths["v2"] = path
        elif "cpu" in controllers.split(","):
            paths["cpu"] = path
    return paths


def _tightest(mount: Path, path: str, read) -> float | None:
    """The smallest quota from `mount/path` up to `mount` (directories that exist only)."""
    here = mount / path.strip("/")
    limits = []
    while True:
        if here.is_dir():
            limit = read(here)
            if limit is not None:
                limits.append(limit)
        if here == mount or mount not in here.parents:
            break
        here = here.parent
    return min(limits) if limits else None


def _read_cpu_max(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        if quota == "max":
            return None
        quota_us, period_us = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def _read_cfs_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period

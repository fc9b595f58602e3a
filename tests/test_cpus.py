"""CPUs available to the container, read from fake cgroup trees (v2 and v1) built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.cpus import affinity_cpus, available_cpus, cgroup_cpu_limit, cpu_model


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2(tmp_path: Path, cpu_max: dict[str, str], own: str = "/") -> tuple[Path, Path]:
    """A cgroup v2 mount with `cpu.max` at the given relative folders; the process in `own`."""
    root = tmp_path / "cgroup"
    _write(root / "cgroup.controllers", "cpuset cpu io memory pids\n")
    for folder, text in cpu_max.items():
        _write(root / folder / "cpu.max", text)
    (root / own.strip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    _write(proc, f"0::{own}\n")
    return root, proc


def _v1(tmp_path: Path, quotas: dict[str, tuple[int, int]], own: str = "/",
        mount: str = "cpu,cpuacct") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for folder, (quota, period) in quotas.items():
        _write(root / mount / folder / "cpu.cfs_quota_us", f"{quota}\n")
        _write(root / mount / folder / "cpu.cfs_period_us", f"{period}\n")
    (root / mount / own.strip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc-self-cgroup"
    _write(proc, f"12:memory:{own}\n4:cpu,cpuacct:{own}\n1:name=systemd:{own}\n")
    return root, proc


@pytest.mark.parametrize("text,cpus", [
    ("200000 100000\n", 2.0), ("150000 100000\n", 1.5), ("50000 100000\n", 0.5),
    ("max 100000\n", None)])
def test_cgroup_v2_cpu_max(tmp_path, text, cpus):
    root, proc = _v2(tmp_path, {"": text})
    assert cgroup_cpu_limit(root, proc) == cpus


def test_v2_quota_rounds_up_and_never_exceeds_the_affinity(tmp_path):
    root, proc = _v2(tmp_path, {"": "150000 100000"})
    assert available_cpus(root, proc, affinity=64) == 2     # 1.5 CPUs: 2 threads
    assert available_cpus(root, proc, affinity=1) == 1      # pinned to one core
    root, proc = _v2(tmp_path / "small", {"": "20000 100000"})
    assert available_cpus(root, proc, affinity=64) == 1     # a fifth of a CPU: still 1 thread


def test_no_quota_means_the_affinity(tmp_path):
    root, proc = _v2(tmp_path, {"": "max 100000"})
    assert available_cpus(root, proc, affinity=12) == 12
    # No cgroup filesystem at all (not Linux, or not mounted).
    assert available_cpus(tmp_path / "none", tmp_path / "none", affinity=3) == 3


def test_v2_the_tightest_ancestor_wins(tmp_path):
    """A process in a nested cgroup is limited by its parents' quotas too."""
    root, proc = _v2(tmp_path, {"": "max 100000", "kubepods": "400000 100000",
                                "kubepods/pod1": "max 100000",
                                "kubepods/pod1/app": "300000 100000"},
                     own="/kubepods/pod1/app")
    assert cgroup_cpu_limit(root, proc) == 3.0
    root, proc = _v2(tmp_path / "b", {"": "max 100000", "slice": "100000 100000",
                                      "slice/app": "300000 100000"}, own="/slice/app")
    assert cgroup_cpu_limit(root, proc) == 1.0


def test_v2_own_path_not_visible_falls_back_to_the_mount(tmp_path):
    """Inside a container the mount point is the container's cgroup: the host path is absent."""
    root, proc = _v2(tmp_path, {"": "200000 100000"})
    _write(proc, "0::/system.slice/docker-0123abcd.scope\n")
    assert cgroup_cpu_limit(root, proc) == 2.0


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_cgroup_v1_cfs_quota(tmp_path, mount):
    root, proc = _v1(tmp_path, {"": (-1, 100000), "docker/abc": (250000, 100000)},
                     own="/docker/abc", mount=mount)
    assert cgroup_cpu_limit(root, proc) == 2.5
    assert available_cpus(root, proc, affinity=16) == 3


def test_cgroup_v1_without_a_quota(tmp_path):
    root, proc = _v1(tmp_path, {"": (-1, 100000)})
    assert cgroup_cpu_limit(root, proc) is None
    assert available_cpus(root, proc, affinity=8) == 8


@pytest.mark.parametrize("text", ["", "garbage", "100000", "0 100000", "100000 0"])
def test_unreadable_cpu_max_counts_as_no_quota(tmp_path, text):
    root, proc = _v2(tmp_path, {"": text})
    assert cgroup_cpu_limit(root, proc) is None


def test_this_machine_agrees_with_the_scheduler():
    """On the real system: never more than the affinity, which sched_getaffinity counts."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity here")
    assert affinity_cpus() == len(os.sched_getaffinity(0))
    assert 1 <= available_cpus() <= affinity_cpus()


def test_openmp_is_sized_only_where_a_quota_binds(monkeypatch):
    import core.cpus as cpus

    monkeypatch.setattr(cpus, "affinity_cpus", lambda: 64)
    monkeypatch.setattr(cpus, "container_cpus", lambda: 2)
    env: dict[str, str] = {}
    cpus.size_openmp_to_container(env)
    assert env == {"OMP_NUM_THREADS": "2"}
    env = {"OMP_NUM_THREADS": "8"}                 # the user's choice stands
    cpus.size_openmp_to_container(env)
    assert env == {"OMP_NUM_THREADS": "8"}
    monkeypatch.setattr(cpus, "container_cpus", lambda: 64)
    env = {}
    cpus.size_openmp_to_container(env)             # no quota below the affinity: torch decides
    assert env == {}


def test_server_sizes_the_interop_pool_to_the_container():
    """In a fresh process (torch sets the inter-op pool once): a 1-CPU container gets 1."""
    import subprocess
    import sys

    code = ("import torch, core.cpus as c; c.container_cpus = lambda: 1; "
            "c.configure_for_server(); c.configure_for_server(); "
            "print(torch.get_num_threads(), torch.get_num_interop_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=120, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_every_page_runs_with_the_servers_threads():
    """The router configures torch before any page, also for pages that never open the store.

    Torch keeps the setting globally and applies it to each thread on its first parallel op;
    Streamlit runs each script run in a new thread, so a new thread is what to ask.
    """
    import threading

    import torch
    from streamlit.testing.v1 import AppTest

    def threads_in_a_new_thread() -> int:
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        return seen[0]

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert threads_in_a_new_thread() == 2
        app = Path(__file__).resolve().parents[1] / "streamlit_app.py"
        at = AppTest.from_file(str(app), default_timeout=120)
        at.switch_page("app_pages/optimizers.py")   # computes with torch, never opens the store
        at.run()
        assert not at.exception
        assert threads_in_a_new_thread() == 1
    finally:
        torch.set_num_threads(before)


def test_cpu_model_reads_the_model_name_or_falls_back_to_platform(tmp_path):
    """Benchmarks name the machine by its processor (issue 15: "with the machine named")."""
    import platform

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                    "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nprocessor\t: 1\n"
                    "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n")
    assert cpu_model(info) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert cpu_model(tmp_path / "missing") == (platform.processor() or platform.machine())
    info.write_text("processor\t: 0\nCPU part\t: 0xd0c\n")   # an ARM board names no model
    assert cpu_model(info) == (platform.processor() or platform.machine())

"""The files Streamlit Community Cloud deploys from agree with pyproject.toml and with each other.

Community Cloud installs requirements.txt (it outranks pyproject.toml there) and the apt packages
in packages.txt, and reads .streamlit/config.toml. The install itself is checked by hand (see the
README's "Deploy your own copy"); these tests keep the files from drifting apart.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11


def _requirements() -> tuple[list[str], list[str]]:
    """(pip options, requirement lines) of requirements.txt, comments dropped."""
    text = (ROOT / "requirements.txt").read_text()
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    options = [ln for ln in lines if ln.startswith("-")]
    return options, [ln for ln in lines if not ln.startswith("-")]


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_package_declares_ranges_that_keep_a_users_own_torch():
    """`pip install saturation-lab` into an environment with a CUDA torch must keep it: no
    dependency is pinned exactly, and torch's range admits CUDA and CPU builds alike."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = _project()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]
            + [r for extra in project["optional-dependencies"].values() for r in extra]]
    assert not [r for r in reqs if any(s.operator in ("==", "===") for s in r.specifier)]
    (torch,) = [r for r in reqs if r.name == "torch"]
    for build in ("2.6.0", "2.13.0+cu128", "2.13.0+cpu", "2.13.0"):
        assert torch.specifier.contains(Version(build), prereleases=False), build
    assert not torch.specifier.contains(Version("2.5.1"))  # lacks nn.utils.get_total_norm


def test_requirements_pin_exactly_within_pyprojects_ranges():
    from packaging.requirements import Requirement

    wanted = {_name(r): Requirement(r) for r in _project()["project"]["dependencies"]}
    _, lines = _requirements()
    pins = {_name(r): Requirement(r) for r in lines}
    assert pins.keys() == wanted.keys()
    for name, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert wanted[name].specifier.contains(spec.version), (pin, wanted[name])
    assert str(pins["torch"].specifier).endswith("+cpu")   # the CPU build: no CUDA wheels


def test_uv_takes_torch_from_the_cpu_index_only():
    """A uv lock made from pyproject.toml (Community Cloud reads uv.lock first) resolves torch
    on PyTorch's CPU index, and nothing else there."""
    uv = _project()["tool"]["uv"]
    (index,) = uv["index"]
    assert index == {"name": "pytorch-cpu", "url": "https://download.pytorch.org/whl/cpu",
                     "explicit": True}
    assert uv["sources"] == {"torch": {"index": "pytorch-cpu"}}


def test_torch_comes_from_the_pytorch_cpu_index():
    options, _ = _requirements()
    assert options == ["--extra-index-url https://download.pytorch.org/whl/cpu"]


def test_apt_packages_are_plain_names_the_code_uses():
    packages = (ROOT / "packages.txt").read_text().split()
    assert packages == ["dataset-fashion-mnist"]
    from core.data.mnist import DEBIAN_FASHION_DIR

    assert str(DEBIAN_FASHION_DIR) == "/usr/share/datasets/fashion-mnist"  # where it installs


def test_streamlit_config_suits_a_shared_server():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["headless"] is True
    assert config["client"]["showErrorDetails"] == "none"   # no stack traces to users
    assert config["browser"]["gatherUsageStats"] is False

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


def test_requirements_match_pyproject_except_the_cpu_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    _, reqs = _requirements()
    got = {_name(r): r.replace(" ", "") for r in reqs}
    assert got.keys() == wanted.keys()
    torch_pin = wanted.pop("torch")
    assert torch_pin.startswith("torch==")
    assert got.pop("torch") == f"{torch_pin}+cpu"   # the CPU build: no CUDA wheels
    assert got == wanted


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

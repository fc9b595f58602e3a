"""The layering rules, checked on every module's imports (at any depth, lazy ones included).

The folders are the table of contents, and imports run downward only:
- `core/` root is the shared floor (settings, lessons, cache, store, budget, training, tables,
  data, activations, chart parts, cpus): it imports no family (`python -m core`'s launcher
  hands over to tools/).
- A family (`core/lab`, `core/init`, `core/recurrent`, `core/attention`, `core/optimizers`,
  `core/watch`) imports the root; only `init/` (the Lab's networks at initialisation), `watch/`
  (a watched model's records are a Lab result, read by the Lab's charts and doctor) and `tools/`
  (the CLI and benchmark, over every family) may also import `lab/`; `classics/` (famous
  results checked on real runs) may import the families whose runs it reads; lessons never
  import each other.
- `core` never imports Streamlit: it is usable from the CLI, notebooks and tests alone.
- Pages (`app_pages/`, `streamlit_app.py`) never import torch: they build settings and draw
  results; `core` computes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("lab", "init", "recurrent", "attention", "optimizers", "watch", "classics", "tools")
# watch/: a watched model's records are a Lab RunResult, with the Lab's metric names, so the
# Lab's charts and doctor read them.
# classics/: each classic is checked on runs of the families it reproduces (issue 17).
MAY_ALSO_IMPORT = {"init": {"lab"}, "watch": {"lab"}, "classics": {"lab", "recurrent", "init"},
                   "tools": set(FAMILIES)}
LAUNCHER = ROOT / "core" / "__main__.py"   # `python -m core`: hands over to tools/cli.py
PAGES = sorted((ROOT / "app_pages").rglob("*.py")) + [ROOT / "streamlit_app.py"]
CORE = sorted((ROOT / "core").rglob("*.py"))


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """Every module name an import statement in `path` names, relative ones resolved."""
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def family(module: str) -> str | None:
    """'lab' for core.lab.trainer (or `from core import lab`), None for the root's modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "core" and parts[1] in FAMILIES else None


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", CORE, ids=_id)
def test_core_never_imports_streamlit(path):
    assert not [n for n in imported(path) if n.split(".")[0] == "streamlit"]


@pytest.mark.parametrize("path", PAGES, ids=_id)
def test_pages_never_import_torch(path):
    assert not [n for n in imported(path) if n.split(".")[0] == "torch"]


@pytest.mark.parametrize("path", CORE, ids=_id)
def test_imports_run_downward(path):
    own = family(".".join(path.relative_to(ROOT).with_suffix("").parts))
    allowed = {own} | MAY_ALSO_IMPORT.get(own, set()) if own else set()
    if path == LAUNCHER:
        allowed = {"tools"}
    wrong = sorted(n for n in imported(path) if family(n) and family(n) not in allowed)
    where = f"core/{own}/" if own else "the root of core/"
    assert not wrong, f"{where} may not import {wrong}"


def test_the_folders_are_the_families():
    folders = {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(FAMILIES) | {"data"}


def test_the_scan_sees_imports_at_any_depth(tmp_path):
    """The checker itself: a lazy import inside a function counts, relative ones resolve."""
    pkg = tmp_path / "core" / "lab"
    pkg.mkdir(parents=True)
    mod = pkg / "m.py"
    mod.write_text("def f():\n    import streamlit as st\nfrom ..store import RunStore\n"
                   "from . import config\nfrom core import recurrent\n")
    names = imported(mod, tmp_path)
    assert {"streamlit", "core.store", "core.store.RunStore", "core.lab",
            "core.lab.config", "core.recurrent"} <= names
    assert family("core.recurrent") == "recurrent" and family("core.store") is None


def test_home_and_the_settings_forms_load_without_torch():
    """Home draws lesson cards and the forms offer names: neither needs torch, whose import cost
    a cold server's first page ~1.1 s. Everything the router and Home import, in a fresh process
    (torch may come later: core.tools.warmup loads it once the first page has drawn)."""
    import subprocess
    import sys

    modules = sorted(m for path in (ROOT / "streamlit_app.py", ROOT / "app_pages" / "home.py",
                                    ROOT / "app_pages" / "kit" / "controls.py")
                     for m in imported(path) if m.split(".")[0] in ("core", "app_pages"))
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:   # `from core.x import NAME` names NAME too\n"
            "        pass\n"
            "import core.cpus; core.cpus.configure_for_server()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout[:500]

"""The layering rules, checked on every module's imports (at any depth, lazy ones included).

- `core` never imports Streamlit: it is usable from the CLI, notebooks and tests alone.
- Pages never import torch: they build settings and draw results; `core` computes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE_DIRS = ("pages",)


def modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


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


def breaks(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imported(path) for f in forbidden if n == f or n.startswith(f + "."))


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_streamlit(path):
    assert breaks(path, ("streamlit",)) == []


@pytest.mark.parametrize("path", modules(*PAGE_DIRS) + [ROOT / "streamlit_app.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_never_import_torch(path):
    assert breaks(path, ("torch",)) == []


def test_the_scan_sees_imports_at_any_depth(tmp_path):
    """The checker itself: a lazy import inside a function counts, relative ones resolve."""
    pkg = tmp_path / "core" / "lab"
    pkg.mkdir(parents=True)
    mod = pkg / "m.py"
    mod.write_text("def f():\n    import streamlit as st\nfrom ..store import RunStore\n"
                   "from . import config\n")
    names = imported(mod, tmp_path)
    assert {"streamlit", "core.store", "core.store.RunStore", "core.lab",
            "core.lab.config"} <= names

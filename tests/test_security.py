"""Security: nothing is unpickled, no value from a link or a form reaches a file path, and the
errors a user sees carry no stack trace.

    python -m pytest tests/test_security.py
"""

from __future__ import annotations

import ast
import contextlib
import getpass
import io
import json
import os
import pickle
import re
import sqlite3
import sys
import tempfile
import tomllib
import zlib
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.attention import config as attention

from core.optimizers import race as optimizers

from core.recurrent import config as recurrent_config

from core.data.datasets import load_splits
from core.lab import sweep
from core.lab.config import ConfigError, RunConfig
from core.lab.runs import cached_run, get_run, load_run, stored_runs
from core.store import RunStore
from core.tools.cli import main
from tests.helpers import open_page

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
SOURCES = sorted([*(ROOT / "core").rglob("*.py"), *(ROOT / "app_pages").rglob("*.py"), Path(APP)])


# === nothing is unpickled ======================================================================
PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "shelve", "dill", "cloudpickle", "joblib",
                    "marshal", "copyreg"}
# Calls that unpickle (or run code) whatever they are given: module.function or method names.
UNPICKLING_CALLS = {"torch.load", "pd.read_pickle", "pandas.read_pickle", "joblib.load",
                    "np.load", "numpy.load", "eval", "exec"}


def unpickling(source: str) -> list[str]:
    """What in `source` imports a pickling module or calls something that unpickles."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLING_MODULES:
                found.append(node.module)
            found += [f"{node.module}.{a.name}" for a in node.names
                      if f"{node.module}.{a.name}" in UNPICKLING_CALLS]
        elif isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in UNPICKLING_CALLS or name.endswith((".read_pickle", ".loads")) and \
                    name.split(".")[0] in PICKLING_MODULES:
                found.append(name)
            if any(k.arg == "allow_pickle" for k in node.keywords):
                found.append(f"{name}(allow_pickle=…)")
        elif isinstance(node, ast.Attribute) and node.attr in ("read_pickle", "Unpickler"):
            found.append(ast.unparse(node))
    return found


def test_the_unpickling_check_finds_what_it_looks_for():
    sample = ("import pickle\nfrom joblib import load\nimport torch, numpy as np\n"
              "x = torch.load(f)\ny = np.load(f, allow_pickle=True)\nz = eval(text)\n"
              "df = pandas.read_pickle(p)\n")
    assert set(unpickling(sample)) >= {"pickle", "joblib", "torch.load",
                                       "np.load", "np.load(allow_pickle=…)", "eval",
                                       "pandas.read_pickle"}
    assert unpickling("import json\nimport zlib\nx = json.loads(zlib.decompress(b))\n") == []


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_code_unpickles_anything(path):
    assert unpickling(path.read_text()) == []


class _Pwned:
    """Unpickling this creates a file: a stand-in for a payload that runs a command."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _write_row(store: RunStore, key: str, payload) -> None:
    with contextlib.closing(sqlite3.connect(store.path)) as conn, conn:
        conn.execute("INSERT OR REPLACE INTO runs (key, payload, bytes, created, last_access, "
                     "tick, meta) VALUES (?, ?, 1, 0, 0, 1, ?)",
                     (key, payload, json.dumps({"changed": {}})))


def test_a_pickle_in_the_run_store_is_a_damaged_entry_and_never_loaded(tmp_path):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Pwned(str(marker)))
    pickle.loads(evil)  # the payload is live: unpickling it creates the file
    assert marker.exists()
    marker.unlink()

    store = RunStore(tmp_path / "runs.sqlite3")
    cfg = RunConfig(depth=2, epochs=1)
    store.put("bystander", {"y": 2})
    readers = [lambda: load_run(cfg.key(), store), lambda: cached_run(cfg, store),
               lambda: store.get(cfg.key())]
    for payload in (evil, zlib.compress(evil)):  # raw, and compressed as the store's own are
        for read in readers:
            _write_row(store, cfg.key(), payload)
            assert cfg.key() in [r["key"] for r in stored_runs(store)]  # listed like any run
            assert read() is None
            assert cfg.key() not in store  # dropped as damaged
            assert not marker.exists()
    # A well-formed entry carrying a pickle as data: it stays data, and is no run.
    _write_row(store, cfg.key(), zlib.compress(json.dumps(
        {"v": 1, "key": cfg.key(), "record": {"config": cfg.to_dict(),
                                              "pickle": evil.hex()}}).encode()))
    assert load_run(cfg.key(), store) is None and cached_run(cfg, store) is None
    assert not marker.exists()
    assert store.get("bystander") == {"y": 2}


# === no value from a link or a form reaches a file path ========================================
PATHS = ["../../etc/passwd", "/etc/passwd", "/tmp/x", "..\\x", "~/.ssh/id_rsa",
         "file:///etc/passwd", "C:\\Windows\\win.ini", "/dev/zero"]
MARKERS = ("passwd", "/tmp/x", "..\\x", "id_rsa", "win.ini", "/dev/zero")
_recorded: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _recorded is not None and event in ("open", "sqlite3.connect", "os.listdir",
                                           "os.scandir", "os.remove", "os.rename",
                                           "shutil.rmtree", "os.mkdir"):
        if args and isinstance(args[0], (str, bytes, os.PathLike)):
            _recorded.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: this one records only inside `touched()`


@contextlib.contextmanager
def touched():
    """Every path opened, listed, created or removed inside the block (Python's audit hooks)."""
    global _recorded
    _recorded = paths = []
    try:
        yield paths
    finally:
        _recorded = None


def test_the_file_recorder_sees_files_opened_every_way(tmp_path):
    target = tmp_path / "passwd"
    with touched() as paths:
        target.write_text("x")
        open(target).close()
        with contextlib.suppress(OSError):
            os.close(os.open(tmp_path / "missing-passwd", os.O_RDONLY))
        sqlite3.connect(tmp_path / "passwd.db").close()
    assert sum("passwd" in p for p in paths) >= 4


def no_path_from_the_user(paths: list[str]) -> None:
    assert not [p for p in paths if any(m in p for m in MARKERS)], paths


@pytest.mark.parametrize("path", PATHS)
def test_a_path_as_a_setting_is_rejected_before_any_file_is_touched(path, tmp_path):
    store = RunStore(tmp_path / "runs.sqlite3")
    with touched() as paths:
        for cls, name in ((RunConfig, "dataset"), (recurrent_config.RecurrentConfig, "dataset"),
                          (attention.AttentionConfig, "tokens"),
                          (optimizers.RaceConfig, "surface")):
            with pytest.raises(ConfigError, match=f"^{name}: "):
                cls(**{name: path})
        cfg, warnings = RunConfig.from_params_lenient({"dataset": path, "init": path})
        assert cfg == RunConfig() and len(warnings) == 2
        for parse in (recurrent_config.RecurrentConfig.from_params_lenient,
                      attention.AttentionConfig.from_params_lenient,
                      optimizers.RaceConfig.from_params_lenient):
            cfg, warnings = parse({"dataset": path, "tokens": path, "surface": path})
            assert cfg == type(cfg)() and warnings
        spec, warnings = sweep.SweepSpec.from_params_lenient(
            {"x": path, "xv": path, "y": "dataset", "yv": f"{path},digits"})
        assert spec.y == "dataset" and spec.y_values == ("digits",) and len(warnings) == 2
        with pytest.raises(ValueError, match="unknown dataset"):
            load_splits(path)
        assert load_run(path, store) is None
        with pytest.raises(ValueError, match="invalid store key"):
            store.get(path)
        for argv in (["train", "--dataset", path], ["probe", "--init", path],
                     ["sweep", "--x", f"dataset={path}", "--y", "depth=2"]):
            with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit) as exit_:
                main(argv)
            assert exit_.value.code == 2
    no_path_from_the_user(paths)


def allowed_places() -> list[str]:
    """Where the app may open files: its own code, Python and its packages, the run store,
    the dataset cache, Debian's Fashion-MNIST and the system's own files."""
    places = [ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(os.environ["SATLAB_DATA_DIR"]),
              Path(os.environ["SATLAB_STORE"]).parent, Path("/usr/share/datasets"),
              Path.home() / ".streamlit", Path("/proc"), Path("/sys"), Path("/etc/localtime"),
              Path("/etc/mime.types"), Path("/usr/lib"), Path("/usr/share/zoneinfo"),
              Path(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")]
    return [str(p.resolve()) for p in places]


@pytest.mark.parametrize("page,link", [
    ("lab", {"dataset": PATHS[0], "init": PATHS[1], "epochs": "1", "max_train": "100"}),
    ("compare", {"mode": "Stored runs", "run_a": PATHS[0], "run_b": PATHS[2]}),
    ("recurrent", {"dataset": PATHS[3], "cell": PATHS[4], "max_train": "100", "epochs": "1",
                   "hidden": "8"}),
    ("sweep", {"x": PATHS[0], "xv": PATHS[1], "y": "dataset", "yv": PATHS[2], "epochs": "1",
               "max_train": "100"}),
], ids=["lab", "compare", "recurrent", "sweep"])
def test_a_page_opened_with_paths_in_its_link_opens_no_file_outside_its_own(page, link):
    if page == "compare":  # two stored runs to pick from
        for depth in (1, 2):
            get_run(RunConfig(depth=depth, epochs=1, max_train=100))
    with touched() as paths:
        at = open_page(f"app_pages/{page}.py", **link)
    assert not at.exception, [e.value for e in at.exception]
    no_path_from_the_user(paths)
    places = allowed_places()
    elsewhere = {p for p in paths if not os.path.realpath(p).startswith(tuple(places))}
    assert not elsewhere, elsewhere
    assert paths  # the recorder was on: a page reads its own script at least


# === errors shown to users carry no stack trace ================================================
def test_the_app_config_hides_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


@contextlib.contextmanager
def app_config():
    """Streamlit's options as `streamlit run` in the repository reads them (from the working
    directory's .streamlit/config.toml), whichever directory the tests run from."""
    from streamlit import config

    here = os.getcwd()
    os.chdir(ROOT)
    try:
        config.get_config_options(force_reparse=True)
        yield config
    finally:
        os.chdir(here)
        config.get_config_options(force_reparse=True)


def test_an_error_no_page_catches_shows_no_stack_trace_and_no_message(monkeypatch):
    secret = "secret detail at /home/someone/.cache"

    def fail(cfg):
        raise RuntimeError(secret)
    monkeypatch.setattr(optimizers, "race", fail)  # the Optimizers page does not catch it
    st.cache_data.clear()  # a race cached by another test would not call it
    with app_config() as config:
        assert config.get_option("client.showErrorDetails") == "none"
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["iterations"] = "20"
        at.query_params["surface"] = "saddle"  # a config no other test races (st.cache_data)
        at.switch_page("app_pages/optimizers.py")
        at.run()
    assert len(at.exception) == 1
    shown = at.exception[0]
    assert list(shown.stack_trace) == [] and not shown.proto.type
    assert secret not in str(shown.proto) and "Traceback" not in str(shown.proto)
    assert "error" in shown.message  # a generic line says that something went wrong


def test_pages_that_catch_errors_show_one_line_without_a_trace(monkeypatch):
    from core.init import probe
    def fail(*args, **kwargs):
        raise RuntimeError("the data could not be read")
    monkeypatch.setattr(probe, "probe", fail)
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["depth"] = "3"
    at.query_params["width"] = "8"
    at.switch_page("app_pages/initialization.py")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors == ["This network could not be probed: the data could not be read"]
    assert not re.search(r"Traceback|File \"", errors[0])

"""What several test modules share: opening a page in Streamlit's AppTest, a real `streamlit run`
server, and reading a chart's Vega-Lite spec (its data rows, encodings and texts) to assert on
what is drawn."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")


def open_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(page)
    return at.run()


def counting(module, kind: str, calls: list, monkeypatch, pause: float = 0.3) -> None:
    """Replace the training of module.kind (a core.cache.RunKind) by a wrapper that records each
    call and lingers first, so that every other session asks while the first one still trains."""
    real = getattr(module, kind)

    def wrapper(cfg, *args, **kwargs):
        calls.append(cfg)
        time.sleep(pause)
        return real.train(cfg, *args, **kwargs)
    monkeypatch.setattr(module, kind, dataclasses.replace(real, train=wrapper))


@contextlib.contextmanager
def streamlit_server(scratch: Path, **env: str):
    """`with streamlit_server(folder) as (url, log file, pid):` a real `streamlit run` of the app on a
    free localhost port, with an empty run store in `folder` and `env` added; stopped after."""
    log_path = scratch / "streamlit.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SATLAB_STORE": str(scratch / "runs.sqlite3"), "SATLAB_OFFLINE": "1",
           **env}
    # The log goes to a file: a pipe nobody reads fills up and then blocks the server.
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port",
             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        proc.wait()
        pytest.fail("streamlit did not start:\n" + log_path.read_text(errors="replace")[-2000:])
    try:
        yield url, log_path, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclasses.dataclass
class ScriptSession:
    """What one session saw of a page: every text shown (markdown, headings, alerts, progress bars'
    texts, metrics' values and deltas, buttons' labels), exceptions, and the seconds until its
    script finished."""
    seconds: float
    texts: list[str]
    exceptions: list[str]

    def saw(self, text: str) -> bool:
        return any(text in shown for shown in self.texts)


def script_session(url: str, page: str, query: str, timeout: float = 300) -> ScriptSession:
    """Open `page` (its url_path, "" for Home) with `query` as a browser does, over Streamlit's
    websocket protocol (BackMsg/ForwardMsg protobufs), without drawing anything: a load test's
    many sessions then cost the server what real visitors cost, and no browser shares its
    CPUs. Returns when the page's script has finished (not a run ended early for a rerun)."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    start = time.perf_counter()
    texts: list[str] = []
    exceptions: list[str] = []
    with connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                 max_size=None, open_timeout=60) as ws:
        ask = BackMsg()
        ask.rerun_script.query_string = query
        ask.rerun_script.page_name = page
        ws.send(ask.SerializeToString())
        while True:
            msg = ForwardMsg.FromString(ws.recv(timeout=timeout))
            kind = msg.WhichOneof("type")
            if kind == "script_finished" and msg.script_finished in (
                    ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR):
                return ScriptSession(time.perf_counter() - start, texts, exceptions)
            if kind != "delta" or msg.delta.WhichOneof("type") != "new_element":
                continue
            element = msg.delta.new_element
            shown = element.WhichOneof("type")
            if shown == "exception":
                exceptions.append(element.exception.message)
            elif shown in ("markdown", "alert", "heading"):
                texts.append(getattr(element, shown).body)
            elif shown == "progress":
                texts.append(element.progress.text)
            elif shown == "metric":
                texts.append(f"{element.metric.body} {element.metric.delta}")
            elif shown in ("button", "download_button"):
                texts.append(getattr(element, shown).label)


def charts(at: AppTest) -> list[str]:
    """Every Altair chart's spec and data as text, to assert on what is drawn."""
    out = []
    for el in at.get("vega_lite_chart"):
        text = el.proto.spec + "".join(str(d) for d in el.proto.datasets)
        out.append(text)
    return out


def clean(at: AppTest) -> None:
    """No exception and no failed run (the doctor's findings are error boxes on purpose)."""
    assert not at.exception, [e.value for e in at.exception]
    failed = [e.value for e in at.error if "could not start" in e.value]
    assert not failed, failed


# --- reading Altair specs ----------------------------------------------------------------------------
def walk(node):
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def rows(spec: dict) -> list[dict]:
    """Every data row in a spec: Altair 6 puts them in top-level `datasets` (named by hash),
    inline `data.values` is possible too."""
    out = [row for values in spec.get("datasets", {}).values() for row in values]
    for node in walk({k: v for k, v in spec.items() if k != "datasets"}):
        if isinstance(node, dict) and isinstance(node.get("data"), dict):
            out += node["data"].get("values", [])
    return out


def rows_with(spec: dict, *keys: str) -> list[dict]:
    return [r for r in rows(spec) if all(k in r for k in keys)]


def encodings(spec: dict, channel: str) -> list[dict]:
    return [n["encoding"][channel] for n in walk(spec)
            if isinstance(n, dict) and isinstance(n.get("encoding"), dict)
            and channel in n["encoding"]]


def texts(spec: dict) -> str:
    """Titles and text-mark data, to check what a chart says."""
    parts = [json.dumps(n.get("title", ""), ensure_ascii=False)
             for n in walk(spec) if isinstance(n, dict)]
    return " ".join(parts + [str(r.get("text", "")) for r in rows(spec)])


def assert_clean(spec: dict) -> None:
    """No NaN, inf or null (Altair's rendering of NaN) anywhere in the data."""
    for row in rows(spec):
        for key, value in row.items():
            assert value is not None, (key, row)
            if isinstance(value, float):
                assert math.isfinite(value), (key, row)
    json.dumps(spec, allow_nan=False)


def postgres_binaries() -> Path | None:
    """The folder of PostgreSQL's server programs: on PATH, or where Debian's `postgresql`
    puts them (not on PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgres_server(scratch: Path):
    """`with postgres_server(folder) as url:` a real PostgreSQL server of its own on a free
    localhost port (initdb in `folder`, trust auth, no fsync: a test's data need not survive a
    power cut), stopped after. The server refuses to run as root, so then it runs as `postgres`."""
    bin_dir = postgres_binaries()
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(scratch, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = scratch / "data"
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {scratch} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                    "-l", str(scratch / "server.log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)


def scrubbed_from(s: dict, epoch: int, last: int) -> None:
    """The spec shows one epoch through a parameter bound to a 0…last slider starting at
    `epoch`."""
    from core.chart_parts import EPOCH
    params = [p for n in walk(s) if isinstance(n, dict) for p in n.get("params", [])
              if p.get("name") == EPOCH]
    assert len(params) == 1
    assert params[0]["value"] == epoch
    assert {k: params[0]["bind"][k] for k in ("input", "min", "max", "step")} == {
        "input": "range", "min": 0, "max": last, "step": 1}

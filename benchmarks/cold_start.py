"""Cold start of the app: from `streamlit run` to the first page drawn in a real browser.

    PYTHONPATH=. python benchmarks/cold_start.py                       # / and /lab, 3 tries each
    PYTHONPATH=. python benchmarks/cold_start.py --paths lab --repeats 5
    PYTHONPATH=. python benchmarks/cold_start.py --python /path/to/deploy-venv/bin/python

Each try launches a fresh `streamlit run streamlit_app.py` on a free port with an empty run
store (as after a reboot on Community Cloud, whose disk does not survive one), opens one page
as the server's very first request in Playwright-driven Chromium (launched beforehand: a
visitor's browser is already running) and records, from the launch:
  ready      the server answers /_stcore/health (Python and Streamlit imported, nothing of ours)
  title      the page's title (h1) is visible: the app's imports done, the script running
  complete   the page's last element is drawn; on /lab that includes training the default run
  train      of which the training run took (the Lab's own "Time" figure)
plus the server's memory then (resident, and its peak). A separate fresh interpreter times the
imports alone: every module the pages import, so `python -c "import …"` with nothing drawn.

Needs Playwright (pip install playwright) and Chromium (/usr/bin/chromium, Debian's `chromium`;
SATLAB_CHROMIUM to point elsewhere). SATLAB_OFFLINE=1 is set for the server unless given.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from core.cpus import container_cpus, cpu_model

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SATLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
# The last element each page draws (as in tests/test_browser.py): once visible, the run is over.
LAST = {"": "Open in the Lab", "lab": "PyTorch script"}
# Issue 15's targets for `complete`, in seconds: Home drawn, /lab trained and drawn.
TARGETS = {"": 3.0, "lab": 6.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) of a process in MB, from /proc (0, 0 elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0, 0.0
    fields = {line.split(":")[0]: line.split()[1] for line in status if line.startswith("Vm")}
    return int(fields.get("VmRSS", 0)) / 1024, int(fields.get("VmHWM", 0)) / 1024


def one_cold_start(browser, python: str, path: str, timeout_s: float) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="satlab-cold-") as scratch:
        env = {**os.environ, "SATLAB_STORE": str(Path(scratch) / "runs.sqlite3"),
               "SATLAB_DATA_DIR": str(Path(scratch) / "data")}
        env.setdefault("SATLAB_OFFLINE", "1")
        start = time.perf_counter()
        proc = subprocess.Popen(
            [python, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.perf_counter() - start > timeout_s:
                    raise RuntimeError(f"streamlit did not start (exit status {proc.poll()})")
                time.sleep(0.02)
            ready = time.perf_counter() - start
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{url}/{path}")
            page.locator("h1").first.wait_for(state="visible", timeout=timeout_s * 1000)
            title = time.perf_counter() - start
            page.get_by_text(LAST[path]).first.wait_for(state="visible", timeout=timeout_s * 1000)
            complete = time.perf_counter() - start
            errors = page.locator('[data-testid="stException"]').count()
            # The Lab's "Time" metric: how much of `complete` was the training run itself.
            timing = page.locator('[data-testid="stMetric"]').filter(has_text="Time")
            train = (float(timing.first.inner_text().split()[1]) if timing.count()
                     else float("nan"))
            context.close()
            rss, peak = memory_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if errors:
        raise RuntimeError(f"/{path} drew {errors} error element(s)")
    return {"ready": ready, "title": title, "complete": complete, "train": train, "rss": rss,
            "peak": peak}


def app_modules() -> list[str]:
    """Every module the entrypoint and the pages import (read from their source, not run)."""
    names = {"streamlit"}
    for source in [ROOT / "streamlit_app.py", *sorted((ROOT / "app_pages").rglob("*.py"))]:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
    # pages.* are the page scripts themselves (running them needs a session); their own
    # imports are in the list already.
    return sorted(n for n in names if n.split(".")[0] not in {*sys.stdlib_module_names, "app_pages"})


def import_seconds(python: str, modules: list[str]) -> float:
    code = ("import time; t = time.perf_counter(); import importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(time.perf_counter() - t)")
    out = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "SATLAB_OFFLINE": "1"})
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", nargs="+", default=["", "lab"], choices=list(LAST),
                    help="pages to open as the first request ('' is /)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter that runs the server (e.g. a venv from requirements.txt)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds per step")
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"Cold start, {now:%Y-%m-%d %H:%M} UTC")
    print(f"{cpu_model()}, {container_cpus()} CPUs available, load average "
          f"{os.getloadavg()[0]:.1f} at the start; server Python: {args.python}")
    modules = app_modules()
    imports = [import_seconds(args.python, modules) for _ in range(args.repeats)]
    print(f"imports alone ({len(modules)} modules: {', '.join(m for m in modules if '.' not in m)}"
          f" …): " + ", ".join(f"{s:.2f}" for s in imports) + " s")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        # Interleaved (/, /lab, /, /lab, …) so a burst of load elsewhere hits every page alike.
        results: dict[str, list[dict]] = {path: [] for path in args.paths}
        for i in range(args.repeats):
            for path in args.paths:
                r = one_cold_start(browser, args.python, path, args.timeout)
                results[path].append(r)
                print(f"  try {i + 1} /{path:<4} ready {r['ready']:5.2f} s"
                      f"  title {r['title']:5.2f} s"
                      f"  complete {r['complete']:5.2f} s  train {r['train']:4.2f} s"
                      f"  memory {r['rss']:.0f} MB (peak {r['peak']:.0f} MB)", flush=True)
        print(f"Chromium {browser.version} ({CHROMIUM})")
        browser.close()

    print(f"\nmedian of {args.repeats}, seconds from `streamlit run` (memory: the server, MB)")
    print(f"{'first request':<14} {'ready':>6} {'title':>6} {'complete':>9} {'target':>8}"
          f"          {'train':>6} {'memory':>7} {'peak':>6}")
    for path, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        goal = TARGETS[path]
        print(f"/{path:<13} {med['ready']:6.2f} {med['title']:6.2f} {med['complete']:9.2f}"
              f" {'< ' + format(goal, 'g'):>8} {'met' if med['complete'] < goal else 'not met':<8}"
              f" {med['train']:6.2f} {med['rss']:7.0f} {med['peak']:6.0f}")


if __name__ == "__main__":
    main()

"""How fast the app answers a visitor in Chromium (issue 15's targets), on a warm server.

    PYTHONPATH=. python benchmarks/page_speed.py             # 5 tries of each, medians printed
    PYTHONPATH=. python benchmarks/page_speed.py --repeats 9

Starts a real `streamlit run` (tests.helpers.streamlit_server: empty run store, offline), trains
the Lab's default run once, then measures, each from the user's action to the page settled (no
script running, the charts drawn):
  new tab     a stored run's Lab page opened in a new tab of the browser that
              visited before (its HTTP cache holds Streamlit's static files)  target < 1.5 s
  tab switch  each Lab tab clicked in turn                                      target < 0.2 s
  tab switch back   each clicked again (its specs cached on the server by then)
  scrub       one epoch step: the in-chart epoch slider where the page has one (client-side,
              to the chart's next frame), else the Streamlit epoch slider (a server rerun)
                                                                                target < 0.2 s
Cold starts (Home < 3 s, /lab < 6 s) are benchmarks/cold_start.py; Home beside twenty sessions
is printed by tests/app/test_load.py.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import tempfile
import time
from pathlib import Path

import streamlit
from playwright.sync_api import sync_playwright

from core.cpus import container_cpus, cpu_model
from tests.helpers import streamlit_server

CHROMIUM = os.environ.get("SATLAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
LAST_LAB = "PyTorch script"
# Issue 15's targets, in seconds; each tab's own switch is held to the switch's.
TARGETS = {"new tab": 1.5, "tab switch": 0.2, "tab switch back": 0.2, "scrub": 0.2}
# Resolves once the open tab panel's charts have all painted (a chart has a canvas or an SVG
# with a size) and two animation frames have passed.
PAINTED = """() => new Promise(resolve => {
  const check = () => {
    const panel = document.querySelector('[role="tabpanel"]:not([hidden])');
    const charts = panel ? [...panel.querySelectorAll('.vega-embed')] : [];
    const drawn = charts.length > 0 && charts.every(c => {
      const g = c.querySelector('canvas, svg'); return g && g.getBoundingClientRect().width > 0;
    });
    if (drawn) requestAnimationFrame(() => requestAnimationFrame(() => resolve(true)));
    else setTimeout(check, 10);
  };
  check();
})"""
# Steps the first in-chart range input (a Vega-Lite param bound to a slider) one epoch and
# resolves on the frame after that chart's canvas changed.
CLIENT_SCRUB = """() => new Promise(resolve => {
  const input = document.querySelector('.vega-bind input[type=range]');
  if (!input) { resolve(null); return; }
  const chart = input.closest('.vega-embed');
  const canvas = chart.querySelector('canvas');
  const before = canvas ? canvas.toDataURL() : chart.innerHTML;
  const start = performance.now();
  const max = Number(input.max), value = Number(input.value);
  input.value = String(value < max ? value + 1 : Number(input.min));
  input.dispatchEvent(new Event('input', {bubbles: true}));
  const check = () => {
    const now = canvas ? canvas.toDataURL() : chart.innerHTML;
    if (now !== before) resolve((performance.now() - start) / 1000);
    else if (performance.now() - start > 5000) resolve(-1);
    else requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})"""


def settle(page) -> None:
    page.locator(IDLE).wait_for(timeout=120_000)
    page.wait_for_function(PAINTED, timeout=120_000)


def measure(url: str, repeats: int) -> tuple[dict[str, list[float]], str]:
    """Each action's times, and the browser's version."""
    times: dict[str, list[float]] = {"new tab": [], "scrub": []}
    scrub_kind = "server"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        # One browser profile, as a visitor's: its first tab trains the default run (and
        # caches Streamlit's static files, as any visit does); each try is a new tab.
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        first = context.new_page()
        first.goto(f"{url}/lab")
        first.get_by_text(LAST_LAB).first.wait_for(timeout=300_000)
        for _ in range(repeats):
            page = context.new_page()
            start = time.perf_counter()
            page.goto(f"{url}/lab")
            page.get_by_text(LAST_LAB).first.wait_for(timeout=120_000)
            settle(page)
            times["new tab"].append(time.perf_counter() - start)
            tabs = page.get_by_role("tab")
            names = [tabs.nth(i).inner_text() for i in range(tabs.count())]
            # First each tab in turn (its chart specs built and cached), then each again.
            for action in ("tab switch", "tab switch back"):
                for name in names[1:] + names[:1]:
                    start = time.perf_counter()
                    page.get_by_role("tab", name=name).click()
                    time.sleep(0.05)   # a rerun, if the click starts one, has begun
                    settle(page)
                    times.setdefault(action, []).append(time.perf_counter() - start)
                    if action == "tab switch":
                        times.setdefault(f"  {name}", []).append(times[action][-1])
            seconds = page.evaluate(CLIENT_SCRUB)
            if seconds is not None and seconds >= 0:
                scrub_kind = "in the chart"
                times["scrub"].append(seconds)
            else:
                slider = page.get_by_role("slider").first
                slider.focus()
                start = time.perf_counter()
                page.keyboard.press("ArrowRight")
                time.sleep(0.05)
                settle(page)
                times["scrub"].append(time.perf_counter() - start)
            page.close()
        version = browser.version
        browser.close()
    times[f"scrub ({scrub_kind})"] = times.pop("scrub")
    return times, version


def target(action: str) -> float:
    """The target of a row: its action's, a tab's that of a switch, a scrub's whatever kind."""
    if action.startswith("  "):
        return TARGETS["tab switch"]
    return TARGETS[action.split(" (")[0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory(prefix="satlab-speed-") as scratch:
        with streamlit_server(Path(scratch)) as (url, _, _):
            times, version = measure(url, args.repeats)
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"Page speed on a warm server, {now:%Y-%m-%d %H:%M} UTC")
    print(f"{cpu_model()}, {container_cpus()} CPUs available, load average {load:.1f} at the "
          f"start; Chromium {version} ({CHROMIUM}), Streamlit {streamlit.__version__}")
    print(f"\n{'action':<22}{'median':>8}{'min':>8}{'max':>8}{'target':>10}   "
          f"(seconds, {args.repeats} tries)")
    for action, values in times.items():
        median, goal = statistics.median(values), target(action)
        print(f"{action:<22}{median:8.2f}{min(values):8.2f}{max(values):8.2f}"
              f"{'< ' + format(goal, 'g'):>8} {'met' if median < goal else 'not met'}")


if __name__ == "__main__":
    main()

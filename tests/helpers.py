"""What several test modules share: opening a page in Streamlit's AppTest, and reading a chart's
Vega-Lite spec (its data rows, encodings and texts) to assert on what is drawn."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

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

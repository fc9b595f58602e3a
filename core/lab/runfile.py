"""Read a run file (`RunResult.to_json`, `python -m core train --json`) that anyone may have written.

    result = read_run_file("run.json")      # RunResult, or RunFileError with one clear sentence
    result = parse_run_file(data)           # the same from bytes (an upload)

A run file comes from outside: a CI job, a colleague, an attacker. Before `RunResult.from_dict`
sees it, its size is capped (read at most MAX_RUN_FILE_BYTES + 1 bytes, so a huge or endless file
costs nothing), it must be UTF-8 JSON holding one object with the run's fields, and every table
must be columns of equal length with the columns and cell types the Lab writes. Each refusal is a
`RunFileError` whose message names the part of the file at fault and what is allowed.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from core.lab.result import RunResult
from core.settings import ConfigError

# Room for the largest run the Lab's limits allow, about 390 MB: 201 histogram snapshots of 101
# layers × 5 kinds × 40 bins at 79 bytes a row, 300,000 layer rows (MAX_LAYER_ROWS) at 55 and a
# 2-D boundary of 201 × 64² points at 64 (bytes a row measured in the default and a moons run's
# files; the default run's file is 1.5 MB). A page taking uploads passes its own, smaller cap.
MAX_RUN_FILE_BYTES = 512 * 2**20
STATUSES = ("completed", "diverged", "stopped")
MAX_MESSAGE = 400          # characters of a RunFileError
# Each table's columns as RunResult writes them; True = text, False = numbers (or null).
_COLUMNS: dict[str, dict[str, bool]] = {
    "epochs": {"epoch": False, "split": True, "metric": True, "value": False},
    "steps": {"step": False, "epoch": False, "loss": False, "grad_norm": False,
              "clipped": False, "lr": False},
    "layers": {"step": False, "epoch": False, "layer": True, "metric": True, "value": False},
    "histograms": {"epoch": False, "layer": True, "kind": True, "bin": False, "lo": False,
                   "hi": False, "count": False},
    "boundary": {"epoch": False, "x": False, "y": False, "p": False},
    "points": {"x": False, "y": False, "label": False, "split": True},
}
# Tables a file written before they existed lacks (RunResult.from_dict reads them as empty).
_OPTIONAL_COLUMNS = {"sharpness": {"step": False, "sharpness": False}}
_FIELDS = ("config", "status", "device", "dataset", "layer_names", "n_params", "timing",
           "divergence", *_COLUMNS)


class RunFileError(ValueError):
    """A run file that cannot be read as a run; the message is one line for the user. It may
    quote the file (a config's unknown key), so control characters (a newline, a terminal's
    escape sequence) become spaces and a long quote is cut."""

    def __init__(self, message: str):
        printable = "".join(c if c.isprintable() else " " for c in message)
        text = " ".join(printable.split())
        super().__init__(text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…")


def read_run_file(path: str | os.PathLike, max_bytes: int = MAX_RUN_FILE_BYTES,
                  kinds: Mapping[str, type[RunResult]] | None = None) -> RunResult:
    """The run in the file at `path`; RunFileError if it is missing, too large or not a run.
    `kinds` as for `parse_run_file`."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a folder, a FIFO or /dev/zero: blocks or never ends
            raise RunFileError(f"{path}: not a regular file")
        if info.st_size > max_bytes:
            raise RunFileError(f"{path}: larger than the {_size(max_bytes)} a run file may have")
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such file") from None
    except OSError as err:
        raise RunFileError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        return parse_run_file(data, max_bytes, kinds)
    except RunFileError as err:
        raise RunFileError(f"{path}: {err}") from None


def parse_run_file(data: bytes, max_bytes: int = MAX_RUN_FILE_BYTES,
                   kinds: Mapping[str, type[RunResult]] | None = None) -> RunResult:
    """The run in `data`, a run file's bytes; RunFileError if it is not one.

    A Lab run's file has no "kind"; another kind of run in the Lab's tables (a watched loop's,
    core.watch) names its own, and `kinds` maps that name to its result class. The caller
    passes the kinds it knows: this module sits below them (imports run downward)."""
    if len(data) > max_bytes:
        raise RunFileError(f"larger than the {_size(max_bytes)} a run file may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RunFileError(f"not UTF-8 text (byte {err.start} is not); a run file is the JSON "
                           f"that `python -m core train --json` writes") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunFileError(f"not JSON ({err.msg} at line {err.lineno}, column {err.colno})"
                           ) from None
    except RecursionError:
        raise RunFileError("not a run: its JSON is nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise RunFileError(f"not JSON Python can read ({err})") from None
    _check(payload)
    kind = payload.get("kind")
    known = dict(kinds or {})
    if kind is not None and kind not in known:
        raise RunFileError(f"'kind' is {str(kind)[:40]!r}; this reader knows "
                           f"{', '.join(['a Lab run (no kind)', *map(repr, known)])}")
    try:
        return known.get(kind, RunResult).from_dict(payload)
    except ConfigError as err:
        raise RunFileError(f"its config is not a valid Lab config ({err})") from None
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"not a run ({type(err).__name__}: {err})") from None


def _check(payload: Any) -> None:
    if not isinstance(payload, dict):
        raise RunFileError(f"not a run: the JSON is {_kind(payload)}, a run is one object "
                           f"with the fields {', '.join(_FIELDS)}")
    missing = [name for name in _FIELDS if name not in payload]
    if missing:
        raise RunFileError(f"not a run: it lacks the field(s) {', '.join(missing)}")
    for name, kind in (("config", dict), ("dataset", dict), ("timing", dict),
                       ("layer_names", list), ("device", str), ("status", str)):
        if not isinstance(payload[name], kind):
            raise RunFileError(f"'{name}' is {_kind(payload[name])}; it must be "
                               f"{_kind(kind())}")
    if payload["status"] not in STATUSES:
        raise RunFileError(f"'status' is {payload['status'][:40]!r}; allowed: "
                           f"{', '.join(STATUSES)}")
    names = payload["layer_names"]
    if not names or not all(isinstance(n, str) for n in names):
        raise RunFileError("'layer_names' must be a non-empty list of texts")
    if not isinstance(payload["n_params"], int) or isinstance(payload["n_params"], bool):
        raise RunFileError("'n_params' must be a whole number")
    if not all(_number(v) for v in payload["timing"].values()):
        raise RunFileError("'timing' must map names to numbers")
    divergence = payload["divergence"]
    if divergence is not None and not (isinstance(divergence, dict) and all(
            _number(divergence.get(k)) for k in ("step", "epoch"))):
        raise RunFileError("'divergence' must be null or an object with a numeric step and "
                           "epoch")
    for table, columns in _COLUMNS.items():
        _check_table(table, payload[table], columns)
    for table, columns in _OPTIONAL_COLUMNS.items():
        if table in payload:
            _check_table(table, payload[table], columns)
    # What the doctor and the charts take for granted: a run records its layers from step 0
    # (the network at initialisation) on, and names only layers of its own network.
    if 0 not in payload["layers"]["step"]:
        raise RunFileError("table 'layers' has no records at step 0; a run records its layers "
                           "at initialisation first")
    for table in ("layers", "histograms"):
        unknown = set(payload[table].get("layer", ())) - set(names)
        if unknown:
            raise RunFileError(f"table '{table}' names layer(s) not in 'layer_names': "
                               f"{', '.join(sorted(unknown)[:3])[:120]}")


def _check_table(table: str, value: Any, columns: dict[str, bool]) -> None:
    if not isinstance(value, dict):
        raise RunFileError(f"table '{table}' is {_kind(value)}; it must be an object of columns")
    missing = [c for c in columns if c not in value]
    if missing:
        raise RunFileError(f"table '{table}' lacks the column(s) {', '.join(missing)}")
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths:
        raise RunFileError(f"table '{table}': every column must be a list")
    if len(lengths) > 1:
        raise RunFileError(f"table '{table}': its columns differ in length "
                           f"({', '.join(map(str, sorted(lengths)))})")
    for column, text in columns.items():
        ok = (lambda v: isinstance(v, str)) if text else (lambda v: v is None or _number(v))
        bad = next((v for v in value[column] if not ok(v)), _NONE)
        if bad is not _NONE:
            raise RunFileError(f"table '{table}', column '{column}' holds {_kind(bad)}; it "
                               f"must hold {'texts' if text else 'numbers (or null)'}")


_NONE = object()


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _kind(v: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a text", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(v), type(v).__name__)

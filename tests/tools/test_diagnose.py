"""`python -m core diagnose RUN.json`: the doctor in a CI job. Exit 1 on an error finding, 0 on a
healthy run, 2 with one line on a file that is not a readable run."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.lab.config import RunConfig
from core.lab.doctor import diagnose
from core.lab.presets import PRESETS
from core.lab.runfile import MAX_RUN_FILE_BYTES, RunFileError, parse_run_file, read_run_file
from core.lab.trainer import train
from core.tools.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Run files as `train --json` writes them: the vanishing lesson's run and a default run."""
    folder = tmp_path_factory.mktemp("runs")
    out = {}
    for name, cfg in (("vanishing", PRESETS["vanishing"].config), ("healthy", RunConfig())):
        out[name] = folder / f"{name}.json"
        out[name].write_text(train(cfg).to_json())
    return out


def test_a_vanishing_run_exits_1_with_the_evidence_from_its_own_records(files, capsys):
    assert main(["diagnose", str(files["vanishing"])]) == 1
    out = capsys.readouterr().out
    assert "ERROR   Vanishing gradients [vanishing]" in out
    out = " ".join(out.split())   # as read, not as wrapped
    # The depth ratio at init, recomputed from the file's raw layer table.
    data = json.loads(files["vanishing"].read_text())
    layers = data["layers"]
    g0 = {layer: value for step, layer, metric, value in
          zip(layers["step"], layers["layer"], layers["metric"], layers["value"])
          if step == 0 and metric == "out_grad_norm"}
    names = data["layer_names"]
    assert f"is {g0[names[0]] / g0[names[-1]]:.1e} of the gradient at the output" in out
    assert "What may help: switch to ReLU + He init (activation=relu, init=he_normal)" in out
    assert out.rstrip().endswith("exit status 1")


def test_a_healthy_default_run_exits_0(files, capsys):
    assert main(["diagnose", str(files["healthy"])]) == 0
    assert "No findings" in capsys.readouterr().out


def test_json_output_lists_the_doctors_findings_and_the_exit_status(files, capsys):
    assert main(["diagnose", str(files["vanishing"]), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    expected = diagnose(read_run_file(files["vanishing"]))
    assert [f["id"] for f in report["findings"]] == [f.id for f in expected]
    assert report["exit_status"] == 1 and report["findings"][0]["severity"] == "error"
    assert report["findings"][0]["advice"][0]["changes"] == {"activation": "relu",
                                                            "init": "he_normal"}


def test_a_corrupt_file_exits_2_with_one_line_from_a_real_process(files, tmp_path):
    bad = tmp_path / "run.json"
    bad.write_bytes(files["healthy"].read_bytes()[:5000])   # a run cut off mid-write
    proc = subprocess.run([sys.executable, "-m", "core", "diagnose", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{bad}: not JSON" in proc.stderr


def _run_dict(files) -> dict:
    return json.loads(files["healthy"].read_text())


def _with(files, **changes) -> bytes:
    return json.dumps({**_run_dict(files), **changes}).encode()


@pytest.mark.parametrize("make,words", [
    (lambda f: b"\x89PNG\r\n\x1a\n\0\0", "not UTF-8"),
    (lambda f: b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (lambda f: b"1" * 5000, "not JSON Python can read"),
    (lambda f: b"[1, 2]", "the JSON is a list"),
    (lambda f: json.dumps({"config": {}}).encode(), "lacks the field(s) status"),
    (lambda f: _with(f, status="exploded"), "'status' is 'exploded'; allowed: completed"),
    (lambda f: _with(f, config={**_run_dict(f)["config"], "depth": -3}),
     "config is not a valid Lab config (depth:"),
    (lambda f: _with(f, config={**_run_dict(f)["config"], "\x1b[2J\n" + "x" * 999: 1}),
     "its config is not a valid Lab config ( [2J x"),
    (lambda f: _with(f, layer_names=[]), "'layer_names' must be a non-empty list"),
    (lambda f: _with(f, layers={**_run_dict(f)["layers"], "value": ["x"]}),
     "table 'layers': its columns differ in length (1, "),
    (lambda f: _with(f, layers={**_run_dict(f)["layers"],
                                "value": ["x"] * len(_run_dict(f)["layers"]["value"])}),
     "table 'layers', column 'value' holds a text; it must hold numbers"),
    (lambda f: _with(f, steps=[1, 2]), "table 'steps' is a list"),
    (lambda f: _with(f, layers={c: [] for c in _run_dict(f)["layers"]}),
     "table 'layers' has no records at step 0"),
    (lambda f: _with(f, boundary={}), "table 'boundary' lacks the column(s) epoch, x, y, p"),
    (lambda f: _with(f, layer_names=["hidden1"]),
     "table 'layers' names layer(s) not in 'layer_names': hidden2, hidden3, hidden4"),
    (lambda f: _with(f, divergence={"step": "soon"}), "'divergence' must be null"),
    (lambda f: _with(f, sharpness={"step": [0], "sharpness": ["x"]}),
     "table 'sharpness', column 'sharpness' holds a text; it must hold numbers"),
], ids=["binary", "deep", "huge-int", "list", "missing", "status", "config", "config-key",
        "no-layers", "ragged", "cell-type", "table-type", "no-records", "no-columns", "other-layers",
        "divergence", "sharpness"])
def test_a_bad_or_hostile_file_is_one_clear_message(files, make, words):
    with pytest.raises(RunFileError) as err:
        parse_run_file(make(files))
    text = str(err.value)
    assert text.isprintable() and len(text) <= 400 and words in text, text


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(tmp_path, capsys):
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:        # sparse: no disk space, no time
        f.truncate(MAX_RUN_FILE_BYTES + 1)
    for target in (huge, tmp_path, "/dev/zero", tmp_path / "missing.json"):
        assert main(["diagnose", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(target) in err
    assert main(["diagnose", str(huge)]) == 2
    assert "larger than the 512 MiB a run file may have" in capsys.readouterr().err
    with pytest.raises(RunFileError, match="larger than the 10,000 bytes a run file"):   # a page's own cap
        read_run_file(ROOT / "README.md", max_bytes=10_000)


@pytest.mark.parametrize("damage", ["no-step-0", "unknown-layers", "nan-values", "one-epoch"])
def test_run_shaped_files_with_odd_records_never_raise(files, tmp_path, capsys, damage):
    """A file that passes or nearly passes the shape checks with records no run of ours has:
    one line and status 2, or the doctor reads it; never a traceback."""
    data = _run_dict(files)
    layers, epochs = data["layers"], data["epochs"]
    keep = [s != 0 for s in layers["step"]] if damage == "no-step-0" else [True] * len(
        layers["step"])
    data["layers"] = {c: [v for v, k in zip(col, keep) if k] for c, col in layers.items()}
    if damage == "unknown-layers":
        data["layers"]["layer"] = ["x" + n for n in data["layers"]["layer"]]
    if damage == "nan-values":
        data["layers"]["value"] = [None] * len(data["layers"]["value"])
    if damage == "one-epoch":
        data["epochs"] = {c: [v for v, e in zip(col, epochs["epoch"]) if e == 1]
                          for c, col in epochs.items()}
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    status = main(["diagnose", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert status == (2 if damage in ("no-step-0", "unknown-layers") else 0)
    if status == 2:
        assert err.count("\n") == 1 and out == ""


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["config", "status", "device", "dataset", "layer_names",
                              "n_params", "timing", "divergence", "epochs", "steps", "layers",
                              "histograms", "boundary", "points", "sharpness"]),
       value=_JSON, column=st.booleans())
def test_any_json_in_any_field_is_a_run_or_one_clear_message(field, value, column):
    """A real run with one field (or one column of a table) replaced by arbitrary JSON: read,
    then diagnosed, it gives a run and findings or a RunFileError, nothing else."""
    data = json.loads(_small_run())
    if column and isinstance(data[field], dict) and data[field]:
        data[field][sorted(data[field])[0]] = value
    else:
        data[field] = value
    try:
        result = parse_run_file(json.dumps(data).encode())
    except RunFileError as err:
        assert str(err).isprintable()
        return
    diagnose(result)


@functools.cache
def _small_run() -> str:
    return train(RunConfig(depth=2, width=8, epochs=1)).to_json()


def _watched_file(tmp_path: Path, activation) -> Path:
    """A user's loop, watched: ten layers of `activation` in a plain nn.Sequential with PyTorch's
    default init, a few SGD steps on random data, saved by `WatchedRun.save`."""
    import torch
    from torch import nn

    from core.watch import watch

    torch.manual_seed(0)
    layers = [m for _ in range(10) for m in (nn.Linear(32, 32), activation())]
    model = nn.Sequential(*layers, nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
    with watch(model, optimizer, every=5) as w:
        for step in range(20):
            batch = torch.randint(0, 256, (32,))
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            w.after_backward(loss)
            optimizer.step()
    path = tmp_path / f"watched-{activation.__name__}.json"
    w.result().save(path)
    return path


def test_a_watched_loops_file_is_diagnosed_like_a_lab_run(tmp_path, capsys):
    """`diagnose` reads what `watch(...).result().save()` writes: a 10-layer sigmoid
    nn.Sequential at PyTorch's default init vanishes (exit 1), and the header says what was
    watched."""
    from torch import nn

    assert main(["diagnose", str(_watched_file(tmp_path, nn.Sigmoid))]) == 1
    out = capsys.readouterr().out
    assert "a watched Sequential (sgd, lr 0.05; layers recorded every 5 steps)" in out
    assert "ERROR   Vanishing gradients [vanishing]" in out


def test_a_run_file_of_an_unknown_kind_is_one_clear_message(files):
    data = json.loads(files["healthy"].read_text())
    with pytest.raises(RunFileError, match="'kind' is 'telepathy'; this reader knows"):
        parse_run_file(json.dumps({**data, "kind": "telepathy"}).encode())

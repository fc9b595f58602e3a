"""Command line: `python -m core train …` and `python -m core datasets`.

    python -m core train --dataset digits --depth 10 --activation sigmoid --optimizer sgd --lr 0.1
    python -m core train --depth 3 --epochs 20 --json run.json
    python -m core datasets
    python -m core sweep --x depth=2,4,8,16 --y activation=relu,tanh --epochs 5
    python -m core probe --depth 50 --activation tanh --init orthogonal --json probe.json
    python -m core diagnose run.json            # exit 1 when the doctor finds an error
    python -m core export-tensorboard run.json tb/run
    python -m core classics                     # the Classics page's runs, into the store

Every `RunConfig` field is a kebab-case flag (`--batch-norm/--no-batch-norm`, `--clip-norm 1.0`,
`--clip-norm off`), generated from the fields, so the CLI never lags the config. A bad flag or
value prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from core.cache import check_limits
from core.lab.config import FIELDS, RunConfig
from core.settings import ConfigError, describe, field_kind
from core.tables import status_word
from core.tools.classics_command import add_classics_parser, train_classics
from core.tools.run_file_commands import (add_run_file_parsers, diagnose, export_tensorboard,
                                         list_watched)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump, exit 2
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")  # argv may hold \n


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number") from None
    if not 1 <= value <= 4096:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 4096")
    return value


_positive_int.__name__ = "whole number from 1 to 4096"


def _json_path(text: str) -> Path:
    """Where --json writes: checked before the work starts, not after it is done."""
    try:
        return _writable_file(Path(text), text)
    except OSError as err:   # a name too long for the filesystem, say: stat itself fails
        raise argparse.ArgumentTypeError(f"{text[:60]} cannot be a file here "
                                         f"({err.strerror or err})") from None


def _writable_file(path: Path, text: str) -> Path:
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text[:60]} is a folder; name a file in it")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text[:60]} does not exist")
    if path.exists() and not path.is_file():
        # A device or a pipe (/dev/full, a FIFO): writing there fails or blocks only after
        # the work is done, so only plain files are taken.
        raise argparse.ArgumentTypeError(f"{text[:60]} is not a regular file; name a file")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text[:60]} cannot be written here (permission denied)")
    return path


_json_path.__name__ = "file path"


def _value_type(name: str):
    f = FIELDS[name]

    def convert(text: str):
        try:
            return RunConfig.parse_setting(name, text)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = describe(f)  # argparse names the type in "invalid <type> value"
    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Saturation Lab engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train one configuration and print its summary")
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{f.metadata['help']} Allowed: {describe(f)}. Default: " \
                    f"{RunConfig.format_setting(name, f.default)}."
        if field_kind(f) is bool:
            train.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text.replace("%", "%%"))
        else:
            train.add_argument(flag, dest=name, type=_value_type(name), default=argparse.SUPPRESS,
                               metavar=name.upper(), help=help_text.replace("%", "%%"))
    train.add_argument("--json", type=_json_path, metavar="PATH",
                       help="write the whole result (config, key, device, timing, per-epoch "
                            "history, per-layer records) as JSON")
    train.add_argument("--no-store", action="store_true",
                       help="train even if the run store has this config, and do not store it "
                            "(then with torch's own thread count, not the app's one thread)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("datasets", help="list the datasets, their sizes and where they come from")
    _add_sweep_parser(sub)
    _add_probe_parser(sub)
    _add_bench_parser(sub)
    add_run_file_parsers(sub)
    add_classics_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_limits()
    except ConfigError as err:
        parser.error(str(err))
    try:
        if args.command == "sweep":
            return _sweep(parser, args)
        if args.command == "probe":
            return _probe(parser, args)
        if args.command == "bench":
            return _bench(parser, args)
        if args.command == "diagnose":
            return diagnose(args)
        if args.command == "export-tensorboard":
            return export_tensorboard(args)
        if args.command == "watched":
            return list_watched()
        if args.command == "classics":
            return train_classics(args)
        return _datasets() if args.command == "datasets" else _train(parser, args)
    except BrokenPipeError:  # output piped into `head`: not an error worth a traceback
        sys.stderr.close()
        return 0


def _train(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    values = {n: getattr(args, n) for n in FIELDS if getattr(args, n, None) is not None}
    try:
        cfg = RunConfig(**values)
    except ConfigError as err:
        parser.error(str(err))

    from tqdm import tqdm

    from core.budget import refuse
    from core.lab.runs import get_run, run_estimate
    from core.lab.trainer import train

    bar = tqdm(total=cfg.epochs, unit="epoch", disable=args.quiet, file=sys.stderr,
               desc=f"training {cfg.key()[:8]}")

    def on_epoch(partial) -> None:
        done = int(partial.epochs.epoch.max()) if len(partial.epochs) else 0
        bar.update(done - bar.n)
        if done:
            bar.set_postfix(val_acc=f"{partial.final('val', 'accuracy'):.3f}")

    def unstored():
        refuse(run_estimate(cfg))  # as get_run checks the budgets, outside the store too
        return train(cfg, on_epoch)

    if not args.no_store:
        _train_as_the_app_does()

    result = _with_bar(parser, bar, unstored if args.no_store
                       else lambda: get_run(cfg, on_epoch=on_epoch))
    if result is None:
        return 1
    return _print_and_save(_summary(result), args.json, lambda: result.to_json(indent=1))


def _train_as_the_app_does() -> None:
    """One torch thread, as the app trains (core.cpus.configure_for_server), before results go
    into the run store the app reads: the store key does not hold the thread count, and the
    order of a multi-threaded reduction can change a run's numbers (the same key gave 10.3%
    and 10.9% on 1 and 2 threads in issue 14). `--no-store` keeps torch's own thread count."""
    from core.cpus import configure_for_server

    configure_for_server()


def _attempt(parser: argparse.ArgumentParser, work):
    """`work()`; a bad setting exits 2 and any other failure (data missing, …) prints one line
    and gives None — never a traceback."""
    try:
        return work()
    except ConfigError as err:
        parser.error(str(err))
    except Exception as err:
        print(f"python -m core: error: {err}", file=sys.stderr)
        return None


def _with_bar(parser: argparse.ArgumentParser, bar, work):
    """`_attempt(work)` under a progress bar, closed whatever happens."""
    try:
        return _attempt(parser, work)
    finally:
        bar.close()


def _print_and_save(text: str, path, to_json) -> int:
    """A command's result on the terminal, and `to_json()` in the file --json names, if any.

    The file is written beside its final name and renamed into place, so a disk that fills
    half-way leaves the old file (if any) as it was; a write error is one line and status 1."""
    print(text)
    if path:
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            partial.write_text(to_json())
            os.replace(partial, path)
        except OSError as err:
            partial.unlink(missing_ok=True)
            print(f"python -m core: error: could not write {path}: {err.strerror or err}",
                  file=sys.stderr)
            return 1
        print(f"wrote {path}")
    return 0


def _summary(result) -> str:
    lines = [
        f"run {result.key}  ({'from the run store' if result.from_store else 'trained'})",
        f"settings   {result.config.changed() or 'defaults'}",
        f"status     {status_word(result.status, result.steps_to_target)}"
        + (f": {result.divergence['message']}" if result.divergence else "")
        + (f" at step {result.steps_to_target:,}" if result.steps_to_target is not None else ""),
        f"device     {result.device}   {result.timing['seconds']:.2f} s, "
        f"{result.timing['samples_per_sec']:,.0f} samples/s",
        f"data       {result.dataset['name']}: {result.dataset['source']}",
    ]
    if result.dataset.get("notice"):
        lines.append(f"notice     {result.dataset['notice']}")
    lines.append(f"accuracy   val {result.final('val', 'accuracy'):.4f}   "
                 f"test {result.final('test', 'accuracy'):.4f}")
    for metric, what in (("weight_grad_norm", "‖∇W‖"), ("out_grad_norm", "‖∂L/∂z‖")):
        g = result.at_step(metric, 0)
        lines.append(f"{what} at init, per layer: "
                     + "  ".join(f"{name} {value:.2e}" for name, value in g.items()))
    lines.append(f"depth ratio at init (‖∂L/∂z‖ first/last): {result.depth_ratio(0):.2e}")
    return "\n".join(lines)


def _datasets() -> int:
    from core.data.datasets import describe_datasets

    for d in describe_datasets():
        shape = "×".join(str(s) for s in d["input_shape"])
        sizes = ("train {:>6,}  val {:>5,}  test {:>6,}".format(*d["sizes"]) if d["sizes"]
                 else "not available")
        print(f"{d['name']:<14} {d['kind']:<6} {shape:<8} {d['n_classes']:>2} classes  {sizes}"
              f"  — {d['source']}")
        if d.get("notice"):
            print(f"{'':<15}note: {d['notice']}")
    return 0


# --- bench ----------------------------------------------------------------------------------
def _add_bench_parser(sub) -> None:
    from core.tools.bench import BATCH_SIZES, SECTIONS

    bench = sub.add_parser(
        "bench", help="measure the trainer against a plain PyTorch loop and the hardware",
        description="Print a table of figures measured now on this machine: matmul rate, "
                    "trainer vs an idiomatic PyTorch loop on Fashion-MNIST, the default Lab "
                    "run, the stacked sweep and the app's peak memory. About 3 minutes.")
    bench.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                       metavar="SECTION", help=f"sections to run: {', '.join(SECTIONS)}")
    bench.add_argument("--batch-sizes", nargs="+", type=_positive_int,
                       default=list(BATCH_SIZES),
                       metavar="N", help="batch sizes for the trainer section")
    bench.add_argument("--repeats", type=_positive_int, metavar="N",
                       help="tries per figure (the best is kept); default 2")
    bench.add_argument("--threads", type=_positive_int, metavar="N",
                       help="torch intra-op threads (default: torch's choice for this machine)")
    bench.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    bench.add_argument("--quick", action="store_true",
                       help="small data and one try: checks that it runs, figures mean little")
    bench.add_argument("--json", type=_json_path, metavar="PATH",
                       help="also write the rows as JSON")


def _bench(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import torch

    from core.tools.bench import format_table, machine, rows_json, run_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}", flush=True)
    rows = _attempt(parser, lambda: run_benchmark(
        sections=args.only, quick=args.quick, repeats=args.repeats, batch_sizes=args.batch_sizes,
        device=args.device, say=lambda m: print(f"  … {m}", file=sys.stderr, flush=True)))
    if rows is None:
        return 1
    return _print_and_save(format_table(rows), args.json,
                           lambda: json.dumps(rows_json(rows), indent=1))


# --- sweep ----------------------------------------------------------------------------------
def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One kebab-case flag per RunConfig field (unset flags keep the field's default)."""
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = (f"{f.metadata['help']} Allowed: {describe(f)}. Default: "
                     f"{RunConfig.format_setting(name, f.default)}.").replace("%", "%%")
        if field_kind(f) is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=_value_type(name),
                                default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def _add_sweep_parser(sub) -> None:
    sweep = sub.add_parser(
        "sweep", help="train a grid over two settings and print accuracy, depth ratio and "
                      "saturated or inactive share per cell",
        description="Train every combination of two settings' values (cells of one network "
                    "shape train together as one stacked model) and print the grids. The other "
                    "flags set the base configuration shared by all cells.")
    for axis, example in (("x", "depth=2,4,8,16"), ("y", "activation=relu,tanh")):
        sweep.add_argument(f"--{axis}", required=True, metavar="SETTING=V1,V2,...",
                           help=f"the {'columns' if axis == 'x' else 'rows'}: a setting and its "
                                f"values, e.g. {example}")
    _add_config_flags(sweep)
    sweep.add_argument("--json", type=_json_path, metavar="PATH",
                       help="write the cell table, per-epoch history and timing as JSON")
    sweep.add_argument("--sequential", action="store_true",
                       help="train each cell alone with the full trainer (as the Training Lab "
                            "does) instead of stacking cells of one shape")
    sweep.add_argument("--no-store", action="store_true",
                       help="train every cell even if the run store has it, and store nothing")
    sweep.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                       help="train the stacked groups (or cells) in N local worker processes, "
                            "one torch thread each (default 1: in this process)")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="ray: each group a task on the Ray cluster RAY_ADDRESS names "
                            "(HOST:PORT of its head); needs pip install 'saturation-lab[ray]'")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--best-lr", metavar="LR1,LR2,...",
                       help="train every cell at each of these learning rates (full Lab runs, "
                            "kept in the run store) and print each cell's best, by fewest steps "
                            "to --target-loss, then the lowest final training loss")


def _axis(parser: argparse.ArgumentParser, flag: str, text: str) -> tuple[str, str]:
    name, sep, values = text.partition("=")
    if not sep:
        parser.error(f"{flag}: expected SETTING=V1,V2,... (e.g. depth=2,4,8), got {text!r}")
    return name.strip().replace("-", "_"), values


def _sweep(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from core.lab.sweep import SweepSpec, parse_values
    from core.lab.sweep_engines import make_engine

    values = {n: getattr(args, n) for n in FIELDS if getattr(args, n, None) is not None}
    (x, x_text), (y, y_text) = _axis(parser, "--x", args.x), _axis(parser, "--y", args.y)
    try:
        spec = SweepSpec(RunConfig(**values), x, parse_values(x, x_text),
                         y, parse_values(y, y_text))
        lrs = parse_values("lr", args.best_lr) if args.best_lr is not None else None
        engine = make_engine(args.engine, args.jobs)
    except ConfigError as err:
        parser.error(str(err))
    if lrs is not None:
        if args.jobs != 1 or args.engine != "local":
            parser.error("--best-lr trains its runs one after another in this process: "
                         "drop --jobs and --engine")
        return _lr_search(parser, args, spec, lrs)

    from tqdm import tqdm

    from core.lab.sweep import run_sweep

    if not args.no_store:
        _train_as_the_app_does()
    n_cells = len(spec.x_values) * len(spec.y_values)
    bar = tqdm(total=n_cells, unit="cell", disable=args.quiet, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.1f}/{total} cells [{elapsed}]")

    def on_progress(done: float, total: int, message: str) -> None:
        bar.n = done
        bar.set_description(message[:48], refresh=True)

    result = _with_bar(parser, bar, lambda: run_sweep(
        spec, on_progress=on_progress, batched=not args.sequential, use_store=not args.no_store,
        engine=engine))
    if result is None:
        return 1
    return _print_and_save(_sweep_text(result), args.json, lambda: json.dumps(
        {"spec": spec.to_params(), "timing": result.timing,
         "cells": json.loads(result.table.to_json(orient="records")),
         "epochs": json.loads(result.epochs.to_json(orient="records"))}, indent=1))


def _lr_search(parser: argparse.ArgumentParser, args: argparse.Namespace, spec, lrs) -> int:
    from core import cache
    from core.lab.lr_search import BEST_BY, run_lr_search

    if not args.no_store:
        _train_as_the_app_does()
    store = None if args.no_store else cache.default_store()

    def on_progress(done: int, total: int, message: str) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {message}", file=sys.stderr)
    try:
        search = run_lr_search(spec, lrs, store=store, on_progress=on_progress)
    except ConfigError as err:
        parser.error(str(err))
    table = search.runs[["y", "x", "lr", "status", "steps_to_target", "train_loss",
                         "val_accuracy", "best"]].rename(columns={"y": spec.y, "x": spec.x})
    text = (f"best learning rate per cell ({BEST_BY}); base: "
            f"{spec.base.changed() or 'defaults'}\n{table.to_string(index=False)}")
    return _print_and_save(text, args.json, lambda: search.runs.to_json(orient="records",
                                                                         indent=1))


def _sweep_text(result) -> str:
    import math

    spec, t = result.spec, result.timing
    diverged = result.grid("diverged").astype(bool)
    lines = [f"sweep {spec.y} (rows) × {spec.x} (columns), {t['cells']} cells; base: "
             f"{spec.base.changed() or 'defaults'}"]
    for title, column, fmt in (
            ("validation accuracy, final (* = diverged)", "val_accuracy", "{:.3f}"),
            ("log10 depth ratio, first/last layer ‖∂L/∂z‖ at init (< 0: vanishing, "
             "> 0: exploding)", "depth_ratio", "{:+.2f}"),
            ("saturated (sigmoid, tanh) or inactive (ReLU family) share at the end, mean over "
             "hidden layers", "flat_mean", "{:.2f}")):
        grid = result.grid(column)
        if column == "depth_ratio":
            grid = grid.apply(lambda c: [math.log10(v) if v > 0 else math.nan for v in c])
        cells = [[("—" if not math.isfinite(v) else fmt.format(v))
                  + ("*" if column == "val_accuracy" and diverged.iat[i, j] else "")
                  for j, v in enumerate(row)] for i, row in enumerate(grid.to_numpy(float))]
        width = max(7, *(len(c) for c in grid.columns), *(len(c) for r in cells for c in r))
        label = max(len(spec.y), *(len(r) for r in grid.index))
        lines += ["", title, f"{spec.y:<{label}}  " + "  ".join(
            f"{c:>{width}}" for c in grid.columns) + f"   ← {spec.x}"]
        lines += [f"{r:<{label}}  " + "  ".join(f"{c:>{width}}" for c in row)
                  for r, row in zip(grid.index, cells)]
    groups = t["groups"]
    alone = t["cells_trained"] - t["cells_batched"]
    lines += ["", f"{t['cells']} cells: {t['cells_trained']} trained "
              f"({t['cells_batched']} stacked in {len(groups)} group(s) {groups}, {alone} alone), "
              f"{t['cells_from_store']} from the run store; {t['seconds']:.2f} s"]
    return "\n".join(lines)


# --- probe ----------------------------------------------------------------------------------
def _add_probe_parser(sub) -> None:
    probe = sub.add_parser(
        "probe", help="analyse the network at initialisation: per-layer activation std and "
                      "gradient norms beside mean-field theory (q*, χ₁), Jacobian spectrum",
        description="Build the network the flags describe (as training would), feed it real "
                    "inputs and print, per hidden layer, the measured and mean-field values; "
                    "then q*, χ₁, the depth scale and phase, and the singular values of the "
                    "hidden stack's input–output Jacobian. Flags that only matter in training "
                    "(optimiser, epochs, dropout, …) are accepted and ignored. No training.")
    _add_config_flags(probe)
    probe.add_argument("--inputs", type=int, default=256, metavar="N",
                       help="training examples fed through the network (default 256)")
    probe.add_argument("--jacobian", type=int, default=None, metavar="N",
                       help="inputs whose Jacobian spectrum is computed (0: none; default: one "
                            "where depth × width³ keeps it to about a second)")
    probe.add_argument("--json", type=_json_path, metavar="PATH",
                       help="write the whole analysis (summary, mean-field facts, per-layer "
                            "table, singular values) as JSON")


def _probe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from core.init.probe import probe, probe_text

    values = {n: getattr(args, n) for n in FIELDS if getattr(args, n, None) is not None}
    if args.inputs < 2 or (args.jacobian or 0) < 0:
        parser.error("--inputs must be at least 2 and --jacobian at least 0")
    result = _attempt(parser, lambda: probe(RunConfig(**values), n_inputs=args.inputs,
                                            n_jacobian=args.jacobian))
    if result is None:
        return 1
    return _print_and_save(probe_text(result), args.json, lambda: result.to_json(indent=1))

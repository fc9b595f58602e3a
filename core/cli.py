"""Command line: `python -m core train …` and `python -m core datasets`.

    python -m core train --dataset digits --depth 10 --activation sigmoid --optimizer sgd --lr 0.1
    python -m core train --depth 3 --epochs 20 --json run.json
    python -m core datasets

Every `RunConfig` field is a kebab-case flag (`--batch-norm/--no-batch-norm`, `--clip-norm 1.0`,
`--clip-norm off`), generated from the fields, so the CLI never lags the config. A bad flag or
value prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn, Sequence

from core.config import FIELDS, ConfigError, RunConfig, describe, field_kind, format_value, \
    parse_field


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def _value_type(name: str):
    f = FIELDS[name]

    def convert(text: str):
        try:
            return parse_field(name, text)
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
                    f"{format_value(f.default) or 'off'}."
        if field_kind(f) is bool:
            train.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text.replace("%", "%%"))
        else:
            train.add_argument(flag, dest=name, type=_value_type(name), default=argparse.SUPPRESS,
                               metavar=name.upper(), help=help_text.replace("%", "%%"))
    train.add_argument("--json", type=Path, metavar="PATH",
                       help="write the whole result (config, key, device, timing, per-epoch "
                            "history, per-layer records) as JSON")
    train.add_argument("--no-store", action="store_true",
                       help="train even if the run store has this config, and do not store it")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    sub.add_parser("datasets", help="list the datasets, their sizes and where they come from")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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

    from core.runs import get_run
    from core.trainer import train

    bar = tqdm(total=cfg.epochs, unit="epoch", disable=args.quiet, file=sys.stderr,
               desc=f"training {cfg.key()[:8]}")

    def on_epoch(partial) -> None:
        done = int(partial.epochs.epoch.max()) if len(partial.epochs) else 0
        bar.update(done - bar.n)
        if done:
            bar.set_postfix(val_acc=f"{partial.final('val', 'accuracy'):.3f}")

    try:
        result = train(cfg, on_epoch) if args.no_store else get_run(cfg, on_epoch=on_epoch)
    except ConfigError as err:
        bar.close()
        parser.error(str(err))
    except Exception as err:  # data missing etc.: a clear line, not a traceback
        bar.close()
        print(f"python -m core: error: {err}", file=sys.stderr)
        return 1
    bar.close()
    print(_summary(result))
    if args.json:
        args.json.write_text(result.to_json(indent=1))
        print(f"wrote {args.json}")
    return 0


def _summary(result) -> str:
    lines = [
        f"run {result.key}  ({'from the run store' if result.from_store else 'trained'})",
        f"settings   {result.config.changed() or 'defaults'}",
        f"status     {result.status}" + (f": {result.divergence['message']}"
                                         if result.divergence else ""),
        f"device     {result.device}   {result.timing['seconds']:.2f} s, "
        f"{result.timing['samples_per_sec']:,.0f} samples/s",
        f"data       {result.dataset['name']}: {result.dataset['source']}",
    ]
    if result.dataset.get("notice"):
        lines.append(f"notice     {result.dataset['notice']}")
    lines.append(f"accuracy   val {result.final('val', 'accuracy'):.4f}   "
                 f"test {result.final('test', 'accuracy'):.4f}")
    g = result.at_step("weight_grad_norm", 0)
    lines.append("grad norm at init, per layer: "
                 + "  ".join(f"{name} {value:.2e}" for name, value in g.items()))
    return "\n".join(lines)


def _datasets() -> int:
    from core.datasets import describe_datasets

    for d in describe_datasets():
        shape = "×".join(str(s) for s in d["input_shape"])
        sizes = ("train {:>6,}  val {:>5,}  test {:>6,}".format(*d["sizes"]) if d["sizes"]
                 else "not available")
        print(f"{d['name']:<14} {d['kind']:<6} {shape:<8} {d['n_classes']:>2} classes  {sizes}"
              f"  — {d['source']}")
        if d.get("notice"):
            print(f"{'':<15}note: {d['notice']}")
    return 0

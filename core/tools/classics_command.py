"""`python -m core classics`: train every classic's runs into the run store, so the Classics
page serves them at once, printing progress and each classic's verdict.

    python -m core classics                   # all of them
    python -m core classics --only he2015     # one
"""

from __future__ import annotations

import sys


def add_classics_parser(sub) -> None:
    # No choices= here: listing the classics imports torch, and every command builds this parser.
    classics = sub.add_parser(
        "classics", help="train every classic's runs into the run store and print each verdict",
        description="Train the runs of the Classics page (those not yet in the run store) with "
                    "one torch thread, as the app does, then print each classic's verdict.")
    classics.add_argument("--only", action="append", metavar="ID",
                          help="train only this classic, e.g. he2015 (may repeat)")
    classics.add_argument("--quiet", action="store_true", help="no progress bars")


def train_classics(args) -> int:
    """Exit status 0 when every classic's runs were had (whatever their verdicts), 1 when one
    could not be trained, 2 for an unknown --only."""
    from tqdm import tqdm

    from core.classics.catalogue import CLASSICS
    from core.cpus import configure_for_server
    from core.classics.record import get_classic_run, progress

    unknown = sorted(set(args.only or ()) - set(CLASSICS))
    if unknown:
        print(f"python -m core classics: error: --only {unknown[0]!r} is not a classic; choose "
              f"one of: {', '.join(CLASSICS)}", file=sys.stderr)
        return 2
    configure_for_server()   # one thread, as the app trains: the store key holds no thread count
    status = 0
    for classic in CLASSICS.values():
        if args.only and classic.id not in args.only:
            continue
        print(f"{classic.title} (about {classic.seconds():.0f} s to train)")
        runs = {}
        for name, cfg in classic.configs(0).items():
            share = progress(cfg)   # a sweep: its share done, in percent
            bar = tqdm(total=100 if share else cfg.epochs, unit="%" if share else "epoch",
                       disable=args.quiet, file=sys.stderr, desc=f"  {name}")

            def on_epoch(partial, bar=bar, share=share) -> None:
                if share:
                    done = round(100 * share(partial)[0])
                else:
                    done = int(partial.epochs.epoch.max()) if len(partial.epochs) else 0
                bar.update(done - bar.n)
            try:
                runs[name] = get_classic_run(cfg, on_epoch=on_epoch)
            except Exception as err:   # over the budget, data missing: one line, go on
                print(f"  {name}: could not train: {err}", file=sys.stderr)
            finally:
                bar.close()
        if len(runs) < len(classic.configs(0)):
            status = 1
            continue
        verdict = classic.verdict(runs)
        print(f"  {verdict.mark} {verdict.sentence}")
    return status

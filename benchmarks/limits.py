"""What a request costs a shared server, and what the limits do with it (README: "Limits on a
shared server").

    PYTHONPATH=. SATLAB_OFFLINE=1 python benchmarks/limits.py

Each request runs as a page would run it (the same core calls, the budget check first, one torch
thread as the app trains) in a fresh process with an empty run store, so its peak memory (VmHWM,
the whole process: Python, torch and the data included) and its CPU seconds are its own. Prints
one Markdown table row per request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

# (what, how the page calls core, the link a user would open)
REQUESTS = [
    ("Lab default (digits MLP)", "get_run(RunConfig())", "lab"),
    ("Vanishing lesson", "get_run(PRESETS['vanishing'].config)", "lab?preset"),
    ("Fashion-MNIST MLP, 1 epoch", "get_run(RunConfig(dataset='fashion-mnist', epochs=1))",
     "lab?dataset=fashion-mnist&epochs=1"),
    ("Wide CNN on Fashion-MNIST (issue 14 #1)",
     "get_run(RunConfig(model='cnn', depth=1, width=128, batch_size=2048, max_train=2000, "
     "epochs=1, dataset='fashion-mnist'))",
     "lab?model=cnn&depth=1&width=128&batch_size=2048&max_train=2000&epochs=1&dataset=fashion-mnist"),
    ("100 layers of 1,024 (#4)",
     "get_run(RunConfig(depth=100, width=1024, max_train=100, epochs=1))",
     "lab?depth=100&width=1024&max_train=100&epochs=1"),
    ("Every step recorded, 100 layers (#4)",
     "get_run(RunConfig(depth=100, width=2, record_every=1, batch_size=8, epochs=17))",
     "lab?depth=100&width=2&record_every=1&batch_size=8&epochs=17"),
    ("64-cell sweep at width 1,024 (#3)",
     "run_sweep(SweepSpec(RunConfig(depth=4, width=1024, max_train=100, epochs=1), x='seed', "
     "x_values=tuple(range(8)), y='lr', y_values=tuple(0.001 * k for k in range(1, 9))))",
     "sweep?x=seed&xv=0,…,7&y=lr&yv=0.001,…,0.008&depth=4&width=1024&max_train=100&epochs=1"),
    ("16-cell sweep (digits)",
     "run_sweep(SweepSpec(RunConfig(epochs=2), x='lr', x_values=(1e-3, 1e-2), y='depth', "
     "y_values=(2, 4, 6, 8)))", "sweep"),
    ("Initialization probe, 100 × 1,024, orthogonal (#4)",
     "probe(RunConfig(depth=100, width=1024, init='orthogonal'))",
     "initialization?depth=100&width=1024&init=orthogonal"),
    ("LSTM over 196 chunks, batch 1,024 (#4)",
     "get_recurrent_run(RecurrentConfig(dataset='mnist', sequence='chunks', cell='lstm', chunk=4, "
     "batch_size=1024, max_train=None, epochs=1))",
     "recurrent?dataset=mnist&sequence=chunks&cell=lstm&chunk=4&batch_size=1024&max_train=all"),
]

CHILD = r"""
import json, os, re, resource, sys
import torch
from core.cpus import configure_for_server
configure_for_server()
from core.init.probe import probe
from core.lab.config import RunConfig
from core.lab.presets import PRESETS
from core.lab.runs import get_run
from core.lab.sweep import SweepSpec, run_sweep
from core.recurrent.config import RecurrentConfig
from core.recurrent.trainer import get_recurrent_run
from core.settings import ConfigError

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

before = resource.getrusage(resource.RUSAGE_SELF)
start_peak = peak()
try:
    eval(sys.argv[1])
    outcome = "trained"
except ConfigError as err:   # "… needs about 7.7 GB of memory at its peak, over …; lower …"
    need = re.search(r"needs? about ([^,]+?) (?:at its peak|together)?,? over the limit", str(err))
    outcome = "refused: needs " + need.group(1) if need else "refused: " + str(err)[:80]
used = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peak": peak(), "base": start_peak, "outcome": outcome,
                  "cpu": used.ru_utime + used.ru_stime - before.ru_utime - before.ru_stime}))
"""


def measure(call: str) -> dict:
    env = {**os.environ, "SATLAB_STORE": os.path.join(tempfile.mkdtemp(), "runs.sqlite3")}
    out = subprocess.run([sys.executable, "-c", CHILD, call], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print("| Request | Outcome | Peak memory of the process | CPU seconds |")
    print("|---|---|---|---|")
    for what, call, _ in REQUESTS:
        m = measure(call)
        print(f"| {what} | {m['outcome']} | {m['peak']:,.0f} MB (at start {m['base']:,.0f} MB) "
              f"| {m['cpu']:.1f} |", flush=True)


if __name__ == "__main__":
    main()

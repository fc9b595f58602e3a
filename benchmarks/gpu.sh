#!/usr/bin/env bash
# GPU figures for the README (issue 19 §2): run from a fresh checkout on a CUDA machine.
#
#     bash benchmarks/gpu.sh                    # the whole table (sized for < 5 minutes)
#     bash benchmarks/gpu.sh --device cpu --quick
#
# It needs torch, numpy, pandas and scikit-learn (core's training path; no Streamlit or Altair).
# Where one is missing and PyPI can be reached, it installs the project (`pip install -e .`;
# torch's range keeps a CUDA build already there); offline it says what is missing and stops.
# Offline, Fashion-MNIST is read from Debian's package or $SATLAB_DATA_DIR/fashion-mnist/ (copy
# the four idx .gz files there), else the full MNIST if cached, else the epoch runs on random
# images of that shape (the table's header says which).
# PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
online() { "$PY" -c 'import socket; socket.create_connection(("pypi.org", 443), 3)' 2>/dev/null; }
needs='import torch, numpy, pandas, sklearn'
if ! "$PY" -c "$needs" 2>/dev/null; then
    if online; then
        "$PY" -m pip install -q -e .
    else
        echo "gpu.sh: $PY lacks one of torch, numpy, pandas, scikit-learn and PyPI is out of" \
             "reach; install them (or carry their wheels) first." >&2
        "$PY" -c "$needs"
        exit 1
    fi
fi
online || export SATLAB_OFFLINE=1    # no download attempts (and their timeouts) offline
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu.py "$@"

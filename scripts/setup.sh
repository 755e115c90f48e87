#!/usr/bin/env bash
# Creates .venv (if missing) and installs the node with its test extras.
# torch==2.13.0 goes in first so that a CPU build is used where no CUDA build is present;
# pyproject.toml declares torch>=2.4, which a machine's own CUDA build also satisfies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c 'import torch' 2>/dev/null; then
  python -m pip install -q torch==2.13.0
fi
python -m pip install -q -e '.[test]'

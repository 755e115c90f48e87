#!/usr/bin/env bash
# Creates .venv (if missing) and installs the node with its test extras.
# torch==2.13.0 goes in first so that a CPU build is used where no CUDA build is present;
# pyproject.toml declares torch>=2.4, which a machine's own CUDA build also satisfies.
#
# Quiet and fast when nothing changed: the last successful install is recorded in
# .venv/.pouw-setup-stamp (a hash of pyproject.toml, this script and the Python version);
# while it matches and the venv still works, nothing is installed. pip's own output goes
# to .venv/setup.log and is shown only when an install fails. POUW_SETUP_FORCE=1 reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=.venv/.pouw-setup-stamp
LOG=.venv/setup.log

want=$( { cat pyproject.toml scripts/setup.sh; "$PY" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)
if [ -z "${POUW_SETUP_FORCE:-}" ] && [ -x .venv/bin/python ] && [ -x .venv/bin/pouw-node ] \
    && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0  # up to date
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
rm -f "$STAMP"
: > "$LOG"
quiet() {  # run a pip command with its output in the log; print the log if it fails
  if ! "$@" >>"$LOG" 2>&1; then
    echo "setup: failed: $*" >&2
    grep -v "^WARNING: Location '.*' is ignored" "$LOG" | tail -40 >&2
    exit 1
  fi
}
echo "setup: installing into .venv (pyproject.toml or the setup changed; output in $LOG)" >&2
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet python -m pip install -q --upgrade pip
if ! python -c 'import torch' 2>/dev/null; then
  quiet python -m pip install -q torch==2.13.0
fi
quiet env PYTHONWARNINGS=ignore python -m pip install -q -e '.[test]'
echo "$want" > "$STAMP"
echo "setup: done" >&2

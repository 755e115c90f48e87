#!/usr/bin/env bash
# Sets everything up and starts a local devnet: 4 nodes on 127.0.0.1, 1 of them mining.
# Extra arguments go to `pouw-devnet up` (e.g. --nodes 3 --miners 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
pouw-devnet up --nodes 4 --miners 1 "$@"
echo
echo "Next: . .venv/bin/activate && pouw-devnet status    (pouw-devnet down to stop)"

#!/usr/bin/env bash
# Runs a local development node: the no-proof dev genesis (chain id 1337), a block
# whenever a transaction arrives (automine), JSON-RPC on http://127.0.0.1:8545.
# Funded accounts: the first five keys of the mnemonic "test test ... junk" (see
# genesis/dev.json). Data lives in ./datadir; extra arguments go to `pouw-node run`
# (e.g. --rpc-port 8546). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
DATADIR=${DATADIR:-./datadir}
if [ ! -f "$DATADIR/genesis.json" ]; then
  pouw-node init --datadir "$DATADIR" --genesis dev
fi
exec pouw-node run --datadir "$DATADIR" --automine "$@"

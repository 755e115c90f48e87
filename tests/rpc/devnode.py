"""Development nodes in their own processes (ours or anvil) for the RPC tests and the
web3.py module-test suite (tests/rpc/web3_suite/): the development kit's
``devnet/kit/processes.py``, which bench/bench_rpc.py drives the same way.

``dev_genesis`` here is ``genesis/dev.json`` as a dict (``devnet.kit.genesis.dev_genesis_dict``).
"""
from __future__ import annotations

from devnet.kit.genesis import dev_genesis_dict as dev_genesis
from devnet.kit.processes import DevNode, find_anvil, start_anvil, start_pouw

__all__ = ["DevNode", "dev_genesis", "find_anvil", "start_anvil", "start_pouw"]

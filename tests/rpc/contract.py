"""The RPC tests' contract: the development kit's hand-assembled storage contract
(``devnet/kit/contract.py``), which bench/bench_rpc.py deploys too."""
from __future__ import annotations

from devnet.kit.contract import INIT, REVERT_REASON, RUNTIME, SET_TOPIC, encode_uint

__all__ = ["INIT", "REVERT_REASON", "RUNTIME", "SET_TOPIC", "encode_uint"]

"""Transaction and process helpers shared by the RPC tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from tests.rpc.conftest import CHAIN_ID

GWEI = 10**9


def signed(key: Any, nonce: int, *, to: str | None = "0x" + "11" * 20, value: int = 1, data: bytes = b"",
           gas: int = 21_000, max_fee: int = 10 * GWEI, tip: int = GWEI) -> bytes:
    """A signed EIP-1559 transaction's raw bytes."""
    tx: dict[str, Any] = {
        "nonce": nonce, "gas": gas, "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
        "value": value, "data": data, "chainId": CHAIN_ID, "type": 2,
    }
    if to is not None:
        tx["to"] = to_checksum_address(to)
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def hexed(raw: bytes) -> str:
    return "0x" + raw.hex()


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")

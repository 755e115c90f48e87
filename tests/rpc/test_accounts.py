"""The development accounts (rpc/accounts.py): none by default; with them, eth_accounts,
eth_sendTransaction (fields filled, signed, pooled, mined), eth_signTransaction, eth_sign
and EIP-712 signatures that recover to the account; unknown accounts and bad input
refused; the node refuses --dev-accounts off a development genesis."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data

from chain.transactions import decode_raw_transaction
from genesis.devkeys import DEV_KEYS_HEX
from rpc.accounts import DevAccounts
from rpc.backend import ChainBackend
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, POOR, Rpc

TYPED = {
    "types": {
        "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"}],
        "Mail": [{"name": "to", "type": "address"}, {"name": "contents", "type": "string"}],
    },
    "primaryType": "Mail",
    "domain": {"name": "pouw", "chainId": 1337},
    "message": {"to": ACCOUNT2.address, "contents": "hello"},
}


@pytest.mark.asyncio
async def test_without_dev_accounts_the_node_signs_nothing(rpc: Rpc) -> None:
    assert await rpc.result("eth_accounts") == []
    for method, params in [
        ("eth_sendTransaction", [{"from": ACCOUNT.address, "to": ACCOUNT2.address, "value": "0x1"}]),
        ("eth_signTransaction", [{"from": ACCOUNT.address, "to": ACCOUNT2.address}]),
        ("eth_sign", [ACCOUNT.address, "0x1234"]),
        ("eth_signTypedData_v4", [ACCOUNT.address, TYPED]),
    ]:
        error = await rpc.error(method, *params)
        assert error["message"] == "unknown account", (method, error)


@pytest.mark.asyncio
async def test_dev_accounts_sign_and_send(rpc: Rpc, backend: ChainBackend, automine: Any) -> None:
    backend.accounts = DevAccounts(DEV_KEYS_HEX)
    listed = await rpc.result("eth_accounts")
    assert listed[:2] == [ACCOUNT.address, ACCOUNT2.address] and len(listed) == 5

    tx_hash = await rpc.result("eth_sendTransaction", {"from": ACCOUNT.address, "to": ACCOUNT2.address,
                                                       "value": hex(10**18)})
    receipt = await _mined(rpc, tx_hash)
    assert receipt["status"] == "0x1" and receipt["from"] == ACCOUNT.address.lower()
    tx = await rpc.result("eth_getTransactionByHash", tx_hash)
    assert tx["type"] == "0x2" and tx["chainId"] == "0x539" and int(tx["gas"], 16) == 21_000 and tx["nonce"] == "0x0"

    legacy = await rpc.result("eth_sendTransaction", {"from": ACCOUNT.address, "to": ACCOUNT2.address,
                                                      "gasPrice": hex(5 * 10**9), "gas": "0x5208"})
    await _mined(rpc, legacy)
    assert (await rpc.result("eth_getTransactionByHash", legacy))["type"] == "0x0"

    signed = await rpc.result("eth_signTransaction", {"from": ACCOUNT2.address, "to": ACCOUNT.address, "value": "0x2"})
    raw = bytes.fromhex(signed["raw"][2:])
    decoded = decode_raw_transaction(raw, max_size=len(raw))
    assert decoded.sender == bytes.fromhex(ACCOUNT2.address[2:]) and signed["tx"]["hash"] == "0x" + decoded.hash.hex()

    signature = await rpc.result("eth_sign", ACCOUNT.address, "0xdeadbeef")
    assert Account.recover_message(encode_defunct(primitive=b"\xde\xad\xbe\xef"),
                                   signature=bytes.fromhex(signature[2:])) == ACCOUNT.address
    typed = await rpc.result("eth_signTypedData_v4", ACCOUNT2.address, TYPED)
    assert Account.recover_message(encode_typed_data(full_message=TYPED),
                                   signature=bytes.fromhex(typed[2:])) == ACCOUNT2.address


async def _mined(rpc: Rpc, tx_hash: str) -> Any:
    for _ in range(250):
        receipt = await rpc.result("eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        await asyncio.sleep(0.02)
    raise AssertionError(f"{tx_hash} not mined")


@pytest.mark.asyncio
async def test_invalid_dev_account_requests_are_refused(rpc: Rpc, backend: ChainBackend) -> None:
    backend.accounts = DevAccounts(DEV_KEYS_HEX)
    assert (await rpc.error("eth_sendTransaction", {"from": POOR.address, "to": ACCOUNT.address}))["message"] == \
        "unknown account"
    assert (await rpc.error("eth_sendTransaction", {"to": ACCOUNT.address}))["code"] == -32602
    assert (await rpc.error("eth_sendTransaction", "0x12"))["code"] == -32602
    assert (await rpc.error("eth_signTypedData_v4", ACCOUNT.address, {"types": 1}))["code"] == -32602
    too_much = await rpc.error("eth_sendTransaction", {"from": ACCOUNT.address, "to": ACCOUNT2.address,
                                                       "value": hex(10**30)})
    assert "insufficient funds" in too_much["message"]
    assert await rpc.result("eth_getTransactionCount", ACCOUNT.address, "pending") == "0x0", "nothing sent"


def test_dev_accounts_are_refused_off_a_development_genesis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import main

    datadir = tmp_path / "node"
    assert main(["init", "--datadir", str(datadir)]) == 0
    capsys.readouterr()
    assert main(["run", "--datadir", str(datadir), "--dev-accounts", "--no-p2p", "--no-rpc"]) == 1
    err = capsys.readouterr().err
    assert "--dev-accounts needs a development genesis" in err and "public" in err

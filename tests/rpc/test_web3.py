"""web3.py 8, unmodified, against a real listening server: HTTP (sync) and WebSocket (async)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from web3 import AsyncWeb3, Web3
from web3.exceptions import ContractLogicError
from web3.providers.persistent import WebSocketProvider

from rpc.automine import Automine
from rpc.backend import ChainBackend
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, CHAIN_ID, FUNDS
from tests.rpc.contract import INIT, encode_uint

SET_EVENT_ABI = [
    {"type": "event", "name": "Set", "anonymous": False, "inputs": [{"name": "value", "type": "uint256", "indexed": False}]}
]


def send(w3: Web3, **fields: Any) -> Any:
    """Fill, sign (locally: the node holds no keys), send, and wait for the receipt."""
    tx: dict[str, Any] = {
        "from": ACCOUNT.address,
        "nonce": w3.eth.get_transaction_count(ACCOUNT.address, "pending"),
        "chainId": w3.eth.chain_id,
        "maxPriorityFeePerGas": w3.eth.max_priority_fee,
        "value": 0,
        **fields,
    }
    tx["maxFeePerGas"] = 2 * w3.eth.get_block("latest")["baseFeePerGas"] + tx["maxPriorityFeePerGas"]
    tx.setdefault("gas", w3.eth.estimate_gas(tx))
    signed = ACCOUNT.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=20, poll_latency=0.02)


def wait_entries(flt: Any, timeout: float = 10) -> list[Any]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        entries = flt.get_new_entries()
        if entries:
            return entries
        time.sleep(0.02)
    raise AssertionError("filter saw nothing")


def test_web3_http_end_to_end(live_url: str, automine: Automine) -> None:
    w3 = Web3(Web3.HTTPProvider(live_url))
    assert w3.is_connected()
    assert w3.eth.chain_id == CHAIN_ID
    assert w3.eth.get_balance(ACCOUNT.address) == FUNDS
    assert w3.eth.accounts == []

    # a signed transfer
    receipt = send(w3, to=ACCOUNT2.address, value=10**18)
    assert receipt.status == 1 and receipt.gasUsed == 21_000
    assert w3.eth.get_balance(ACCOUNT2.address) == FUNDS + 10**18
    block = w3.eth.get_block(receipt.blockNumber, full_transactions=True)
    assert block.transactions[0]["hash"] == receipt.transactionHash

    # deploy and call the test contract
    receipt = send(w3, data=INIT)
    address = receipt.contractAddress
    assert address and w3.eth.get_code(address) != b""
    assert w3.eth.call({"to": address}) == encode_uint(0)

    # events: receipt decoding, a log filter, a block filter, get_logs
    contract = w3.eth.contract(address=address, abi=SET_EVENT_ABI)
    log_filter = w3.eth.filter({"address": address})
    block_filter = w3.eth.filter("latest")
    receipt = send(w3, to=address, data=encode_uint(42))
    assert contract.events.Set().process_receipt(receipt)[0].args.value == 42
    assert w3.eth.call({"to": address}) == encode_uint(42)
    assert wait_entries(log_filter)[0]["transactionHash"] == receipt.transactionHash
    assert receipt.blockHash in wait_entries(block_filter)
    logs = w3.eth.get_logs({"fromBlock": 0, "address": address})
    assert [contract.events.Set().process_log(log).args.value for log in logs] == [42]
    assert w3.eth.uninstall_filter(log_filter.filter_id)

    # a revert surfaces as ContractLogicError with the reason and data
    with pytest.raises(ContractLogicError) as caught:
        w3.eth.call({"to": address, "data": encode_uint(0)})
    assert "zero" in str(caught.value)
    assert str(caught.value.data).startswith("0x08c379a0")

    # fee estimation
    assert w3.eth.gas_price > 0
    history = w3.eth.fee_history(3, "latest", [25, 75])
    assert len(history["baseFeePerGas"]) == 4 and len(history["reward"]) == 3
    assert w3.eth.estimate_gas({"from": ACCOUNT.address, "to": address, "data": encode_uint(7)}) > 21_000


@pytest.mark.asyncio
async def test_web3_websocket_subscriptions(live_server: str, backend: ChainBackend) -> None:
    miner = Automine(backend)
    loop = asyncio.get_running_loop()
    async with AsyncWeb3(WebSocketProvider(live_server.replace("http://", "ws://"))) as w3:
        assert await w3.eth.chain_id == CHAIN_ID
        heads = await w3.eth.subscribe("newHeads")
        pending = await w3.eth.subscribe("newPendingTransactions")
        signed = ACCOUNT.sign_transaction({
            "to": ACCOUNT2.address, "value": 1, "nonce": 0, "gas": 21_000, "chainId": CHAIN_ID,
            "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9,
        })
        tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        await asyncio.sleep(0.05)
        await loop.run_in_executor(None, miner.mine_now)
        seen: dict[Any, Any] = {}

        async def collect() -> None:
            async for message in w3.socket.process_subscriptions():
                seen.setdefault(message["subscription"], message["result"])
                if heads in seen and pending in seen:
                    return

        await asyncio.wait_for(collect(), 10)
        number = seen[heads]["number"]
        assert (int(number, 16) if isinstance(number, str) else number) == 1
        pending_hash = seen[pending]
        pending_hash = Web3.to_bytes(hexstr=pending_hash) if isinstance(pending_hash, str) else bytes(pending_hash)
        assert pending_hash == bytes(tx_hash)
        assert await w3.eth.unsubscribe(heads)
        receipt = await w3.eth.get_transaction_receipt(tx_hash)
        assert receipt.status == 1


FIXTURE = Path(__file__).resolve().parents[1] / "chain" / "fixtures" / "modern.json"


@pytest.mark.skipif(not FIXTURE.exists(), reason="Solidity fixture (tests/chain/fixtures/modern.json) absent")
def test_web3_solidity_contract(live_url: str, automine: Automine) -> None:
    """The chain tests' solc-compiled contract, driven through web3's contract API."""
    compiled = json.loads(FIXTURE.read_text())
    w3 = Web3(Web3.HTTPProvider(live_url))
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    receipt = send(w3, data=factory.constructor().build_transaction({"from": ACCOUNT.address, "gas": 2_000_000})["data"])
    contract = w3.eth.contract(address=receipt.contractAddress, abi=compiled["abi"])
    assert contract.functions.stored().call() == 0

    mine = contract.events.Stored.create_filter(from_block="latest", argument_filters={"who": ACCOUNT.address})
    data = contract.functions.store(5, b"hi").build_transaction({"from": ACCOUNT.address, "gas": 500_000})["data"]
    receipt = send(w3, to=contract.address, data=data)
    event = contract.events.Stored().process_receipt(receipt)[0]
    assert (event.args.who, event.args.value, event.args.data) == (ACCOUNT.address, 5, b"hihi")
    assert contract.functions.stored().call() == 5
    assert contract.functions.lastData().call() == b"hihi"
    assert contract.functions.transientRead().call() == 0
    assert contract.functions.leadingZeros(1).call() == 255
    assert [e.args.value for e in wait_entries(mine)] == [5]
    # topic filtering on an indexed argument, through eth_getLogs
    assert len(contract.events.Stored.get_logs(from_block=0, argument_filters={"value": 5})) == 1
    assert contract.events.Stored.get_logs(from_block=0, argument_filters={"value": 6}) == []

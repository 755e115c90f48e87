"""JSON-RPC machinery and eth_ methods through aiohttp's test client.

Each result is validated against the execution-apis schema (when the reference is present).
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from eth_account import Account
from eth_utils import keccak

from rpc.automine import Automine
from rpc.backend import ChainBackend
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, CHAIN_ID, FUNDS, POOR, Rpc
from tests.rpc.contract import INIT, SET_TOPIC, encode_uint
from tests.rpc.helpers import GWEI, hexed, signed

pytestmark = pytest.mark.asyncio


async def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


async def mined_receipt(rpc: Rpc, tx_hash: str) -> dict[str, Any]:
    async def receipt() -> Any:
        return await rpc.result("eth_getTransactionReceipt", tx_hash)

    return await wait_for(receipt)


async def deploy(rpc: Rpc, nonce: int = 0) -> str:
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, nonce, to=None, value=0, data=INIT, gas=200_000)))
    receipt = await mined_receipt(rpc, tx_hash)
    assert receipt["status"] == "0x1"
    return receipt["contractAddress"]


# -- node and chain reads ------------------------------------------------------

async def test_node_info(rpc: Rpc) -> None:
    assert await rpc.result("eth_chainId") == hex(CHAIN_ID)
    assert await rpc.result("net_version") == str(CHAIN_ID)
    assert await rpc.result("net_listening") is True
    assert await rpc.result("net_peerCount") == "0x0"
    assert await rpc.result("eth_syncing") is False
    assert await rpc.result("eth_accounts") == []
    assert await rpc.result("eth_blockNumber") == "0x0"
    assert await rpc.result("eth_mining") is False
    assert await rpc.result("eth_hashrate") == "0x0"
    assert (await rpc.result("web3_clientVersion")).startswith("pouw-node/")
    assert await rpc.result("web3_sha3", "0x68656c6c6f") == "0x" + keccak(b"hello").hex()


async def test_balances_and_state(rpc: Rpc) -> None:
    assert await rpc.result("eth_getBalance", ACCOUNT.address, "latest") == hex(FUNDS)
    assert await rpc.result("eth_getBalance", POOR.address) == "0x0"
    assert await rpc.result("eth_getTransactionCount", ACCOUNT.address, "latest") == "0x0"
    assert await rpc.result("eth_getCode", ACCOUNT.address, "latest") == "0x"
    assert await rpc.result("eth_getStorageAt", ACCOUNT.address, "0x0", "latest") == "0x" + "00" * 32
    genesis = await rpc.result("eth_getBlockByNumber", "earliest", False)
    by_hash = {"blockHash": genesis["hash"], "requireCanonical": True}
    assert await rpc.result("eth_getBalance", ACCOUNT.address, by_hash) == hex(FUNDS)
    assert await rpc.result("eth_getBalance", ACCOUNT.address, "0x0") == hex(FUNDS)
    error = await rpc.error("eth_getBalance", ACCOUNT.address, "0x99")
    assert error["code"] == -32000 and error["message"] == "header not found"


async def test_blocks(rpc: Rpc, backend: ChainBackend) -> None:
    Automine(backend).mine_now()
    for tag in ("latest", "safe", "finalized", "0x1"):
        block = await rpc.result("eth_getBlockByNumber", tag, True)
        assert block["number"] == "0x1"
        assert block["nonce"] == "0x0000000000000000"
        assert block["mixHash"] == block["workAccumulator"]
        for field in ("jobId", "startCheckpoint", "stepCount", "finalState"):
            assert field in block
    # pending: the next block, built from the pool; geth's null hash, nonce and miner
    pending = (await rpc.call("eth_getBlockByNumber", "pending", False))["result"]
    assert pending["number"] == "0x2" and pending["hash"] is None and pending["miner"] is None
    assert pending["parentHash"] == block["hash"] and pending["transactions"] == []
    block = await rpc.result("eth_getBlockByNumber", "latest", False)
    assert await rpc.result("eth_getBlockByHash", block["hash"], False) == block
    assert await rpc.result("eth_getBlockByNumber", "0x5", False) is None
    assert await rpc.result("eth_getBlockByHash", "0x" + "00" * 32, False) is None
    assert await rpc.result("eth_getBlockTransactionCountByHash", block["hash"]) == "0x0"
    assert await rpc.result("eth_getBlockTransactionCountByNumber", "latest") == "0x0"
    assert await rpc.result("eth_getUncleCountByBlockHash", block["hash"]) == "0x0"
    assert await rpc.result("eth_getUncleCountByBlockNumber", "0x0") == "0x0"


async def test_transfer_and_receipt(rpc: Rpc, automine: Automine) -> None:
    raw = signed(ACCOUNT.key, 0, to=ACCOUNT2.address, value=12345)
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(raw))
    assert tx_hash == "0x" + keccak(raw).hex()
    receipt = await mined_receipt(rpc, tx_hash)
    assert receipt["status"] == "0x1" and receipt["gasUsed"] == hex(21_000)
    assert receipt["from"] == ACCOUNT.address.lower() and receipt["to"] == ACCOUNT2.address.lower()
    tx = await rpc.result("eth_getTransactionByHash", tx_hash)
    assert tx["blockHash"] == receipt["blockHash"] and tx["value"] == hex(12345)
    assert await rpc.result("eth_getTransactionByBlockHashAndIndex", receipt["blockHash"], "0x0") == tx
    assert await rpc.result("eth_getTransactionByBlockNumberAndIndex", receipt["blockNumber"], "0x0") == tx
    assert await rpc.result("eth_getTransactionByBlockNumberAndIndex", receipt["blockNumber"], "0x1") is None
    assert await rpc.result("eth_getBalance", ACCOUNT2.address) == hex(FUNDS + 12345)
    assert await rpc.result("eth_getTransactionCount", ACCOUNT.address) == "0x1"
    assert await rpc.result("eth_getBlockReceipts", receipt["blockNumber"]) == [receipt]
    assert await rpc.result("eth_getTransactionReceipt", "0x" + "ab" * 32) is None


async def test_pending_transaction_and_nonce(rpc: Rpc) -> None:
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0)))
    tx = (await rpc.call("eth_getTransactionByHash", tx_hash))["result"]  # pending: no schema (blockHash null)
    assert tx["blockHash"] is None and tx["blockNumber"] is None and tx["transactionIndex"] is None
    assert await rpc.result("eth_getTransactionCount", ACCOUNT.address, "pending") == "0x1"
    assert await rpc.result("eth_getTransactionCount", ACCOUNT.address, "latest") == "0x0"
    assert await rpc.result("eth_getTransactionReceipt", tx_hash) is None


async def test_contract_call_and_estimate(rpc: Rpc, automine: Automine) -> None:
    address = await deploy(rpc)
    assert len(await rpc.result("eth_getCode", address)) > 2
    assert await rpc.result("eth_call", {"to": address}, "latest") == "0x" + "00" * 32
    # a call that writes leaves no trace for the next call (states are reused per block)
    for _ in range(8):
        assert await rpc.result("eth_call", {"to": address, "data": "0x" + encode_uint(4).hex()}) == "0x"
        assert await rpc.result("eth_call", {"to": address}, "latest") == "0x" + "00" * 32
    tx_hash = await rpc.result(
        "eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0, data=encode_uint(7), gas=100_000))
    )
    receipt = await mined_receipt(rpc, tx_hash)
    assert receipt["logs"][0]["topics"] == ["0x" + SET_TOPIC.hex()]
    assert await rpc.result("eth_call", {"to": address, "input": "0x"}) == "0x" + encode_uint(7).hex()
    assert await rpc.result("eth_getStorageAt", address, "0x0") == "0x" + encode_uint(7).hex()
    # state overrides
    overridden = await rpc.result(
        "eth_call", {"to": address}, "latest", {address: {"stateDiff": {"0x0": "0x" + encode_uint(9).hex()}}}
    )
    assert overridden == "0x" + encode_uint(9).hex()
    # estimate: enough gas to succeed, and not much more than used
    estimate = int(await rpc.result("eth_estimateGas", {"from": ACCOUNT.address, "to": address, "data": "0x" + encode_uint(8).hex()}), 16)
    assert 21_000 < estimate < 100_000
    assert await rpc.result("eth_estimateGas", {"from": ACCOUNT.address, "to": ACCOUNT2.address, "value": "0x1"}) == hex(21_000)
    access = await rpc.result("eth_createAccessList", {"from": ACCOUNT.address, "to": address, "data": "0x" + encode_uint(8).hex()})
    assert access["accessList"] == [{"address": address, "storageKeys": ["0x" + "00" * 32]}]


async def test_revert_is_code_3_with_data(rpc: Rpc, automine: Automine) -> None:
    address = await deploy(rpc)
    for method in ("eth_call", "eth_estimateGas"):
        error = await rpc.error(method, {"from": ACCOUNT.address, "to": address, "data": "0x" + encode_uint(0).hex()})
        assert error["code"] == 3
        assert error["message"] == "execution reverted: zero"
        assert error["data"].startswith("0x08c379a0")


async def test_fee_methods(rpc: Rpc, automine: Automine) -> None:
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, tip=2 * GWEI)))
    await mined_receipt(rpc, tx_hash)
    assert int(await rpc.result("eth_maxPriorityFeePerGas"), 16) == 2 * GWEI
    assert int(await rpc.result("eth_gasPrice"), 16) > 2 * GWEI
    history = await rpc.result("eth_feeHistory", "0x2", "latest", [10, 90])
    assert history["oldestBlock"] == "0x0" and len(history["baseFeePerGas"]) == 3
    assert history["reward"][1] == [hex(2 * GWEI), hex(2 * GWEI)]
    assert len(history["gasUsedRatio"]) == 2


# -- errors ----------------------------------------------------------------------

async def test_invalid_json_is_parse_error(rpc: Rpc) -> None:
    response = await rpc.client.post("/", data=b'{"jsonrpc": "2.0", "method": ')
    body = await response.json()
    assert body == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": body["error"]["message"]}}


async def test_invalid_requests(rpc: Rpc) -> None:
    for payload in (1, "x", None, {"jsonrpc": "2.0", "id": 1}, {"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"},
                    {"jsonrpc": "2.0", "id": [1], "method": "eth_chainId"}, {"jsonrpc": "2.0", "id": 1, "method": 5}):
        answer = await rpc.raw(payload)
        assert answer["error"]["code"] == -32600, payload
    assert (await rpc.raw([]))["error"]["code"] == -32600
    too_many = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(101)]
    assert (await rpc.raw(too_many))["error"]["code"] == -32600


async def test_invalid_method_not_found(rpc: Rpc) -> None:
    error = await rpc.error("eth_nope")
    assert error == {"code": -32601, "message": "the method eth_nope does not exist/is not available"}
    assert (await rpc.error("eth_subscribe", "newHeads"))["code"] == -32601  # no notifications over HTTP


async def test_invalid_params_name_the_param(rpc: Rpc) -> None:
    error = await rpc.error("eth_getBalance", "0x1234")
    assert error["code"] == -32602 and "address" in error["message"]
    error = await rpc.error("eth_getBalance")
    assert error["code"] == -32602 and "missing value for required argument 0 (address)" == error["message"]
    error = await rpc.error("eth_getBlockByNumber", "0x01", False)
    assert error["code"] == -32602 and "leading zero" in error["message"]
    error = await rpc.error("eth_chainId", 1)
    assert error["code"] == -32602 and "too many arguments" in error["message"]
    assert (await rpc.raw({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": {"a": 1}}))["error"]["code"] == -32602


async def test_batch_and_notifications(rpc: Rpc) -> None:
    answer = await rpc.raw([
        {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "method": "eth_chainId"},  # notification: no answer
        {"jsonrpc": "2.0", "id": 2, "method": "eth_nope"},
        5,
    ])
    assert [a.get("id") for a in answer] == [1, 2, None]
    assert answer[0]["result"] == hex(CHAIN_ID) and answer[1]["error"]["code"] == -32601
    assert answer[2]["error"]["code"] == -32600
    assert await rpc.raw({"jsonrpc": "2.0", "method": "eth_chainId"}) is None


async def test_invalid_body_too_large(aiohttp_client: Any, backend: ChainBackend) -> None:
    from rpc import RpcConfig, create_app

    client = await aiohttp_client(create_app(backend, RpcConfig(max_body_bytes=1000)))
    response = await client.post("/", data=b" " * 2000)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == -32600


async def test_batch_answer_past_its_size_limit_is_cut_with_32003(aiohttp_client: Any, backend: ChainBackend) -> None:
    """Members whose answers would pass max_batch_response_bytes get -32003 and are not
    run (geth's rule); notifications stay unanswered; a single request is not limited."""
    from rpc import RpcConfig, create_app

    client = await aiohttp_client(create_app(backend, RpcConfig(max_batch_response_bytes=300)))
    batch = [{"jsonrpc": "2.0", "id": i, "method": "eth_chainId"} for i in range(60)]
    batch.insert(50, {"jsonrpc": "2.0", "method": "eth_chainId"})
    answer = await (await client.post("/", json=batch)).json()
    assert [a["id"] for a in answer] == list(range(60))
    ok = [a for a in answer if "result" in a]
    assert 1 <= len(ok) < 10 and answer[: len(ok)] == ok and all(a["result"] == hex(CHAIN_ID) for a in ok)
    assert all(a["error"] == {"code": -32003, "message": "response too large"} for a in answer[len(ok):])
    single = await (await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "web3_clientVersion"})).json()
    assert "result" in single


async def test_large_bodies_wait_for_room_and_small_ones_do_not(aiohttp_client: Any, backend: ChainBackend) -> None:
    """Bodies over 64 KiB reserve their announced length in a shared budget: one that
    finds no room in time is refused with 503 (connection closed); small bodies never wait."""
    from rpc import RpcConfig, create_app
    from rpc.server import BODY_BUDGET

    app = create_app(backend, RpcConfig(max_pending_body_bytes=1024 * 1024))
    client = await aiohttp_client(app)
    budget = app[BODY_BUDGET]
    async with budget.reserve(1024 * 1024, 1.0):  # the whole budget held, as by unfinished bodies
        small = await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
        assert (await small.json())["result"] == hex(CHAIN_ID)
        padded = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","x":"' + b"a" * 100_000 + b'"}'
        started = asyncio.get_running_loop().time()
        large = await client.post("/", data=padded, headers={"Content-Type": "application/json"})
        assert large.status == 503 and "busy" in (await large.json())["error"]["message"]
        assert asyncio.get_running_loop().time() - started >= 4.5
    large = await client.post("/", data=padded, headers={"Content-Type": "application/json"})
    assert large.status == 200 and budget.used == 0


async def test_invalid_transactions_use_geths_messages(rpc: Rpc, automine: Automine) -> None:
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0)))
    await mined_receipt(rpc, tx_hash)
    error = await rpc.error("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, value=2)))
    assert error == {"code": -32000, "message": "nonce too low"}
    error = await rpc.error("eth_sendRawTransaction", hexed(signed(POOR.key, 0)))
    assert error["code"] == -32000 and error["message"].startswith("insufficient funds for gas * price + value")
    automine.stop()
    raw = hexed(signed(ACCOUNT.key, 1))
    await rpc.result("eth_sendRawTransaction", raw)
    assert await rpc.error("eth_sendRawTransaction", raw) == {"code": -32000, "message": "already known"}
    assert await rpc.error("eth_sendRawTransaction", "0xdeadbeef") == {"code": -32000, "message": "rlp: invalid transaction encoding"}
    other_chain = Account.sign_transaction(
        {"nonce": 1, "gas": 21_000, "gasPrice": 2 * GWEI, "to": ACCOUNT2.address, "value": 1, "chainId": 5}, ACCOUNT.key
    ).raw_transaction
    assert (await rpc.error("eth_sendRawTransaction", hexed(other_chain)))["message"] == "invalid chain id for signer"
    unprotected = Account.sign_transaction(
        {"nonce": 1, "gas": 21_000, "gasPrice": 2 * GWEI, "to": ACCOUNT2.address, "value": 1}, ACCOUNT.key
    ).raw_transaction
    error = await rpc.error("eth_sendRawTransaction", hexed(unprotected))
    assert error["message"] == "only replay-protected (EIP-155) transactions allowed over RPC"
    underpriced = hexed(signed(ACCOUNT.key, 1, value=3, max_fee=10 * GWEI + 1))
    assert (await rpc.error("eth_sendRawTransaction", underpriced))["message"] == "replacement transaction underpriced"
    error = await rpc.error("eth_call", {"from": POOR.address, "to": ACCOUNT.address, "value": "0x1"})
    assert error["code"] == -32000 and "insufficient funds" in error["message"]


# -- logs and filters --------------------------------------------------------------

async def test_logs_and_filters(rpc: Rpc, automine: Automine, backend: ChainBackend) -> None:
    address = await deploy(rpc)
    block_filter = await rpc.result("eth_newBlockFilter")
    log_filter = await rpc.result("eth_newFilter", {"address": address, "topics": [["0x" + SET_TOPIC.hex()]]})
    other_filter = await rpc.result("eth_newFilter", {"address": ACCOUNT2.address})
    pending_filter = await rpc.result("eth_newPendingTransactionFilter")
    tx_hash = await rpc.result(
        "eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0, data=encode_uint(5), gas=100_000))
    )
    receipt = await mined_receipt(rpc, tx_hash)

    async def changes() -> Any:
        return await rpc.result("eth_getFilterChanges", log_filter)

    logs = await wait_for(changes)
    assert logs == receipt["logs"] and logs[0]["removed"] is False
    assert await rpc.result("eth_getFilterChanges", log_filter) == []
    assert await rpc.result("eth_getFilterChanges", other_filter) == []
    assert receipt["blockHash"] in await rpc.result("eth_getFilterChanges", block_filter)
    assert tx_hash in await rpc.result("eth_getFilterChanges", pending_filter)
    assert await rpc.result("eth_getFilterLogs", log_filter) == logs
    assert await rpc.result("eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest", "address": address}) == logs
    assert await rpc.result("eth_getLogs", {"blockHash": receipt["blockHash"]}) == logs
    assert await rpc.result("eth_getLogs", {"fromBlock": "0x0", "topics": ["0x" + "00" * 32]}) == []
    assert await rpc.result("eth_uninstallFilter", log_filter) is True
    assert await rpc.result("eth_uninstallFilter", log_filter) is False
    assert (await rpc.error("eth_getFilterChanges", log_filter))["code"] == -32001


async def test_log_range_and_filter_limits(rpc: Rpc, client: Any, aiohttp_client: Any, backend: ChainBackend) -> None:
    from rpc import RpcConfig, create_app
    from rpc.server import SERVICES

    for _ in range(3):
        Automine(backend).mine_now()
    narrow = Rpc(await aiohttp_client(create_app(backend, RpcConfig(max_log_range=2))))
    assert (await narrow.error("eth_getLogs", {"fromBlock": "0x0", "toBlock": "latest"}))["code"] == -32005
    assert await narrow.result("eth_getLogs", {"fromBlock": "0x2", "toBlock": "0x3"}) == []
    assert (await rpc.error("eth_getLogs", {"fromBlock": "0x3", "toBlock": "0x1"}))["code"] == -32602
    ids = [await rpc.result("eth_newBlockFilter") for _ in range(50)]
    assert (await rpc.error("eth_newBlockFilter"))["code"] == -32005
    filters = client.app[SERVICES].filters
    assert filters.expire(now=10**12) == 50  # idle past the timeout: all gone
    assert (await rpc.error("eth_getFilterChanges", ids[0]))["code"] == -32001


async def test_reorg_reports_removed_logs(rpc: Rpc, backend: ChainBackend) -> None:
    miner = Automine(backend)
    address = await _deploy_direct(rpc, backend, miner)
    fork_point = backend.chain.head()
    log_filter = await rpc.result("eth_newFilter", {"address": address})
    await rpc.result(
        "eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0, data=encode_uint(5), gas=100_000))
    )
    miner.mine_now()

    async def changes() -> Any:
        return await rpc.result("eth_getFilterChanges", log_filter)

    added = await wait_for(changes)
    # a heavier side branch from the fork point, without the transaction
    chain = backend.chain
    parent = fork_point
    for _ in range(3):
        block, payload = chain.build_block(b"\x00" * 20, timestamp=parent.timestamp + 1, transactions=[], parent_hash=parent.hash)
        chain.import_block(block, payload)
        parent = block.header
    assert chain.head().hash == parent.hash
    backend.notify_new_head(parent.hash)
    removed = await wait_for(changes)
    assert [log["removed"] for log in removed] == [True]
    assert removed[0]["transactionHash"] == added[0]["transactionHash"]


async def _deploy_direct(rpc: Rpc, backend: ChainBackend, miner: Automine) -> str:
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, to=None, value=0, data=INIT, gas=200_000)))
    miner.mine_now()
    return (await rpc.result("eth_getTransactionReceipt", tx_hash))["contractAddress"]


# -- WebSocket -------------------------------------------------------------------------

async def test_websocket_requests_and_subscriptions(client: Any, backend: ChainBackend) -> None:
    miner = Automine(backend)
    ws = await client.ws_connect("/")
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))
    assert json.loads((await ws.receive()).data)["result"] == hex(CHAIN_ID)
    subs = {}
    for i, (kind, *params) in enumerate((["newHeads"], ["logs", {}], ["newPendingTransactions"])):
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 10 + i, "method": "eth_subscribe", "params": [kind, *params]}))
        answer = json.loads((await ws.receive()).data)
        subs[answer["result"]] = kind
    raw = signed(ACCOUNT.key, 0, to=None, value=0, data=INIT, gas=200_000)
    await asyncio.get_running_loop().run_in_executor(None, backend.submit_raw_transaction, raw)
    await asyncio.sleep(0.05)
    await asyncio.get_running_loop().run_in_executor(None, miner.mine_now)
    # deploying emits no log; call set(3) to get one
    seen: dict[str, list[Any]] = {kind: [] for kind in subs.values()}
    raw2 = signed(ACCOUNT.key, 1, to="0x" + keccak(bytes.fromhex("d694") + bytes.fromhex(ACCOUNT.address[2:]) + b"\x80")[12:].hex(), value=0, data=encode_uint(3), gas=100_000)
    await asyncio.get_running_loop().run_in_executor(None, backend.submit_raw_transaction, raw2)
    await asyncio.get_running_loop().run_in_executor(None, miner.mine_now)
    while not (len(seen["newHeads"]) >= 2 and seen["logs"] and len(seen["newPendingTransactions"]) >= 2):
        message = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        assert message["method"] == "eth_subscription"
        seen[subs[message["params"]["subscription"]]].append(message["params"]["result"])
    assert seen["newHeads"][0]["number"] == "0x1"
    assert seen["newPendingTransactions"][0] == "0x" + keccak(raw).hex()
    assert seen["logs"][0]["data"] == "0x" + encode_uint(3).hex()
    # unsubscribe and the per-connection limit (8 in the test config)
    first = next(iter(subs))
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 99, "method": "eth_unsubscribe", "params": [first]}))
    assert json.loads((await ws.receive()).data)["result"] is True
    codes = []
    for i in range(8):
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 200 + i, "method": "eth_subscribe", "params": ["newHeads"]}))
        codes.append(json.loads((await ws.receive()).data).get("error", {}).get("code"))
    assert codes.count(-32005) == 2  # 2 left + 6 more allowed, then refused
    await ws.close()


async def test_invalid_estimates(rpc: Rpc, automine: Automine) -> None:
    address = await deploy(rpc)
    set_call = {"from": ACCOUNT.address, "to": address, "data": "0x" + encode_uint(8).hex()}
    error = await rpc.error("eth_estimateGas", {**set_call, "gas": hex(21_500)})
    assert error == {"code": -32000, "message": "gas required exceeds allowance (21500)"}
    error = await rpc.error("eth_estimateGas", {"from": POOR.address, "to": ACCOUNT.address, "value": "0x1"})
    assert error["code"] == -32000 and "insufficient funds" in error["message"]
    error = await rpc.error("eth_estimateGas", {"from": POOR.address, "to": ACCOUNT.address, "gasPrice": hex(GWEI)})
    assert error == {"code": -32000, "message": "gas required exceeds allowance (0)"}
    # the estimate is enough: a transaction with exactly that gas succeeds
    estimate = int(await rpc.result("eth_estimateGas", set_call), 16)
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0, data=encode_uint(8), gas=estimate)))
    assert (await mined_receipt(rpc, tx_hash))["status"] == "0x1"


async def test_pending_subscription_with_full_transactions(client: Any, backend: ChainBackend) -> None:
    ws = await client.ws_connect("/")
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newPendingTransactions", True]}))
    sub = json.loads((await ws.receive()).data)["result"]
    raw = signed(ACCOUNT.key, 0)
    await asyncio.get_running_loop().run_in_executor(None, backend.submit_raw_transaction, raw)
    message = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert message["params"]["subscription"] == sub
    assert message["params"]["result"]["hash"] == "0x" + keccak(raw).hex()
    assert message["params"]["result"]["blockHash"] is None
    for bad in (["nope"], ["logs", {"fromBlock": "0x0"}], ["logs", {"address": "0x12"}]):
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "eth_subscribe", "params": bad}))
        assert json.loads((await ws.receive()).data)["error"]["code"] == -32602, bad
    await ws.close()


async def test_invalid_too_many_websockets_from_one_address(aiohttp_client: Any, backend: ChainBackend) -> None:
    """One client address holds at most max_ws_per_client connections; one more is
    refused before the upgrade with HTTP 429 and a JSON-RPC error saying why; closing
    one makes room again. (40 connections x 128 subscriptions used to be 5,120 live
    subscriptions from one client.)"""
    import aiohttp

    from rpc.config import RpcConfig
    from rpc.server import create_app

    client = await aiohttp_client(create_app(backend, RpcConfig(port=0, max_ws_per_client=3)))
    sockets = [await client.ws_connect("/") for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/")
    assert refused.value.status == 429
    response = await client.get("/", headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                                             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 429
    error = (await response.json())["error"]
    assert error["code"] == -32005 and "at most 3 per client address" in error["message"]
    await sockets[0].send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
    assert json.loads((await sockets[0].receive()).data)["result"] == hex(CHAIN_ID)  # the others still serve
    await sockets.pop().close()
    for _ in range(50):  # the server notices the close
        try:
            sockets.append(await client.ws_connect("/"))
            break
        except aiohttp.WSServerHandshakeError:
            await asyncio.sleep(0.02)
    assert len(sockets) == 3
    for ws in sockets:
        await ws.close()



async def test_a_filter_installed_after_unwatched_blocks_sees_only_later_ones(rpc: Rpc, automine: Automine) -> None:
    """With no filter or subscription the node does not read new blocks for them; one
    installed afterwards still reports exactly the blocks that follow it."""
    for nonce in range(3):
        await mined_receipt(rpc, await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, nonce))))
    block_filter = await rpc.result("eth_newBlockFilter")
    log_filter = await rpc.result("eth_newFilter", {"fromBlock": "latest"})
    assert await rpc.result("eth_getFilterChanges", block_filter) == []
    receipt = await mined_receipt(rpc, await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 3))))

    async def changes() -> Any:
        return await rpc.result("eth_getFilterChanges", block_filter)

    assert await wait_for(changes) == [receipt["blockHash"]]
    assert await rpc.result("eth_getFilterChanges", log_filter) == []

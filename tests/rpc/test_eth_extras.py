"""Methods and rules added for web3.py's and the execution-apis' expectations: raw
transactions, the pending block, eth_blobBaseFee, strict eth_getBlockBy* params,
eth_getLogs range errors, eth_getProof (checked by independent verifiers),
eth_simulateV1, txpool_* and admin_*, --rpc-api namespaces, and a transaction's
visibility while a block import runs."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import rlp
from eth.db.atomic import AtomicDB
from eth_utils import keccak, to_checksum_address
from trie import HexaryTrie

from chain.chain import Chain
from rpc.automine import Automine
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.server import create_app
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, CHAIN_ID, FUNDS, Rpc
from tests.rpc.contract import INIT, encode_uint
from tests.rpc.helpers import hexed, signed
from tests.rpc.test_server import deploy, mined_receipt

pytestmark = pytest.mark.asyncio

#: JUMPDEST PUSH1 0 JUMP: loops until the gas or the clock runs out.
INFINITE_LOOP = "0x5b600056"


# -- raw transactions, pending block, blob fee, strict params ------------------------

async def test_raw_transactions(rpc: Rpc, backend: ChainBackend) -> None:
    raw = signed(ACCOUNT.key, 0, to=ACCOUNT2.address, value=5)
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(raw))
    assert await rpc.result("eth_getRawTransactionByHash", tx_hash) == hexed(raw)  # pooled
    block = Automine(backend).mine_now()
    assert await rpc.result("eth_getRawTransactionByHash", tx_hash) == hexed(raw)  # mined
    assert await rpc.result("eth_getRawTransactionByBlockHashAndIndex", "0x" + block.hash.hex(), "0x0") == hexed(raw)
    assert await rpc.result("eth_getRawTransactionByBlockNumberAndIndex", "latest", "0x0") == hexed(raw)
    assert await rpc.result("eth_getRawTransactionByBlockNumberAndIndex", "0x1", "0x1") is None
    assert await rpc.result("eth_getRawTransactionByHash", "0x" + "ab" * 32) is None


async def test_pending_block_is_built_from_the_pool(rpc: Rpc, backend: ChainBackend) -> None:
    empty = (await rpc.call("eth_getBlockByNumber", "pending", False))["result"]
    assert empty["number"] == "0x1" and empty["transactions"] == [] and empty["hash"] is None
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, to=ACCOUNT2.address)))
    pending = (await rpc.call("eth_getBlockByNumber", "pending", True))["result"]
    assert pending["number"] == "0x1" and [tx["hash"] for tx in pending["transactions"]] == [tx_hash]
    assert pending["gasUsed"] == "0x5208" and pending["miner"] is None
    assert await rpc.result("eth_getBlockTransactionCountByNumber", "pending") == "0x1"
    assert (await rpc.call("eth_getTransactionByBlockNumberAndIndex", "pending", "0x0"))["result"]["hash"] == tx_hash
    assert await rpc.result("eth_blockNumber") == "0x0"  # nothing was stored
    Automine(backend).mine_now()
    after = (await rpc.call("eth_getBlockByNumber", "pending", False))["result"]
    assert after["number"] == "0x2" and after["transactions"] == []


async def test_blob_base_fee(rpc: Rpc) -> None:
    assert await rpc.result("eth_blobBaseFee") == "0x1"


async def test_invalid_get_block_with_one_param(rpc: Rpc) -> None:
    for method, first in (("eth_getBlockByNumber", "latest"), ("eth_getBlockByHash", "0x" + "00" * 32)):
        error = await rpc.error(method, first)
        assert error["code"] == -32602 and "missing value for required argument 1" in error["message"]


async def test_invalid_get_logs_ranges(rpc: Rpc, backend: ChainBackend) -> None:
    miner = Automine(backend)
    for _ in range(3):
        miner.mine_now()
    error = await rpc.error("eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x9"})
    assert error == {"code": -32602, "message": "block range extends beyond current head block"}
    error = await rpc.error("eth_getLogs", {"fromBlock": "0x5", "toBlock": "latest"})
    assert error["message"] == "block range extends beyond current head block"
    error = await rpc.error("eth_getLogs", {"fromBlock": "0x3", "toBlock": "0x2"})
    assert error == {"code": -32602, "message": "invalid block range params"}
    assert await rpc.result("eth_getLogs", {"fromBlock": "0x1", "toBlock": "0x3"}) == []


# -- eth_getProof -------------------------------------------------------------------

def _nibbles(key: bytes) -> list[int]:
    return [n for b in key for n in (b >> 4, b & 15)]


def _decode_path(encoded: bytes) -> tuple[list[int], bool]:
    flag = encoded[0] >> 4
    nibbles = _nibbles(encoded)[1 if flag & 1 else 2:]
    return nibbles, bool(flag & 2)


def verify_mpt_proof(root: bytes, key: bytes, proof: list[bytes]) -> bytes:
    """An independent Merkle-Patricia proof check (keccak + rlp only): the value at
    ``key`` under ``root``, b"" for a proven absence; AssertionError if the proof is bad."""
    by_hash = {keccak(node): node for node in proof}
    path = _nibbles(key)
    reference: Any = root
    while True:
        if isinstance(reference, bytes):
            if reference == b"":
                return b""
            assert reference in by_hash, "proof lacks a node"
            node = rlp.decode(by_hash[reference])
        else:
            node = reference  # an inlined node (< 32 bytes)
        if len(node) == 17:
            if not path:
                return bytes(node[16])
            reference, path = node[path[0]], path[1:]
        else:
            assert len(node) == 2, "not a trie node"
            nibbles, is_leaf = _decode_path(node[0])
            if path[: len(nibbles)] != nibbles:
                return b""  # the path diverges: absent
            path = path[len(nibbles):]
            if is_leaf:
                return bytes(node[1]) if not path else b""
            reference = node[1]


async def test_get_proof_verifies(rpc: Rpc, automine: Automine, backend: ChainBackend) -> None:
    contract = await deploy(rpc)
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=contract, value=0,
                                                                     data=encode_uint(42), gas=100_000)))
    await mined_receipt(rpc, tx_hash)
    block = await rpc.result("eth_getBlockByNumber", "latest", False)
    state_root = bytes.fromhex(block["stateRoot"][2:])
    proof = await rpc.result("eth_getProof", contract, ["0x0", "0x1"], "latest")
    nodes = [bytes.fromhex(n[2:]) for n in proof["accountProof"]]
    account = rlp.decode(verify_mpt_proof(state_root, keccak(bytes.fromhex(contract[2:])), nodes))
    assert account[2] == bytes.fromhex(proof["storageHash"][2:]) and account[3] == bytes.fromhex(proof["codeHash"][2:])
    assert HexaryTrie.get_from_proof(state_root, keccak(bytes.fromhex(contract[2:])), [rlp.decode(n) for n in nodes])
    storage_root = bytes.fromhex(proof["storageHash"][2:])
    slot0, slot1 = proof["storageProof"]
    assert slot0["value"] == "0x2a" and slot1["value"] == "0x0"
    value = verify_mpt_proof(storage_root, keccak((0).to_bytes(32, "big")), [bytes.fromhex(n[2:]) for n in slot0["proof"]])
    assert int.from_bytes(rlp.decode(value), "big") == 42
    absent = verify_mpt_proof(storage_root, keccak((1).to_bytes(32, "big")), [bytes.fromhex(n[2:]) for n in slot1["proof"]])
    assert absent == b""
    # an EOA, and an address the state has never seen (proof of absence)
    eoa = await rpc.result("eth_getProof", ACCOUNT2.address, [], "latest")
    raw = verify_mpt_proof(state_root, keccak(bytes.fromhex(ACCOUNT2.address[2:])), [bytes.fromhex(n[2:]) for n in eoa["accountProof"]])
    assert int.from_bytes(rlp.decode(raw)[1], "big") == int(eoa["balance"], 16) == FUNDS
    nobody = "0x" + "77" * 20
    missing = await rpc.result("eth_getProof", nobody, ["0x5"], "latest")
    assert missing["balance"] == "0x0" and missing["storageProof"][0]["proof"] == []
    assert verify_mpt_proof(state_root, keccak(bytes.fromhex("77" * 20)), [bytes.fromhex(n[2:]) for n in missing["accountProof"]]) == b""


async def test_invalid_get_proof_params(rpc: Rpc) -> None:
    assert (await rpc.error("eth_getProof", ACCOUNT.address, "0x0", "latest"))["code"] == -32602
    assert (await rpc.error("eth_getProof", ACCOUNT.address, ["0x0"] * 1025, "latest"))["code"] == -32602


# -- eth_simulateV1 -------------------------------------------------------------------

async def test_simulate_v1_as_web3_uses_it(rpc: Rpc) -> None:
    c1 = "0xc100000000000000000000000000000000000000"
    result = await rpc.result("eth_simulateV1", {
        "blockStateCalls": [{
            "blockOverrides": {"baseFeePerGas": "0xa"},
            "stateOverrides": {c1: {"balance": hex(500_000_000)}},
            "calls": [{"from": c1, "to": c1, "maxFeePerGas": "0xa", "maxPriorityFeePerGas": "0xa"}],
        }],
        "validation": True, "traceTransfers": True,
    }, "latest")
    assert len(result) == 1 and result[0]["baseFeePerGas"] == "0xa" and result[0]["number"] == "0x1"
    assert result[0]["calls"] == [{"status": "0x1", "returnData": "0x", "gasUsed": "0x5208", "logs": []}]


async def test_simulate_v1_blocks_build_on_each_other(rpc: Rpc, backend: ChainBackend) -> None:
    target = "0x" + "c2" * 20
    code = "0x" + INIT.hex()
    result = await rpc.result("eth_simulateV1", {
        "blockStateCalls": [
            {"calls": [{"from": ACCOUNT.address, "to": target, "value": "0x7"}]},
            {"blockOverrides": {"number": "0x5", "time": hex(backend.head().header.timestamp + 100)},
             "calls": [{"from": ACCOUNT.address, "data": code}]},
        ],
        "traceTransfers": True, "returnFullTransactions": True,
    }, "latest")
    first, second = result
    assert second["parentHash"] == first["hash"] and second["number"] == "0x5"
    transfer = first["calls"][0]["logs"][0]
    assert transfer["address"] == "0x" + "ee" * 20 and transfer["data"] == "0x" + (7).to_bytes(32, "big").hex()
    assert transfer["topics"][2] == "0x" + "00" * 12 + "c2" * 20
    assert second["transactions"][0]["nonce"] == "0x1"  # the first block's call counted
    assert second["calls"][0]["status"] == "0x1"
    assert await rpc.result("eth_getBalance", target, "latest") == "0x0"  # nothing stored


async def test_invalid_simulate_v1(rpc: Rpc) -> None:
    error = await rpc.error("eth_simulateV1", {"blockStateCalls": [
        {"calls": [{"from": ACCOUNT.address, "to": ACCOUNT2.address, "nonce": "0x5"}]}], "validation": True}, "latest")
    assert error["code"] == -38011
    error = await rpc.error("eth_simulateV1", {"blockStateCalls": [
        {"calls": [{"from": "0x" + "99" * 20, "to": ACCOUNT2.address, "value": "0x1", "maxFeePerGas": hex(10**10)}]}],
        "validation": True}, "latest")
    assert error["code"] == -38014
    error = await rpc.error("eth_simulateV1", {"blockStateCalls": [{"blockOverrides": {"number": "0x0"}}]}, "latest")
    assert error["code"] == -38020
    error = await rpc.error("eth_simulateV1", {"blockStateCalls": [{}] * 257}, "latest")
    assert error["code"] == -38026
    revert = await rpc.result("eth_simulateV1", {"blockStateCalls": [{
        "stateOverrides": {"0x" + "c3" * 20: {"code": "0x60006000fd"}},
        "calls": [{"to": "0x" + "c3" * 20}]}]}, "latest")
    assert revert[0]["calls"][0]["status"] == "0x0" and revert[0]["calls"][0]["error"]["code"] == 3


async def test_invalid_calls_stop_at_the_evm_timeout(aiohttp_client: Any, backend: ChainBackend) -> None:
    rpc = Rpc(await aiohttp_client(create_app(backend, RpcConfig(port=0, evm_timeout_s=0.5))))
    looping = {"0x" + "c4" * 20: {"code": INFINITE_LOOP}}
    started = time.monotonic()
    error = await rpc.error("eth_call", {"to": "0x" + "c4" * 20}, "latest", looping)
    assert error == {"code": -32000, "message": "execution aborted (timeout = 0.5s)"}
    assert time.monotonic() - started < 3
    error = await rpc.error("eth_simulateV1", {"blockStateCalls": [
        {"stateOverrides": looping, "calls": [{"to": "0x" + "c4" * 20}]}]}, "latest")
    assert error["message"] == "execution aborted (timeout = 0.5s)"
    error = await rpc.error("eth_estimateGas", {"to": "0x" + "c4" * 20}, "latest", looping)
    assert error["message"] == "execution aborted (timeout = 0.5s)"
    assert await rpc.result("eth_call", {"to": ACCOUNT2.address}, "latest") == "0x"  # the state is intact


async def test_gas_cap_bounds_calls(aiohttp_client: Any, backend: ChainBackend) -> None:
    rpc = Rpc(await aiohttp_client(create_app(backend, RpcConfig(port=0, gas_cap=100_000))))
    looping = {"0x" + "c4" * 20: {"code": INFINITE_LOOP}}
    error = await rpc.error("eth_call", {"to": "0x" + "c4" * 20, "gas": hex(10**9)}, "latest", looping)
    assert error == {"code": -32000, "message": "out of gas"}
    error = await rpc.error("eth_estimateGas", {"to": "0x" + "c4" * 20}, "latest", looping)
    assert error["message"] == "gas required exceeds allowance (100000)"


# -- txpool_, admin_, --rpc-api --------------------------------------------------------

async def test_txpool_methods(aiohttp_client: Any, backend: ChainBackend) -> None:
    rpc = Rpc(await aiohttp_client(create_app(backend, RpcConfig(port=0))))
    first = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, to=ACCOUNT2.address, value=3)))
    gap = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 2, to=ACCOUNT2.address)))
    assert await rpc.result("txpool_status") == {"pending": "0x1", "queued": "0x1"}
    content = await rpc.result("txpool_content")
    sender = to_checksum_address(ACCOUNT.address)
    assert content["pending"][sender]["0"]["hash"] == first and content["queued"][sender]["2"]["hash"] == gap
    assert (await rpc.result("txpool_contentFrom", ACCOUNT.address))["queued"]["2"]["hash"] == gap
    summary = (await rpc.result("txpool_inspect"))["pending"][sender]["0"]
    assert summary.startswith(f"{to_checksum_address(ACCOUNT2.address)}: 3 wei + 21000 gas")


async def test_admin_and_rpc_api_selection(aiohttp_client: Any, backend: ChainBackend) -> None:
    default = Rpc(await aiohttp_client(create_app(backend, RpcConfig(port=0))))
    assert (await default.error("admin_nodeInfo"))["code"] == -32601  # off unless asked for
    only = Rpc(await aiohttp_client(create_app(backend, RpcConfig(port=0, apis=("eth", "admin")))))
    info = await only.result("admin_nodeInfo")
    assert info["protocols"]["pouw"]["network"] == CHAIN_ID and info["name"].startswith("pouw-node/")
    assert await only.result("admin_peers") == []  # no p2p service in this test
    assert (await only.error("net_version"))["code"] == -32601
    assert (await only.error("pouw_taskFamilies"))["code"] == -32601
    assert await only.result("eth_chainId") == hex(CHAIN_ID)


# -- a sent transaction is visible at once, even during an import ----------------------

async def test_sent_transaction_visible_during_block_import(rpc: Rpc, backend: ChainBackend) -> None:
    """A block whose import takes seconds (gas-burning transactions) is imported under
    the chain's write lock, as every import does; meanwhile a user's
    eth_sendRawTransaction returns at once and eth_getTransactionByHash finds it."""
    chain = backend.chain
    # contract creations whose init code loops until out of gas: about 2 s of py-evm
    burn = [signed(ACCOUNT2.key, i, to=None, value=0, data=bytes.fromhex("5b600056"), gas=2_000_000) for i in range(3)]
    # built by a peer (same genesis, own database): this node executes it on import
    peer = Chain.open(AtomicDB(), chain.genesis, seal_engine=chain.engine_class, clock=chain.clock)
    assert peer.head().hash == chain.head().hash
    block, payload = peer.build_block(b"\x00" * 20, timestamp=chain.head().timestamp + 1,
                                      transactions=[_decode(raw) for raw in burn])
    started = threading.Event()

    def import_slowly() -> None:
        with chain.write_lock:
            started.set()
            chain.import_block(block, payload)

    importer = threading.Thread(target=import_slowly)
    importer.start()
    assert started.wait(5)
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    tx_hash = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, to=ACCOUNT2.address)))
    seen = (await rpc.call("eth_getTransactionByHash", tx_hash))["result"]
    elapsed = time.monotonic() - t0
    still_importing = importer.is_alive()
    await asyncio.get_running_loop().run_in_executor(None, importer.join)
    assert still_importing, "the import finished before the transaction was sent: make the block heavier"
    assert seen is not None and seen["hash"] == tx_hash
    assert elapsed < 1.0, f"send + lookup took {elapsed:.2f} s during an import"
    assert chain.head().block_number == 1


def _decode(raw: bytes) -> Any:
    from chain.transactions import decode_raw_transaction

    return decode_raw_transaction(raw, max_size=len(raw))

"""pouw_nodeInfo, pouw_blockImports, pouw_getJobHistory (rpc/operator_methods.py), the
estimate's measured rate and its warning on a chain that never trains jobs, the web3
module's refusal there, and the registry ABI shipped as JSON."""
from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio
from web3 import Web3

from node.imports import ImportLog
from chain.txpool import TxPool
from consensus.params import STANDING_JOB_BASE
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.operator_methods import CheckpointIndex
from rpc.server import create_app
from client.web3_module import REGISTRY_ABI, REGISTRY_ABI_PATH, REGISTRY_ADDRESS, PouwModule, UntrainedChain
from tests.chain.helpers import DEV_KEYS, MINER
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec
from tests.rpc.conftest import Rpc

GWEI = 10**9
ETHER = 10**18
OTHER_MINER = b"\x77" * 20


@pytest.fixture
def node() -> ChainBackend:
    genesis = pouw_genesis(expected_steps=6, k=3, maturity=2)
    chain = open_pouw_chain(genesis)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view())
    backend = ChainBackend(chain)
    backend.imports = ImportLog(chain).attach()  # type: ignore[attr-defined]  # as node.node.Node does
    return backend


@pytest_asyncio.fixture
async def prpc(aiohttp_client: Any, node: ChainBackend) -> Rpc:
    return Rpc(await aiohttp_client(create_app(node, RpcConfig(port=0))))


def mine(backend: ChainBackend, transactions: Any = (), **kw: Any) -> Any:
    with backend.chain.write_lock:
        mined = mine_block(backend.chain, MINER, transactions=transactions, **kw)
    backend.notify_new_head(mined.block.hash)
    return mined


@pytest.mark.asyncio
async def test_node_info(prpc: Rpc) -> None:
    info = await prpc.result("pouw_nodeInfo")
    assert info["sealEngine"] == "pouw" and info["trainsJobs"] is True and info["mining"] is False
    assert info["coinbase"] is None and info["peers"] == "0x0" and info["coinbaseMaturity"] == "0x2"
    assert info["dashboard"] is True and info["metrics"] is True and info["version"] == "0.1.0"
    assert info["genesisHash"].startswith("0x") and len(info["genesisHash"]) == 66


@pytest.mark.asyncio
async def test_block_imports(prpc: Rpc, node: ChainBackend) -> None:
    assert await prpc.result("pouw_blockImports") == []
    blocks = [mine(node) for _ in range(3)]
    imports = await prpc.result("pouw_blockImports", 2)
    assert [int(r["number"], 16) for r in imports] == [3, 2]
    first = imports[0]
    assert first["hash"] == "0x" + bytes(blocks[-1].block.hash).hex()
    assert int(first["jobId"], 16) == STANDING_JOB_BASE and int(first["steps"], 16) == blocks[-1].steps
    assert first["verifySeconds"] > 0 and first["importSeconds"] >= first["verifySeconds"]
    assert first["source"] == "local" and first["reorg"] is False
    for bad in (0, 1025, "0x", -1):
        assert (await prpc.error("pouw_blockImports", bad))["code"] == -32602


@pytest.mark.asyncio
async def test_job_history_accuracy_curve_rate_and_eta(prpc: Rpc, node: ChainBackend) -> None:
    spec = tiny_spec(steps=10_000)
    mine(node, [post_job_tx(DEV_KEYS[0], 0, spec, price=GWEI, escrow=ETHER)])
    before = await prpc.result("pouw_getJobHistory", 1)
    assert before["blocks"] == "0x0" and len(before["checkpoints"]) == 1  # the initial state only
    initial = before["checkpoints"][0]
    assert initial["blockNumber"] is None and initial["stepsDone"] == "0x0" and 0 <= initial["accuracy"] <= 1
    assert before["etaBasis"] in (None, "network")  # no block of its own yet
    mined = [mine(node, dt=2) for _ in range(6)]
    assert all(m.job_id == 1 for m in mined)
    history = await prpc.result("pouw_getJobHistory", 1, {"points": 4})
    assert history["status"] == "open" and history["blocks"] == "0x6"
    points = history["checkpoints"]
    assert len(points) == 4 and points[0]["blockNumber"] is None  # initial, then evenly spread, the last kept
    assert points[-1]["blockHash"] == "0x" + bytes(mined[-1].block.hash).hex()
    assert int(points[-1]["stepsDone"], 16) == sum(m.steps for m in mined) == int(history["stepsDone"], 16)
    assert points[-1]["checkpoint"] == "0x" + bytes(mined[-1].block.header.final_state).hex()
    assert all(0 <= p["accuracy"] <= 1 and p["loss"] >= 0 for p in points)
    # the rate: its own recent blocks (2 s apart here); the ETA from it
    assert history["etaBasis"] == "job" and history["stepsPerSecond"] > 0
    remaining = 10_000 - int(history["stepsDone"], 16)
    assert history["etaSeconds"] == pytest.approx(remaining / history["stepsPerSecond"])
    # metrics off: the same points, no evaluation
    bare = await prpc.result("pouw_getJobHistory", 1, {"metrics": False})
    assert all(p["accuracy"] is None for p in bare["checkpoints"]) and len(bare["checkpoints"]) == 7
    standing = await prpc.result("pouw_getJobHistory", hex(STANDING_JOB_BASE))
    assert standing["status"] == "standing" and standing["etaSeconds"] is None
    assert await prpc.result("pouw_getJobHistory", 99) is None


@pytest.mark.asyncio
@pytest.mark.parametrize("options", [{"points": 0}, {"points": 201}, {"nope": True}, {"metrics": "yes"}, []])
async def test_invalid_job_history_options(prpc: Rpc, options: Any) -> None:
    assert (await prpc.error("pouw_getJobHistory", 1, options))["code"] == -32602


def test_the_checkpoint_index_follows_reorgs() -> None:
    genesis = pouw_genesis(expected_steps=6, k=2, maturity=1)
    chain = open_pouw_chain(genesis)
    mine_block(chain, MINER, [post_job_tx(DEV_KEYS[0], 0, tiny_spec(steps=10_000), price=GWEI, escrow=ETHER)])
    index = CheckpointIndex(chain)
    fork = chain.head()
    branch_a = [mine_block(chain, MINER) for _ in range(3)]
    assert [b.number for b in index.blocks(1)] == [2, 3, 4]
    assert [b.hash for b in index.blocks(1)] == [bytes(m.block.hash) for m in branch_a]
    parent = fork.hash
    branch_b = []
    for _ in range(4):  # heavier: the index must drop A's blocks and take B's
        m = mine_block(chain, OTHER_MINER, parent_hash=parent, dt=6, do_import=False)
        chain.import_block(m.block, m.payload)
        parent = m.block.hash
        branch_b.append(m)
    blocks = index.blocks(1)
    assert [b.hash for b in blocks] == [bytes(m.block.hash) for m in branch_b]
    assert [b.miner for b in blocks] == [OTHER_MINER] * 4
    assert sum(b.steps for b in blocks) == sum(m.steps for m in branch_b)
    assert blocks[0].parent_timestamp == fork.timestamp


@pytest.mark.asyncio
async def test_estimate_times_blocks_with_the_measured_work_rate(prpc: Rpc, node: ChainBackend) -> None:
    spec = tiny_spec(steps=600)
    cold = await prpc.result("pouw_estimateJob", spec)
    assert cold["expectedSecondsBasis"] == "target" and cold["workRate"] is None  # nothing measured yet
    assert cold["trainsJobs"] is True and cold["warning"] is None
    for _ in range(4):
        mine(node, dt=3)
    warm = await prpc.result("pouw_estimateJob", spec)
    stats = await prpc.result("pouw_networkStats", 100)
    assert warm["expectedSecondsBasis"] == "measured" and warm["workRate"] == stats["workRate"]
    rate = int(stats["workRate"], 16)
    expected = int(warm["expectedBlocks"], 16) * int(warm["difficulty"], 16) / rate
    assert warm["expectedSeconds"] == pytest.approx(expected, rel=0.01)


@pytest.mark.asyncio
async def test_a_chain_without_proof_of_work_warns_in_the_estimate(rpc: Rpc) -> None:
    spec = tiny_spec(steps=100)
    estimate = await rpc.result("pouw_estimateJob", spec, GWEI)
    assert estimate["trainsJobs"] is False and "never makes progress" in estimate["warning"]
    assert estimate["expectedSeconds"] is None and estimate["expectedSecondsBasis"] is None
    info = await rpc.result("pouw_nodeInfo")
    assert info["trainsJobs"] is False and info["sealEngine"] == "noproof"


def test_the_web3_module_refuses_to_post_where_nobody_trains(live_url: str) -> None:
    from eth_account import Account

    w3 = Web3(Web3.HTTPProvider(live_url))
    w3.attach_modules({"pouw": PouwModule})
    account = Account.from_key("0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    nonce = w3.eth.get_transaction_count(account.address)
    with pytest.raises(UntrainedChain, match="allow_untrained=True"):
        w3.pouw.submit_job(account, tiny_spec(steps=100), GWEI, timeout=0)
    assert w3.eth.get_transaction_count(account.address, "pending") == nonce  # nothing was sent
    assert w3.pouw.node_info().trainsJobs is False


def test_the_registry_abi_ships_as_json_and_matches_the_precompile() -> None:
    from consensus.registry import (
        SEL_AUDIT, SEL_CANCEL, SEL_NEXT, SEL_POST, SEL_PROVE, SEL_SPEC, SEL_STATUS, TOPIC_CANCELLED, TOPIC_POSTED,
        encode_post_job,
    )
    from consensus.fraud import TOPIC_FRAUD
    from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector

    assert json.loads(REGISTRY_ABI_PATH.read_text()) == REGISTRY_ABI
    functions = {f["name"]: function_abi_to_4byte_selector(f) for f in REGISTRY_ABI if f["type"] == "function"}
    assert functions == {"postJob": SEL_POST, "cancelJob": SEL_CANCEL, "jobStatus": SEL_STATUS, "jobSpec": SEL_SPEC,
                         "nextJobId": SEL_NEXT, "proveFraud": SEL_PROVE, "jobAudit": SEL_AUDIT}
    events = {e["name"]: event_abi_to_log_topic(e) for e in REGISTRY_ABI if e["type"] == "event"}
    assert events == {"JobPosted": TOPIC_POSTED, "JobCancelled": TOPIC_CANCELLED, "FraudProven": TOPIC_FRAUD}
    registry = Web3().eth.contract(address=Web3.to_checksum_address(REGISTRY_ADDRESS), abi=REGISTRY_ABI)
    spec = tiny_spec(steps=10)
    data = registry.encode_abi("postJob", args=[json.dumps(spec).encode(), GWEI])
    from eth_abi import decode

    assert bytes.fromhex(data[2:10]) == SEL_POST
    assert decode(["bytes", "uint256"], bytes.fromhex(data[10:]))[1] == GWEI
    assert encode_post_job(spec, GWEI)[:4] == SEL_POST

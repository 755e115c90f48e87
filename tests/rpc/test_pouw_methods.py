"""The pouw_ namespace over HTTP against a pouw chain that honest mining advances.

The chain is in memory; blocks are mined by the real miner code (tests/consensus/helpers
mine_block) between RPC calls, and the node is told of each new head as a node would be.
"""
from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
import rlp
import torch
from eth_utils import to_checksum_address

from chain.txpool import TxPool
from consensus.params import REGISTRY_ADDRESS, STANDING_JOB_BASE
from pouw.datasets import dataset_from_bytes, dataset_to_bytes, synthetic_blobs
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.server import create_app
from tests.chain.helpers import DEV_ADDRESSES, DEV_KEYS, MINER, sign_tx
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec
from tests.rpc.conftest import Rpc

PRICE = 10**9
STEPS = 30
POSTER_KEY = DEV_KEYS[0]
POSTER = DEV_ADDRESSES[0]

pytestmark = pytest.mark.asyncio


def quantity(value: str) -> int:
    assert isinstance(value, str) and value.startswith("0x"), value
    return int(value, 16)


@pytest.fixture
def node() -> Any:
    genesis = pouw_genesis(expected_steps=6, k=3, maturity=2)
    chain = open_pouw_chain(genesis)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view())
    backend = ChainBackend(chain)
    return backend


@pytest_asyncio.fixture
async def prpc(aiohttp_client: Any, node: ChainBackend) -> Rpc:
    client = await aiohttp_client(create_app(node, RpcConfig(port=0)))
    return Rpc(client)


def mine(backend: ChainBackend, transactions: Any = ()) -> Any:
    with backend.chain.write_lock:
        mined = mine_block(backend.chain, MINER, transactions=transactions)
    backend.notify_new_head(mined.block.hash)
    return mined


def posting(nonce: int, spec: dict[str, Any], escrow: int) -> Any:
    """A postJob transaction the pool takes (it wants a priority fee)."""
    from consensus.registry import encode_post_job

    return sign_tx(POSTER_KEY, nonce, REGISTRY_ADDRESS, value=escrow, data=encode_post_job(spec, PRICE), gas=1_000_000)


def raw_hex(tx: Any) -> str:
    """The transaction as eth_sendRawTransaction takes it (typed: type byte || payload)."""
    return "0x" + (tx.encode() if hasattr(tx, "encode") else rlp.encode(tx)).hex()


def dataset_blob() -> bytes:
    return dataset_to_bytes(synthetic_blobs(b"\x01" * 32, 256, 64, (16,), 4))


def job_spec(dataset_id: str, steps: int = STEPS) -> dict[str, Any]:
    return tiny_spec(steps=steps, dataset=dataset_id, input_shape=[16], num_classes=4, hidden=8, batch=8)


async def test_catalogue_and_estimate(prpc: Rpc, node: ChainBackend) -> None:
    catalogue = await prpc.result("pouw_taskFamilies")
    assert [f["name"] for f in catalogue["families"]] == ["mlp", "cnn"]
    assert catalogue["challengeCount"] == 3
    assert quantity(catalogue["limits"]["maxStepsPerBlock"]) == 65536
    digits, images = catalogue["datasets"]
    assert digits["name"] and digits["builtin"] and digits["inputShape"] == [64]
    assert images["builtin"] and images["inputShape"] == [1, 8, 8] and images["trainExamples"] == digits["trainExamples"]
    # every example spec is accepted by the estimator
    for family in catalogue["families"]:
        est = await prpc.result("pouw_estimateJob", family["example"], "0x3b9aca00")
        assert quantity(est["escrowRequired"]) == 10**9 * family["example"]["steps"]
        assert quantity(est["totalWorkUnits"]) == quantity(est["workUnitsPerStep"]) * family["example"]["steps"]
        assert est["datasetAvailable"] is True
        dataset = next(d for d in catalogue["datasets"] if d["id"] == family["example"]["dataset"])
        assert dataset["inputShape"] == family["example"]["input_shape"], "the example fits its dataset"
    # a spec whose dataset does not fit it is refused, saying why
    misfit = dict(catalogue["families"][1]["example"], dataset=digits["id"])
    err = await prpc.error("pouw_estimateJob", misfit)
    assert err["code"] == -32602 and "input shape [64]" in err["message"] and "[1, 8, 8]" in err["message"]

    spec = tiny_spec(steps=600)
    est = await prpc.result("pouw_estimateJob", spec)
    w = quantity(est["workUnitsPerStep"])
    assert quantity(est["expectedStepsPerBlock"]) == node.chain.head().difficulty // w
    assert quantity(est["expectedBlocks"]) == -(-600 // quantity(est["expectedStepsPerBlock"]))
    # JSON text works as well as an object
    import json

    assert (await prpc.result("pouw_estimateJob", json.dumps(spec)))["specHash"] == est["specHash"]

    bad = await prpc.error("pouw_estimateJob", dict(spec, hidden=[0]))
    assert bad["code"] == -32602 and "hidden[0]" in bad["message"]
    too_big = await prpc.error("pouw_estimateJob", dict(spec, batch_size=10**6))
    assert too_big["code"] == -32602 and "batch_size" in too_big["message"]
    unknown = await prpc.error("pouw_estimateJob", dict(spec, learning_rate=0.1))
    assert unknown["code"] == -32602 and "learning_rate" in unknown["message"]
    assert (await prpc.error("pouw_estimateJob", [1, 2]))["code"] == -32602


async def test_datasets(prpc: Rpc) -> None:
    blob = dataset_blob()
    info = await prpc.result("pouw_putDataset", "0x" + blob.hex())
    from eth_utils import keccak

    assert info["id"] == "0x" + keccak(blob).hex()
    assert quantity(info["size"]) == len(blob)
    assert quantity(info["trainExamples"]) == 256 and quantity(info["testExamples"]) == 64
    assert info["inputShape"] == [16] and info["numClasses"] == 4 and info["builtin"] is False
    # idempotent
    assert await prpc.result("pouw_putDataset", "0x" + blob.hex()) == info
    got = await prpc.result("pouw_getDataset", info["id"], True)
    assert bytes.fromhex(got.pop("data")[2:]) == blob and got == info
    assert await prpc.result("pouw_getDataset", "0x" + "ab" * 32) is None

    for junk in (b"", b"not a dataset", b"PK\x03\x04" + b"\x00" * 40, blob[:-7]):
        err = await prpc.error("pouw_putDataset", "0x" + junk.hex())
        assert err["code"] == -32000 and "dataset refused" in err["message"], err
    assert (await prpc.error("pouw_putDataset", "zz"))["code"] == -32602


async def test_job_lifecycle_rewards_and_results(prpc: Rpc, node: ChainBackend) -> None:
    chain = node.chain
    mine(node)  # a block on the standing job first
    blob = dataset_blob()
    dataset_id = (await prpc.result("pouw_putDataset", "0x" + blob.hex()))["id"]
    spec = job_spec(dataset_id)
    escrow = PRICE * STEPS + 12345  # a little more than needed: the rest is refunded

    # refused before the pool: not the registry, a bad spec, an unknown dataset
    transfer = sign_tx(POSTER_KEY, 0, b"\x11" * 20, value=1, chain_id=chain.genesis.chain_id)
    err = await prpc.error("pouw_submitJob", raw_hex(transfer))
    assert err["code"] == -32000 and "job registry" in err["message"]
    bad = post_job_tx(POSTER_KEY, 0, dict(spec, lr_shift=99), PRICE, escrow)
    err = await prpc.error("pouw_submitJob", raw_hex(bad))
    assert err["code"] == -32000 and "lr_shift" in err["message"]
    missing = post_job_tx(POSTER_KEY, 0, dict(spec, dataset="0x" + "cd" * 32), PRICE, escrow)
    err = await prpc.error("pouw_submitJob", raw_hex(missing))
    assert err["code"] == -32000 and "pouw_putDataset" in err["message"]
    assert node.pending_transactions() == []
    assert (await prpc.error("pouw_submitJob", "0x1234"))["code"] == -32000

    tx = posting(0, spec, escrow)
    raw = raw_hex(tx)
    sub = await prpc.result("pouw_submitJob", raw, 0)
    assert sub == {"transactionHash": "0x" + tx.hash.hex(), "status": "pending", "jobId": None, "blockNumber": None}
    assert (await prpc.error("pouw_submitJob", raw, 0))["message"] == "already known"

    posted_block = mine(node, [tx]).block
    assert posted_block.number == 2
    job = await prpc.result("pouw_getJob", "0x1")
    assert job["status"] == "open" and job["kind"] == "posted"
    assert job["poster"] == to_checksum_address(POSTER)
    assert quantity(job["initialEscrow"]) == escrow == quantity(job["escrowLeft"])
    assert quantity(job["postedBlock"]) == 2 and job["postedTransaction"] == "0x" + tx.hash.hex()
    assert job["stepsDone"] == "0x0" and job["feesPaid"] == "0x0" and job["progress"] == 0.0
    assert job["spec"]["dataset"] == dataset_id and job["spec"]["steps"] == STEPS
    # the same job by block: before the posting it did not exist
    assert await prpc.result("pouw_getJob", 1, "0x1") is None
    assert (await prpc.result("pouw_getJob", 1, "latest"))["id"] == "0x1"
    assert await prpc.result("pouw_getJob", "0x63") is None

    # the miner takes the paid job until its budget is done
    blocks = []
    while True:
        mined = mine(node)
        assert mined.job_id == 1
        blocks.append(mined)
        job = await prpc.result("pouw_getJob", 1)
        if job["status"] == "completed":
            break
        assert len(blocks) < 40
    steps = sum(m.steps for m in blocks)
    assert steps >= STEPS and quantity(job["stepsDone"]) == STEPS and job["progress"] == 1.0  # billed to the budget
    assert quantity(job["feesPaid"]) == min(STEPS * PRICE, escrow)
    assert job["escrowLeft"] == "0x0"  # rest refunded at completion
    assert job["checkpoint"] == "0x" + blocks[-1].block.header.final_state.hex()

    listed = await prpc.result("pouw_listJobs")
    assert [j["id"] for j in listed] == ["0x1", hex(STANDING_JOB_BASE)]
    assert listed[0] == job
    assert await prpc.result("pouw_listJobs", {"status": "open"}) == []
    open_or_standing = await prpc.result("pouw_listJobs", {"status": ["open", "standing"]})
    assert [j["id"] for j in open_or_standing] == [hex(STANDING_JOB_BASE)]
    assert [j["id"] for j in await prpc.result("pouw_listJobs", {"status": ["completed"]})] == ["0x1"]
    assert await prpc.result("pouw_listJobs", {"poster": "0x" + "22" * 20}) == []
    assert [j["id"] for j in await prpc.result("pouw_listJobs", {"fromId": "0x2", "includeStanding": False})] == []
    assert len(await prpc.result("pouw_listJobs", {"limit": 1})) == 1
    for bad_filter in ({"status": "done"}, {"limit": 0}, {"colour": "red"}, "open"):
        assert (await prpc.error("pouw_listJobs", bad_filter))["code"] == -32602

    # the result: a torch model whose predictions match the exact metrics
    result = await prpc.result("pouw_getJobResult", "0x1", {"includeState": True})
    assert result["final"] is True and result["status"] == "completed" and result["format"] == "safetensors"
    from pouw.state import state_hash

    state = bytes.fromhex(result["state"][2:])
    assert "0x" + state_hash(state).hex() == result["checkpoint"] == job["checkpoint"]
    metrics = result["metrics"]
    assert metrics["examples"] == 64 and 0 <= metrics["accuracy"] <= 1
    from safetensors.torch import load as load_safetensors

    from pouw.families import get_family
    from pouw.spec import JobSpec

    tensors = load_safetensors(bytes.fromhex(result["model"][2:]))
    parsed = JobSpec.from_dict(result["spec"])
    family = get_family(parsed.family)
    model = family.to_torch(parsed, family.init_state(parsed, b"\x00" * 32))
    model.load_state_dict(tensors, strict=True)
    ds = dataset_from_bytes(blob)
    with torch.no_grad():
        predicted = model(ds.x_test.float() * result["inputScale"]).argmax(dim=1)
    torch_accuracy = float((predicted == ds.y_test).float().mean())
    assert abs(torch_accuracy - metrics["accuracy"]) <= 0.05, (torch_accuracy, metrics)
    assert "state" not in await prpc.result("pouw_getJobResult", 1)
    assert await prpc.result("pouw_getJobResult", 77) is None
    standing = await prpc.result("pouw_getJobResult", hex(STANDING_JOB_BASE))
    assert standing["final"] is False and standing["metrics"]["examples"] == 297

    # rewards: mature part == the coinbase's balance (it has no other income here)
    rewards = await prpc.result("pouw_getRewards", to_checksum_address(MINER))
    head = chain.head().block_number
    assert quantity(rewards["blocksMined"]) == head == 2 + len(blocks)
    assert quantity(rewards["blockRewards"]) == sum(chain.genesis.block_reward(n) for n in range(1, head + 1))
    assert quantity(rewards["jobFees"]) == quantity(job["feesPaid"])
    total = quantity(rewards["total"])
    assert total == quantity(rewards["blockRewards"]) + quantity(rewards["jobFees"])
    assert quantity(rewards["mature"]) + quantity(rewards["immature"]) == total
    # the posting's priority fee went to the coinbase at once (not a block reward)
    receipt = chain.get_receipts(posted_block)[0]
    tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - posted_block.header.base_fee_per_gas)
    assert quantity(rewards["mature"]) + receipt.gas_used * tip == chain.get_balance(MINER)
    assert quantity(rewards["mature"]) > 0
    assert quantity(rewards["immature"]) > 0 and rewards["coinbaseMaturity"] == "0x2"
    ranged = await prpc.result("pouw_getRewards", to_checksum_address(MINER), "0x3", "0x3")
    assert quantity(ranged["blocksMined"]) == 1 and quantity(ranged["jobFees"]) == blocks[0].steps * PRICE
    nobody = await prpc.result("pouw_getRewards", "0x" + "33" * 20)
    assert nobody["blocksMined"] == "0x0" and nobody["total"] == "0x0"
    assert (await prpc.error("pouw_getRewards", to_checksum_address(MINER), "0x5", "0x2"))["code"] == -32602

    # work proofs: the stored verdict, and a fresh recomputation
    proof = await prpc.result("pouw_getWorkProof", hex(blocks[0].block.number), {"recheck": True, "includeCommitments": True})
    header = blocks[0].block.header
    assert proof["jobId"] == "0x1" and proof["jobKind"] == "posted"
    m = quantity(proof["segmentSteps"])
    assert quantity(proof["stepCount"]) == header.step_count and quantity(proof["points"]) == len(proof["commitments"])
    assert quantity(proof["commitments"][-1]["step"]) == header.step_count
    assert proof["commitments"][-1]["stateHash"] == proof["finalState"] == "0x" + header.final_state.hex()
    assert all(quantity(c["step"]) % m == 0 for c in proof["commitments"])
    assert proof["verification"]["verdict"] == "ok" and proof["verification"]["source"] == "recheck"
    n = len(proof["commitments"])
    anchored = [quantity(s["segment"]) for s in proof["anchoredSegments"]]
    assert anchored == sorted({1, n - 2, n - 1, n} - {0, -1})
    assert all(2 <= quantity(s["segment"]) <= n - 3 for s in proof["challengedSegments"])
    by_hash = await prpc.result("pouw_getWorkProof", "0x" + header.hash.hex())
    assert by_hash["verification"] == {"verdict": "ok", "source": "import",
                                       "checkedSegments": proof["verification"]["checkedSegments"]}
    assert await prpc.result("pouw_getWorkProof", "0x0") is None
    assert await prpc.result("pouw_getWorkProof", "0x999") is None

    # network statistics
    stats = await prpc.result("pouw_networkStats")
    # the window is measured from block 1: genesis's fixed timestamp is not a block time
    assert quantity(stats["head"]) == head and quantity(stats["blocks"]) == head - 1
    first, last = [await prpc.result("eth_getBlockByNumber", hex(n), False) for n in (1, head)]
    span = quantity(last["timestamp"]) - quantity(first["timestamp"])
    assert stats["averageBlockTime"] == span / (head - 1)
    assert stats["jobs"] == {"open": "0x0", "completed": "0x1", "cancelled": "0x0", "standing": "0x1"}
    assert quantity(stats["totalFeesPaid"]) == quantity(job["feesPaid"])
    assert quantity(stats["workRate"]) > 0 and stats["stepsPerBlock"] > 0
    assert (await prpc.error("pouw_networkStats", "0x0"))["code"] == -32602

    status = await prpc.result("pouw_minerStatus")
    assert status["mining"] is False and status["currentJob"] is None
    assert status["gpus"]["available"] is False or isinstance(status["gpus"], list)
    assert await prpc.result("eth_mining") is False and await prpc.result("eth_hashrate") == "0x0"


async def test_submit_job_waits_for_inclusion(prpc: Rpc, node: ChainBackend) -> None:
    """With a timeout, pouw_submitJob answers once the transaction is mined, with the job id."""
    import asyncio
    import threading

    chain = node.chain
    spec = tiny_spec(steps=50)
    tx = posting(0, spec, PRICE * 50)
    done = threading.Event()

    def mine_when_pending() -> None:
        while not done.is_set():
            pending = node.pending_transactions()
            if pending:
                mine(node, pending)
                return
            done.wait(0.05)

    miner = threading.Thread(target=mine_when_pending)
    miner.start()
    try:
        sub = await asyncio.wait_for(prpc.result("pouw_submitJob", raw_hex(tx), 20), 60)
    finally:
        done.set()
        miner.join()
    assert sub == {"transactionHash": "0x" + tx.hash.hex(), "status": "posted", "jobId": "0x1", "blockNumber": "0x1"}
    assert chain.get_balance(REGISTRY_ADDRESS) >= PRICE * 50
    assert (await prpc.error("pouw_submitJob", raw_hex(tx), 500))["code"] == -32602


async def test_a_noproof_chain_answers_too(rpc: Rpc) -> None:
    """A development (noproof) chain has the registry but no work proofs and no miner."""
    assert await rpc.result("pouw_listJobs") == []
    assert await rpc.result("pouw_getWorkProof", "latest") is None
    stats = await rpc.result("pouw_networkStats")
    assert stats["workRate"] == "0x0" and stats["jobs"]["standing"] == "0x0"
    assert (await rpc.result("pouw_minerStatus"))["mining"] is False
    assert (await rpc.result("pouw_getRewards", "0x" + "11" * 20))["coinbaseMaturity"] == "0x0"


async def test_dataset_upload_endpoint(aiohttp_client: Any) -> None:
    """POST /pouw/datasets takes the raw file, bounded by maxDatasetBytes, not the JSON-RPC body limit."""
    import json

    genesis = pouw_genesis(expected_steps=6, k=3, maturity=2)
    backend = ChainBackend(open_pouw_chain(genesis))
    client = await aiohttp_client(create_app(backend, RpcConfig(port=0, max_body_bytes=4096)))
    blob = dataset_blob()
    assert len(blob) > 4096  # too large for a JSON-RPC body here
    response = await client.post("/pouw/datasets", data=blob, headers={"Content-Type": "application/octet-stream"})
    assert response.status == 200
    info = await response.json()
    from eth_utils import keccak

    assert info["id"] == "0x" + keccak(blob).hex() and info["trainExamples"] == "0x100"
    assert backend.pouw.blobs.has(keccak(blob))
    rpc = Rpc(client)
    assert (await rpc.result("pouw_getDataset", info["id"]))["size"] == hex(len(blob))

    junk = await client.post("/pouw/datasets", data=b"\x00" * 100)
    assert junk.status == 400 and "dataset refused" in (await junk.json())["error"]
    limit = backend.pouw.max_dataset_bytes

    async def endless() -> Any:
        chunk = b"\x00" * (1 << 20)
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    huge = await client.post("/pouw/datasets", data=endless())
    assert huge.status == 413 and "limit" in json.loads(await huge.text())["error"]
    assert (await rpc.result("eth_blockNumber")) == "0x0"  # still serving

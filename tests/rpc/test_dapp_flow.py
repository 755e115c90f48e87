"""The dApp flow through JSON-RPC alone, with web3.py 8 and ``w3.pouw``
(client/web3_module.py), against a real ``pouw-node run --mine`` process: upload a dataset,
estimate and post a job signed by the dApp's own key, watch it train to completion,
download the model into torch, check it against the exact metrics, and read the
miner's rewards and a block's proof of work (rechecked)."""
from __future__ import annotations

import time
from typing import Iterator

import pytest
import torch
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from pouw.state import state_hash
from web3 import Web3
from web3.exceptions import Web3RPCError

from pouw.datasets import dataset_to_bytes
from client.web3_module import RPC_DATASET_MAX_BYTES, PouwModule, model_from_result, rpc_error_message
from tests.rpc.pouw_node import (
    DAPP, GWEI, INPUT_DIM, MINER_COINBASE, NUM_CLASSES, POOR_KEY, MiningNode, job_spec, job_work_units,
    large_dataset_bytes, synthetic_dataset, wait_until,
)

pytestmark = pytest.mark.timeout(180)

PRICE = 2 * GWEI
STEPS = 240


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiningNode]:
    with MiningNode(tmp_path_factory.mktemp("dapp")) as running:
        yield running


@pytest.fixture(scope="module")
def w3(node: MiningNode) -> Web3:
    w3 = Web3(Web3.HTTPProvider(node.url))
    w3.attach_modules({"pouw": PouwModule})
    return w3


def test_dapp_posts_a_job_and_gets_a_trained_model(w3: Web3, node: MiningNode) -> None:
    # --- the catalogue and the dataset ---------------------------------------------------
    families = w3.pouw.task_families()
    assert {f.name for f in families.families} == {"mlp", "cnn"}
    assert isinstance(families.limits.maxStateBytes, int) and families.limits.maxStateBytes > 0
    assert isinstance(families.families[0].example, dict)

    ds = synthetic_dataset()
    blob = dataset_to_bytes(ds)
    info = w3.pouw.put_dataset(blob)
    assert info.id == keccak(blob) and len(info.id) == 32
    assert (info.size, info.trainExamples, info.testExamples) == (len(blob), 512, 128)
    assert list(info.inputShape) == [INPUT_DIM] and info.numClasses == NUM_CLASSES and info.builtin is False
    assert w3.pouw.put_dataset(blob).id == info.id  # the same bytes twice is fine
    assert w3.pouw.get_dataset(info.id).size == len(blob)
    assert bytes(w3.pouw.get_dataset(info.id.to_0x_hex(), include_data=True).data) == blob
    assert w3.pouw.get_dataset(b"\x01" * 32) is None
    with pytest.raises(Web3RPCError) as refused:
        w3.pouw.put_dataset(b"not a dataset")
    assert refused.value.rpc_response["error"]["code"] == -32000
    large = large_dataset_bytes()  # over the JSON-RPC body limit: sent to POST /pouw/datasets
    assert 2 * len(large) > 5 * 1024 * 1024  # in hex, past the 5 MiB JSON-RPC body limit
    big = w3.pouw.put_dataset(large)
    assert big.id == keccak(large) and big.size == len(large) and big.trainExamples == 120_000
    assert w3.pouw.get_dataset(big.id).size == len(large)
    with pytest.raises(Web3RPCError) as junk:
        w3.pouw.put_dataset(b"\x00" * (RPC_DATASET_MAX_BYTES + 1))
    assert junk.value.rpc_response["error"]["code"] == -32000 and rpc_error_message(junk.value)

    spec = job_spec(info.id.to_0x_hex(), steps=STEPS)
    estimate = w3.pouw.estimate_job(spec, PRICE)
    assert estimate.escrowRequired == STEPS * PRICE and estimate.steps == STEPS
    assert estimate.workUnitsPerStep == job_work_units() and estimate.datasetAvailable is True
    assert estimate.totalWorkUnits == STEPS * estimate.workUnitsPerStep
    with pytest.raises(Web3RPCError) as bad:
        w3.pouw.estimate_job({**spec, "hidden": [0]}, PRICE)
    assert bad.value.rpc_response["error"]["code"] == -32602 and "hidden[0]" in rpc_error_message(bad.value)

    # --- refusals before the pool -----------------------------------------------------------
    missing = {**spec, "dataset": "0x" + "ab" * 32}
    with pytest.raises(Web3RPCError) as no_data:
        w3.pouw.submit_job(DAPP, missing, PRICE, timeout=0)
    assert "upload it" in rpc_error_message(no_data.value)
    with pytest.raises(Web3RPCError) as poor:
        w3.pouw.submit_job(Account.from_key(POOR_KEY), spec, PRICE, timeout=0)
    assert "insufficient funds" in rpc_error_message(poor.value)

    # --- post the job, signed by the dApp ---------------------------------------------------
    before = w3.eth.get_balance(DAPP.address)
    submission = w3.pouw.submit_job(DAPP, spec, PRICE, timeout=30)
    assert submission.status == "posted", submission
    job_id = submission.jobId
    assert isinstance(job_id, int) and job_id >= 1
    receipt = w3.eth.get_transaction_receipt(submission.transactionHash)
    assert receipt.status == 1 and receipt.blockNumber == submission.blockNumber
    assert receipt.to == to_checksum_address("0x0000000000000000000000000000000000000100")
    gas_cost = receipt.gasUsed * receipt.effectiveGasPrice
    assert w3.eth.get_balance(DAPP.address, submission.blockNumber) == before - STEPS * PRICE - gas_cost

    job = w3.pouw.get_job(job_id)
    assert job.kind == "posted" and job.poster == DAPP.address
    assert job.initialEscrow == STEPS * PRICE and job.pricePerStep == PRICE and job.stepBudget == STEPS
    assert job.postedTransaction == submission.transactionHash and job.postedBlock == submission.blockNumber
    assert job.specHash == estimate.specHash and job.spec["dataset"] == spec["dataset"]
    assert job_id in [j.id for j in w3.pouw.list_jobs(poster=DAPP.address)]
    assert all(j.kind == "posted" for j in w3.pouw.list_jobs(include_standing=False))

    # --- watch it train -------------------------------------------------------------------------
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while True:
        job = w3.pouw.get_job(job_id)
        if not seen or job.stepsDone != seen[-1]:
            seen.append(job.stepsDone)
            assert job.progress == pytest.approx(min(1.0, job.stepsDone / STEPS))
            assert job.feesPaid == min(job.stepsDone * PRICE, job.initialEscrow)
        if job.status == "completed":
            break
        assert job.status == "open", job
        assert time.monotonic() < deadline, f"job still at {job.stepsDone}/{STEPS} steps\n{node.log()}"
        time.sleep(0.1)
    assert seen == sorted(seen) and seen[-1] >= STEPS
    assert w3.pouw.wait_for_job(job_id, "completed", timeout=1).status == "completed"
    assert job.progress == 1.0 and job.feesPaid == STEPS * PRICE and job.escrowLeft == 0
    assert job_id in [j.id for j in w3.pouw.list_jobs(status="completed")]
    assert job_id not in [j.id for j in w3.pouw.list_jobs(status="open")]

    # --- the result: a torch model that agrees with the exact metrics ---------------------------
    result = w3.pouw.get_job_result(job_id, include_state=True)
    assert result.final is True and result.status == "completed" and result.format == "safetensors"
    assert result.checkpoint == job.checkpoint and state_hash(result.state) == result.checkpoint
    metrics = result.metrics
    assert metrics.examples == 128 and 0 <= metrics.correct <= 128
    assert metrics.accuracy > 0.5  # four classes: it learned
    model = w3.pouw.load_model(job_id)
    assert isinstance(model, torch.nn.Module)
    with torch.no_grad():
        predictions = model(ds.x_test.float() * 2.0 ** -7).argmax(dim=1)
    torch_accuracy = (predictions == ds.y_test).float().mean().item()
    assert abs(torch_accuracy - metrics.accuracy) <= 0.05, (torch_accuracy, metrics)
    same = model_from_result(result)  # also checks the state against the checkpoint
    for (name, a), (_, b) in zip(model.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), name

    # Anyone can recompute the exact metrics from the canonical state.
    from consensus.engine import backend_for
    from pouw.evaluate import evaluate
    from pouw.spec import JobSpec
    from pouw.state import deserialize_state

    job_spec_obj = JobSpec.from_dict(result.spec)
    exact = evaluate(job_spec_obj, deserialize_state(job_spec_obj, bytes(result.state)), ds.x_test, ds.y_test,
                     backend_for("cpu"))
    assert (exact.correct, exact.accuracy_ppm) == (metrics.correct, metrics.accuracyPpm)

    # --- the blocks that trained it: their proofs, rechecked ---------------------------------------
    head = w3.eth.block_number
    trained = []
    for number in range(submission.blockNumber + 1, head + 1):
        proof = w3.pouw.get_work_proof(number)
        assert proof is not None and proof.verification.verdict == "ok"
        if proof.jobId == job_id:
            trained.append(proof)
    assert trained and sum(p.billedSteps for p in trained) == job.stepsDone
    proof = w3.pouw.get_work_proof(trained[0].blockNumber, recheck=True)
    assert proof.verification.verdict == "ok" and proof.verification.source == "recheck"
    assert proof.miner == to_checksum_address(MINER_COINBASE) and proof.jobKind == "posted"
    assert proof.ticketStep == proof.stepCount
    assert all(1 <= s.firstStep <= s.lastStep <= proof.stepCount for s in proof.challengedSegments + proof.anchoredSegments)
    assert proof.blockHash == w3.eth.get_block(proof.blockNumber).hash
    assert w3.pouw.get_work_proof(0) is None

    # --- the miner's rewards -------------------------------------------------------------------
    rewards = w3.pouw.get_rewards(MINER_COINBASE, 0, head)
    assert rewards.address == to_checksum_address(MINER_COINBASE)
    assert rewards.blocksMined == head and rewards.blockRewards > 0
    assert rewards.jobFees == job.feesPaid == STEPS * PRICE  # the only paid job on this chain
    assert rewards.total == rewards.blockRewards + rewards.jobFees
    assert rewards.mature + rewards.immature == rewards.total and rewards.coinbaseMaturity == 2
    window = w3.pouw.get_rewards(MINER_COINBASE, trained[0].blockNumber, trained[-1].blockNumber)
    assert window.jobFees == STEPS * PRICE and window.blocksMined == trained[-1].blockNumber - trained[0].blockNumber + 1

    status = w3.pouw.miner_status()
    assert status.mining is True and status.coinbase == to_checksum_address(MINER_COINBASE)
    assert status.device == "cpu" and status.blocksMined >= 1
    stats = w3.pouw.network_stats(50)
    assert stats.jobs.completed == 1 and stats.totalFeesPaid == STEPS * PRICE and stats.head >= head

    # --- unknown jobs ---------------------------------------------------------------------------
    assert w3.pouw.get_job(10**6) is None and w3.pouw.get_job_result(10**6) is None


def test_a_short_escrow_trains_until_it_runs_out(w3: Web3, node: MiningNode) -> None:
    """docs/rpc-pouw.md: an escrow below steps x price is accepted; the job is trained
    until its escrow runs out, then it stays open and miners leave it."""
    blob = dataset_to_bytes(synthetic_dataset())
    w3.pouw.put_dataset(blob)
    spec = job_spec("0x" + keccak(blob).hex(), steps=STEPS)
    escrow = 100 * PRICE
    submission = w3.pouw.submit_job(DAPP, spec, PRICE, escrow=escrow, timeout=30)
    assert submission.status == "posted", submission
    job = wait_until(lambda: (j := w3.pouw.get_job(submission.jobId)).escrowLeft == 0 and j, 60,
                     f"the escrow to run out\n{node.log()}")
    assert job.initialEscrow == escrow and job.feesPaid == escrow and job.stepsDone >= 100
    if job.status == "open":  # (one block may have taken it past its budget: then completed)
        head = w3.eth.block_number
        wait_until(lambda: w3.eth.block_number >= head + 3, 30, "three more blocks")
        assert w3.pouw.get_job(submission.jobId).stepsDone == job.stepsDone  # miners skip it now
        assert w3.pouw.get_work_proof("latest").jobId != submission.jobId
    else:
        assert job.status == "completed" and job.stepsDone >= STEPS


def test_async_web3_posts_and_follows_a_job(node: MiningNode) -> None:
    """The same flow with AsyncWeb3 and AsyncPouwModule (runs after the main test)."""
    import asyncio

    from web3 import AsyncWeb3

    from client.web3_module import AsyncPouwModule

    async def flow() -> None:
        w3 = AsyncWeb3(AsyncWeb3.AsyncHTTPProvider(node.url))
        w3.attach_modules({"pouw": AsyncPouwModule})
        blob = dataset_to_bytes(synthetic_dataset())
        info = await w3.pouw.put_dataset(blob)
        large = large_dataset_bytes(110_000)
        assert (await w3.pouw.put_dataset(large)).id == keccak(large)  # POST /pouw/datasets, with aiohttp
        spec = job_spec(info.id.to_0x_hex(), steps=60)
        estimate = await w3.pouw.estimate_job(spec, GWEI)
        assert estimate.escrowRequired == 60 * GWEI
        submission = await w3.pouw.submit_job(DAPP, spec, GWEI, timeout=30)
        assert submission.status == "posted", submission
        job = await w3.pouw.wait_for_job(submission.jobId, "completed", timeout=60, poll_latency=0.1)
        assert job.stepsDone >= 60 and job.feesPaid == 60 * GWEI and job.poster == DAPP.address
        model = await w3.pouw.load_model(submission.jobId)
        assert isinstance(model, torch.nn.Module)
        assert [j.id for j in await w3.pouw.list_jobs(status="completed")][-1] == submission.jobId
        assert (await w3.pouw.get_job(10**6)) is None
        with pytest.raises(Web3RPCError):
            await w3.pouw.estimate_job({**spec, "hidden": [0]})
        await w3.provider.disconnect()

    asyncio.run(flow())

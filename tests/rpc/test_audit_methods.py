"""Audits over JSON-RPC (rpc/audit_methods.py): pouw_auditStatus, the audit member of
pouw_getJob / pouw_getJobResult, pouw_uploadProofState (only a state the block lists is
stored), a proof whose start state is missing refused naming the blob, and the web3
module and job CLI lines that show it."""
from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio
from web3 import Web3

from chain.txpool import TxPool
from client.jobcli import format_audit
from client.web3_module import format_pouw_result
from consensus.auditor import Auditor, audit_block
from consensus.engine import backend_for
from consensus.payload import WorkPayload
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.server import create_app
from tests.chain.helpers import ALICE, BOB, ETHER, GWEI, MINER
from tests.consensus.fraud_helpers import prove_tx, substitute_block
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec
from tests.rpc.conftest import Rpc


@pytest.fixture
def node() -> tuple[ChainBackend, Any]:
    genesis = pouw_genesis(expected_steps=30, k=2, maturity=8)
    chain = open_pouw_chain(genesis)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view(), missing_blobs=chain.engine.missing_transaction_blobs)
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER)])
    mine_block(chain, MINER)
    sub = substitute_block(chain, b"\xcc" * 20, segment=3, job_id=1, seed=11)
    chain.import_block(sub.block, sub.payload)
    return ChainBackend(chain), sub


@pytest_asyncio.fixture
async def prpc(aiohttp_client: Any, node: tuple[ChainBackend, Any]) -> Rpc:
    return Rpc(await aiohttp_client(create_app(node[0], RpcConfig(port=0))))


@pytest.mark.asyncio
async def test_without_an_auditor_jobs_are_unaudited_and_the_status_says_so(prpc: Rpc) -> None:
    assert await prpc.result("pouw_auditStatus") == {"enabled": False}
    job = await prpc.result("pouw_getJob", 1)
    assert job["audit"]["state"] == "unaudited" and job["audit"]["auditedThrough"] is None
    assert job["audit"]["fraudsProven"] == "0x0" and job["audit"]["lastFraud"] is None
    result = await prpc.result("pouw_getJobResult", 1)
    assert result["audit"] == job["audit"]


@pytest.mark.asyncio
async def test_the_auditor_s_findings_reach_the_dapp(prpc: Rpc, node: tuple[ChainBackend, Any]) -> None:
    backend, sub = node
    auditor = Auditor(backend.chain, start_block=1)
    backend.auditor = auditor
    auditor.run_once(limit=10)
    status = await prpc.result("pouw_auditStatus")
    assert status["enabled"] is True and status["auditedThrough"] == "0x3" and status["blocksAudited"] == "0x3"
    assert status["behind"] == "0x0" and status["prover"] is None
    [found] = status["frauds"]
    assert found["blockHash"] == "0x" + sub.block.hash.hex() and found["segment"] == "0x3"
    assert found["status"] == "no-key"
    job = await prpc.result("pouw_getJob", 1)
    assert job["audit"]["state"] == "fraudFound" and job["audit"]["found"][0]["segment"] == "0x3"
    formatted = format_pouw_result(job)
    line = format_audit(formatted.audit)
    assert "FRAUD FOUND" in line and "segment 3" in line
    assert formatted.audit.found[0].blockNumber == 3


@pytest.mark.asyncio
async def test_upload_proof_state_stores_only_the_listed_state(prpc: Rpc, node: tuple[ChainBackend, Any]) -> None:
    backend, sub = node
    chain = backend.chain
    audit = audit_block(chain, sub.block.hash, backend_for("cpu"))
    start = audit.start_state
    assert start is not None
    block_hash = "0x" + sub.block.hash.hex()
    # a proof naming a state the node lacks is refused, naming the blob
    raw = "0x" + prove_tx(BOB, 0, sub.block.hash, 3).encode().hex()
    error = await prpc.error("eth_sendRawTransaction", raw)
    listed = WorkPayload.decode(chain.get_payload(sub.block.hash)).commitments[1]
    assert "not on this node" in error["message"] and listed.hex() in error["message"]
    # bad uploads change nothing
    for params, reason in [
        ((block_hash, "0x3", "0x" + (start + b"\x00").hex()), "does not hash"),
        ((block_hash, "0x1", "0x" + start.hex()), "segment must be 2 or more"),
        ((block_hash, "0x63", "0x" + start.hex()), "out of range"),
        (("0x" + "11" * 32, "0x3", "0x" + start.hex()), "not on this node"),
    ]:
        err = await prpc.error("pouw_uploadProofState", *params)
        assert reason in err["message"], (params[1], err)
        assert not chain.engine.blobs.has(listed)
    assert await prpc.result("pouw_uploadProofState", block_hash, "0x3", "0x" + start.hex()) == "0x" + listed.hex()
    tx_hash = await prpc.result("eth_sendRawTransaction", raw)
    assert tx_hash == Web3.to_hex(prove_tx(BOB, 0, sub.block.hash, 3).hash)


@pytest.mark.asyncio
async def test_upload_proof_state_refuses_blocks_no_proof_could_name(prpc: Rpc, node: tuple[ChainBackend, Any]) -> None:
    """Only the states a proof could still use are stored: a canonical block inside the
    window. A block that fell out of it (or a side branch) is refused, storing nothing."""
    backend, sub = node
    chain = backend.chain
    start = audit_block(chain, sub.block.hash, backend_for("cpu")).start_state
    assert start is not None
    listed = WorkPayload.decode(chain.get_payload(sub.block.hash)).commitments[1]
    for _ in range(8):  # the window (maturity 8) moves past block 3
        mine_block(chain, MINER)
    err = await prpc.error("pouw_uploadProofState", "0x" + sub.block.hash.hex(), "0x3", "0x" + start.hex())
    assert "audit window" in err["message"] and not chain.engine.blobs.has(listed)

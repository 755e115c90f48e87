"""Result integrity end to end, on real node processes (issue 14).

A cheating miner trains a paid job honestly except for one segment of one block, where it
lists a state it did not compute (the honest state with one weight changed) and trains on
from it; it computes its own challenges and publishes only a block whose sampled checks
miss that segment. Two real nodes import its chain, checking every block, and accept it:

* the auditor (``pouw-node run --audit --audit-key-file``) recomputes every block, finds
  the substituted segment, signs a ``proveFraud`` transaction and gossips it;
* the miner (``pouw-node run --mine``) lacks the proof's start state, fetches it from
  the auditor by hash, admits the proof and mines it.

Then, before the cheating block's reward matures: the cheater's reward and fee are gone,
the prover is paid, the job was rolled back to the state before the cheating block and
goes on from there to completion; every block of its final trajectory recomputes honestly
from that state, so the final model is the one an honest trajectory gives.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from consensus.auditor import audit_block
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from consensus.rewards import read_ring_entry
from devnet.kit.processes import SOURCE_ROOT, free_port, wait_rpc
from genesis.format import parse_genesis
from node.cli import main as node_main
from node.node import export_blocks, open_datadir
from tests.chain.helpers import ALICE, BOB, ETHER, GWEI, MINER, address_of
from tests.consensus.fraud_helpers import substitute_block
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis_dict, post_job_tx, tiny_spec

pytestmark = pytest.mark.slow

MATURITY = 60
CHEATER = b"\xcc" * 20
BUDGET = 400


def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        reply = json.loads(answer.read())
    assert "error" not in reply, reply
    return reply["result"]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def cheating_chain(genesis: dict[str, Any], path: Path) -> tuple[bytes, int]:
    """The cheater's chain, written to a block file with its blobs: block 1 posts the job,
    block 2 trains it honestly, block 3 substitutes segment 3. (block 3's hash, segment)"""
    chain = open_pouw_chain(parse_genesis(genesis))
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=BUDGET), price=GWEI, escrow=ETHER)])
    mine_block(chain, MINER)
    sub = substitute_block(chain, CHEATER, segment=3, job_id=1, seed=41)
    chain.import_block(sub.block, sub.payload)
    export_blocks(chain, path)
    return bytes(sub.block.hash), sub.segment


def start(datadir: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], str, int]:
    rpc_port, p2p_port = free_port(), free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--datadir", str(datadir), "--rpc-port", str(rpc_port),
             "--p2p-port", str(p2p_port), *args],
            cwd=SOURCE_ROOT, stdout=out, stderr=out,
        )
    url = f"http://127.0.0.1:{rpc_port}"
    wait_rpc(url, process)
    return process, url, p2p_port


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_a_substituted_state_is_found_proven_slashed_and_trained_over(tmp_path: Path) -> None:
    genesis = pouw_genesis_dict(expected_steps=30, k=2, maturity=MATURITY)
    genesis_file = tmp_path / "genesis.json"
    genesis_file.write_text(json.dumps(genesis))
    block_file = tmp_path / "cheater.rlp"
    cheat_hash, segment = cheating_chain(genesis, block_file)

    # both nodes import the cheater's chain, verifying every block: it passes
    dirs = {name: tmp_path / name for name in ("auditor", "miner")}
    for datadir in dirs.values():
        assert node_main(["init", "--datadir", str(datadir), "--genesis", str(genesis_file)]) == 0
        assert node_main(["import", "--datadir", str(datadir), str(block_file)]) == 0
    key_file = tmp_path / "prover.key"
    key_file.write_text(BOB.to_hex())
    os.chmod(key_file, 0o600)
    prover = "0x" + address_of(BOB).hex()

    auditor, auditor_url, auditor_p2p = start(
        dirs["auditor"], tmp_path / "auditor.log", "--audit", "--audit-from", "1", "--audit-key-file", str(key_file))
    miner = None
    try:
        miner, miner_url, _ = start(dirs["miner"], tmp_path / "miner.log", "--mine", "--coinbase", "0x" + MINER.hex(),
                                    "--peers", f"127.0.0.1:{auditor_p2p}")
        for url in (auditor_url, miner_url):
            assert rpc(url, "eth_getBlockByNumber", "0x3", False)["hash"] == "0x" + cheat_hash.hex()

        # the auditor finds segment 3 of block 3 and proves it; the miner mines the proof
        found = wait_until(lambda: rpc(auditor_url, "pouw_auditStatus")["frauds"], 60, "the auditor's finding")
        assert (found[0]["blockNumber"], found[0]["segment"]) == ("0x3", hex(segment))
        proof_tx = wait_until(lambda: rpc(auditor_url, "pouw_auditStatus")["frauds"][0]["proofTransaction"], 30,
                              "the proof transaction")
        receipt = wait_until(lambda: rpc(miner_url, "eth_getTransactionReceipt", proof_tx), 90, "the proof mined")
        assert receipt["status"] == "0x1", receipt
        proof_block = int(receipt["blockNumber"], 16)
        assert proof_block < 3 + MATURITY, "landed inside the audit window"
        at = hex(proof_block)

        # before maturity: the cheater has nothing, the prover gained, the job went back
        rewards = rpc(miner_url, "pouw_getRewards", "0x" + CHEATER.hex(), "0x0", at)
        assert int(rewards["immature"], 16) == 0 and int(rewards["mature"], 16) == 0
        assert rpc(miner_url, "eth_getBalance", "0x" + CHEATER.hex(), at) == "0x0"
        before, after = (int(rpc(miner_url, "eth_getBalance", prover, hex(n)), 16) for n in (proof_block - 1, proof_block))
        assert after > before, "the bounty exceeds the proof's gas"
        job_then = rpc(miner_url, "pouw_getJob", "0x1", at)
        assert job_then["audit"]["fraudsProven"] == "0x1" and job_then["audit"]["lastFraud"]["segment"] == hex(segment)

        # the job goes on from the honest state to completion, and the auditor agrees
        wait_until(lambda: rpc(miner_url, "pouw_getJob", "0x1")["status"] == "completed", 180, "the job's completion")
        head = int(rpc(miner_url, "eth_blockNumber"), 16)
        wait_until(lambda: int(rpc(auditor_url, "eth_blockNumber"), 16) >= head, 60, "the auditor at the miner's head")
        audit = wait_until(lambda: (a := rpc(auditor_url, "pouw_getJob", "0x1")["audit"])["state"] == "audited" and a,
                           120, "the auditor through the job's blocks")
        assert audit["complete"] is True and audit["fraudsProven"] == "0x1"
        final = rpc(miner_url, "pouw_getJob", "0x1")
        assert int(final["stepsDone"], 16) == BUDGET
    finally:
        if miner is not None:
            stop(miner)
        stop(auditor)

    # recomputed here, from the miner's datadir: the job's final trajectory starts at the
    # state block 2 left (the last honest one) and every block of it is honest
    with open_datadir(dirs["miner"]) as datadir:
        chain = datadir.chain
        entry = read_ring_entry(chain.state_at(chain.get_header_by_hash(chain.get_canonical_hash(proof_block))),
                                3, MATURITY)
        assert entry is not None and entry.slashed and entry.reward == 0
        block2 = chain.get_header_by_hash(chain.get_canonical_hash(2))
        assert int.from_bytes(block2.job_id, "big") == 1 and entry.checkpoint_before == bytes(block2.final_state)
        trajectory = []
        for number in range(proof_block + 1, chain.head().block_number + 1):
            header = chain.get_header_by_hash(chain.get_canonical_hash(number))
            if int.from_bytes(header.job_id, "big") == 1:
                trajectory.append(header)
        assert trajectory, "the job was trained after the proof"
        assert bytes(trajectory[0].start_checkpoint) == entry.checkpoint_before
        for previous, header in zip(trajectory, trajectory[1:]):
            assert bytes(header.start_checkpoint) == bytes(previous.final_state)
        assert bytes(trajectory[-1].final_state) == bytes.fromhex(final["checkpoint"][2:])
        backend = backend_for("cpu")
        assert all(audit_block(chain, h.hash, backend).honest for h in trajectory)
        assert LevelDBBlobStore(chain.db).has(bytes.fromhex(found[0]["startState"][2:])), "fetched from the auditor"

"""The auditor (consensus/auditor.py): finds the one substituted segment, proves it with
its own key through the pool, reports it to the dApp, resumes after a restart, follows
a reorg, and gives the same verdicts in worker processes as inline."""
from __future__ import annotations

from typing import Any

import pytest

from chain.txpool import TxPool
from consensus.auditor import Auditor, AuditRunner, audit_block, job_audit_view
from consensus.engine import backend_for
from consensus.rewards import read_ring_entry
from tests.chain.helpers import ALICE, BOB, ETHER, GWEI, MINER, address_of
from tests.consensus.fraud_helpers import substitute_block
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec

MATURITY = 8


def _chain_with_fraud(seed: int = 3) -> tuple[Any, Any]:
    """Block 1 posts job 1, block 2 trains it honestly, block 3 lies at segment 3."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=30, k=2, maturity=MATURITY))
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER)])
    mine_block(chain, MINER)
    sub = substitute_block(chain, b"\xcc" * 20, segment=3, job_id=1, seed=seed)
    chain.import_block(sub.block, sub.payload)
    return chain, sub


def _pool(chain: Any) -> TxPool:
    pool = TxPool(chain.genesis.chain_id, chain.state_view(), missing_blobs=chain.engine.missing_transaction_blobs)
    chain.txpool = pool
    return pool


def test_the_auditor_finds_the_lie_proves_it_and_tells_the_dapp() -> None:
    chain, sub = _chain_with_fraud()
    pool = _pool(chain)
    assert job_audit_view(chain, 1, None).state == "unaudited"
    auditor = Auditor(chain, key=BOB, submit=pool.add, nonce_of=pool.next_nonce, start_block=1)
    audits = auditor.run_once(limit=10)
    assert [(a.number, a.fraud_segment) for a in audits] == [(1, None), (2, None), (3, 3)]
    assert auditor.verdict(sub.block.hash) == 3 and auditor.audited_through() == 3
    [found] = auditor.frauds
    assert (found.number, found.segment, found.status) == (3, 3, "submitted")
    assert found.first_step <= found.last_step and found.proof_tx is not None
    assert pool.get(found.proof_tx) is not None, "the proof waits in the pool, to be mined and gossiped"
    view = job_audit_view(chain, 1, auditor)
    assert view.state == "fraudFound" and view.found[0].segment == 3

    bob_before = chain.get_balance(address_of(BOB))
    proof = mine_block(chain, MINER, list(pool.pending())).block
    assert chain.get_receipts(proof)[0].state_root == b"\x01", "the auditor's proof succeeded"
    assert chain.get_balance(address_of(BOB)) > bob_before, "the bounty exceeds the gas"
    entry = read_ring_entry(chain.state_at(chain.head()), sub.block.number, MATURITY)
    assert entry is not None and entry.slashed
    auditor.refresh()
    assert auditor.frauds[0].status == "proven"
    view = job_audit_view(chain, 1, auditor)
    assert view.state == "fraudProven" and view.frauds_proven == 1 and view.last_fraud is not None
    assert (view.last_fraud.number, view.last_fraud.segment) == (3, 3)
    # the job goes on from the honest state; once those blocks are audited, the result is
    mine_block(chain, MINER)
    auditor.run_once(limit=10)
    view = job_audit_view(chain, 1, auditor)
    assert view.state == "audited" and view.complete and view.audited_through == chain.head().block_number
    auditor.stop()


def test_without_a_key_the_fraud_is_reported_and_its_start_state_kept_for_anyone() -> None:
    chain, sub = _chain_with_fraud(seed=4)
    auditor = Auditor(chain, start_block=1)
    auditor.run_once(limit=10)
    [found] = auditor.frauds
    assert found.status == "no-key"
    assert chain.engine.blobs.has(found.start_state_hash), "stored: a proof by anyone passes the pool"
    assert not chain.engine.missing_transaction_blobs(_prove_raw(sub.block.hash, 3))


def _prove_raw(block_hash: bytes, segment: int) -> Any:
    from tests.consensus.fraud_helpers import prove_tx

    return prove_tx(ALICE, 1, block_hash, segment)


def test_a_block_past_the_window_is_recorded_not_proven() -> None:
    chain, sub = _chain_with_fraud(seed=5)
    for _ in range(MATURITY):
        mine_block(chain, MINER)
    pool = _pool(chain)
    auditor = Auditor(chain, key=BOB, submit=pool.add, nonce_of=pool.next_nonce, start_block=1)
    auditor.run_once(limit=4)
    assert [f.status for f in auditor.frauds] == ["past-window"]
    assert not list(pool.pending())


def test_the_cursor_survives_a_restart_and_follows_a_reorg() -> None:
    chain, sub = _chain_with_fraud(seed=6)
    first = Auditor(chain, start_block=1)
    first.run_once(limit=2)
    assert first.audited_through() == 2
    again = Auditor(chain, start_block=99)  # the stored cursor wins over a new start
    assert again.first == 1 and again.audited_through() == 2
    assert [a.number for a in again.run_once(limit=5)] == [3]
    # a heavier branch from block 2 replaces block 3: the audited range ends at 2 again
    other = open_pouw_chain(chain.genesis)
    for n in (1, 2):
        block = chain.get_block_by_hash(chain.get_canonical_hash(n))
        other.import_block(block.copy(), chain.get_payload(block.hash))
    fork = [mine_block(other, BOB_ADDRESS).block for _ in range(2)]
    for block in fork:
        chain.import_block(block.copy(), other.get_payload(block.hash))
    assert chain.head().hash == fork[-1].hash
    assert again.audited_through() == 2
    assert [(a.number, a.honest) for a in again.run_once(limit=5)] == [(3, True), (4, True)]


BOB_ADDRESS = address_of(BOB)


def test_worker_processes_give_the_inline_verdicts() -> None:
    chain, sub = _chain_with_fraud(seed=7)
    hashes = [chain.get_canonical_hash(n) for n in (1, 2, 3)]
    runner = AuditRunner(chain, workers=2)
    try:
        parallel = runner.audit(hashes)
    finally:
        runner.close()
    inline = [audit_block(chain, h, backend_for("cpu")) for h in hashes]
    assert [(a.number, a.fraud_segment, a.start_state) for a in parallel] == \
        [(a.number, a.fraud_segment, a.start_state) for a in inline]
    assert parallel[2].fraud_segment == 3


def test_invalid_blocks_to_audit_are_refused_with_a_reason() -> None:
    from consensus.audit import AuditError

    chain, _ = _chain_with_fraud(seed=8)
    with pytest.raises(AuditError, match="carries no work"):
        audit_block(chain, chain.genesis_hash, backend_for("cpu"))
    with pytest.raises(AuditError, match="not on this node"):
        audit_block(chain, b"\x11" * 32, backend_for("cpu"))


def test_a_block_whose_audit_fails_is_skipped_not_a_stall_and_never_counted_honest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block whose audit raises (for a reason of its own, not a missing blob) must not
    stop the auditor at that block forever: it is recorded as unaudited, reported, and
    the auditor goes on; the job it trained is never reported fully audited."""
    import consensus.auditor as auditor_module

    chain, sub = _chain_with_fraud(seed=9)
    mine_block(chain, MINER)
    real = auditor_module.prepare_audit

    def broken(chain_: Any, block_hash: bytes) -> Any:
        if bytes(block_hash) == bytes(chain.get_canonical_hash(2)):
            raise ValueError("a payload this node cannot read")
        return real(chain_, block_hash)

    monkeypatch.setattr(auditor_module, "prepare_audit", broken)
    auditor = Auditor(chain, start_block=1)
    audits = auditor.run_once(limit=10)
    assert [a.number for a in audits] == [1, 3, 4]
    assert auditor.audited_through() == 4, "went on past the block"
    status = auditor.status()
    assert [(s.number, s.job_id) for s in status.skipped] == [(2, 1)] and "cannot read" in status.skipped[0].reason
    assert auditor.verdict(chain.get_canonical_hash(2)) == -1
    view = job_audit_view(chain, 1, auditor)
    assert not view.complete and view.state != "audited"
    assert auditor.run_once(limit=10) == [], "nothing left: no retry loop on the skipped block"
    auditor.stop()


def test_a_missing_blob_makes_the_auditor_wait_not_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    from chain.errors import WorkBlobMissing
    import consensus.auditor as auditor_module

    chain, _ = _chain_with_fraud(seed=10)
    real = auditor_module.prepare_audit
    missing = {"on": True}

    def not_yet(chain_: Any, block_hash: bytes) -> Any:
        if missing["on"] and bytes(block_hash) == bytes(chain.get_canonical_hash(2)):
            raise WorkBlobMissing("checkpoint not fetched yet", blob_hash=b"\x01" * 32)
        return real(chain_, block_hash)

    monkeypatch.setattr(auditor_module, "prepare_audit", not_yet)
    auditor = Auditor(chain, start_block=1)
    assert [a.number for a in auditor.run_once(limit=10)] == [1]
    assert auditor.audited_through() == 1 and "not fetched" in (auditor.last_error or "")
    missing["on"] = False
    assert [a.number for a in auditor.run_once(limit=10)] == [2, 3]
    assert not auditor.status().skipped
    auditor.stop()

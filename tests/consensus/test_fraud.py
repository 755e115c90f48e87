"""Audits and one-segment fraud proofs, in process (consensus/audit.py, consensus/fraud.py).

The attacker: a miner that substitutes one state in one block and publishes only blocks
whose challenges miss it (tests/consensus/fraud_helpers.py), so the block is accepted;
then the strongest things it and others can do against the proof path: front-run the
proof, prove false or replayed fraud, name blocks outside the window, withhold the blob.
"""
from __future__ import annotations

from typing import Any

import pytest

from chain.errors import WorkBlobMissing
from chain.txpool import BlobNotHere, TxPool
from consensus.auditor import audit_block
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from consensus.fraud import BOUNTY_DIVISOR, TOPIC_FRAUD, read_audit
from consensus.registry import STATUS_COMPLETED, STATUS_OPEN, read_job
from consensus.rewards import immature_balance, read_ring_entry
from tests.chain.helpers import ALICE, BOB, CAROL, ETHER, GWEI, MINER, address_of
from tests.consensus.fraud_helpers import PROOF_TIP, prove_tx, substitute_block
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec

CHEATER = b"\xcc" * 20
MATURITY = 8
PRICE = GWEI


def _chain() -> Any:
    return open_pouw_chain(pouw_genesis(expected_steps=30, k=2, maturity=MATURITY))


def _state(chain: Any) -> Any:
    return chain.state_at(chain.head())


def _job(chain: Any, job_id: int = 1) -> Any:
    return read_job(_state(chain), job_id, chain.engine_class.config)


def _registry_storage(chain: Any) -> dict[int, int]:
    """Every registry slot a proof may touch, by reading the job, ring and audit records."""
    state = _state(chain)
    job = _job(chain)
    ring = [read_ring_entry(state, n, MATURITY) for n in range(chain.head().block_number + 1)]
    return {"job": job, "ring": ring, "audit": read_audit(state, 1)}  # type: ignore[return-value]


def _receipt(chain: Any, block: Any, index: int = 0) -> Any:
    return chain.get_receipts(block)[index]


@pytest.fixture(scope="module")
def cheated() -> dict[str, Any]:
    """Block 1 posts job 1 (budget 400 steps), block 2 trains it honestly, block 3 (B) is
    the substituted one (accepted), block 4 (C) trains on from B's poisoned checkpoint in
    good faith."""
    chain = _chain()
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=PRICE, escrow=ETHER)])
    mine_block(chain, MINER)
    sub = substitute_block(chain, CHEATER, segment=3, job_id=1)
    chain.import_block(sub.block, sub.payload)  # sampled verification misses the substitute
    good = mine_block(chain, MINER)
    assert good.job_id == 1
    return {"chain": chain, "B": sub.block, "C": good.block, "segment": sub.segment}


def test_an_audit_finds_the_substituted_segment_and_nothing_else(cheated: dict[str, Any]) -> None:
    chain = cheated["chain"]
    backend = backend_for("cpu")
    found = audit_block(chain, cheated["B"].hash, backend)
    assert found.fraud_segment == cheated["segment"] and found.start_state is not None
    assert audit_block(chain, cheated["C"].hash, backend).honest  # honest training from a bad start
    assert audit_block(chain, chain.get_canonical_hash(2), backend).honest


def test_a_fraud_proof_slashes_pays_the_prover_and_rolls_the_job_back(cheated: dict[str, Any]) -> None:
    chain, b, c, j = cheated["chain"], cheated["B"], cheated["C"], cheated["segment"]
    state = _state(chain)
    entry_b = read_ring_entry(state, b.number, MATURITY)
    entry_c = read_ring_entry(state, c.number, MATURITY)
    assert entry_b is not None and entry_c is not None and entry_b.fee > 0 and entry_c.fee > 0
    escrow_before = _job(chain).escrow
    assert immature_balance(state, chain.head().block_number, CHEATER, MATURITY) == entry_b.reward + entry_b.fee
    audit = audit_block(chain, b.hash, backend_for("cpu"))
    LevelDBBlobStore(chain.db).put_state(audit.start_state)  # the prover's upload
    bob_before = chain.get_balance(address_of(BOB))
    proof = mine_block(chain, MINER, [prove_tx(BOB, 0, b.hash, j)]).block
    receipt = _receipt(chain, proof)
    assert receipt.state_root == b"\x01", "the proof transaction succeeded"
    assert [log.topics[0] for log in receipt.logs] == [int.from_bytes(TOPIC_FRAUD, "big")]
    bounty = entry_b.reward // BOUNTY_DIVISOR
    gas_cost = receipt.gas_used * (proof.header.base_fee_per_gas + PROOF_TIP)
    assert chain.get_balance(address_of(BOB)) - bob_before == bounty - gas_cost
    state = _state(chain)
    slashed = read_ring_entry(state, b.number, MATURITY)
    assert slashed is not None and slashed.slashed and slashed.reward == slashed.fee == 0
    assert immature_balance(state, chain.head().block_number, CHEATER, MATURITY) == 0
    kept = read_ring_entry(state, c.number, MATURITY)
    assert kept is not None and kept.reward == entry_c.reward and kept.fee == 0  # good faith: reward kept
    job = _job(chain)
    assert (job.steps_done, job.checkpoint) == (entry_b.steps_before, entry_b.checkpoint_before)
    assert job.escrow == escrow_before + entry_b.fee + entry_c.fee  # the proof block trained nothing
    record = read_audit(state, 1)
    assert (record.frauds, record.last_block_number, record.last_segment) == (1, b.number, j)
    assert record.last_block_hash == b.hash and record.epoch == 1
    cheated["proof"] = proof


def test_a_replayed_proof_is_refused_without_changing_state(cheated: dict[str, Any]) -> None:
    chain, b, j = cheated["chain"], cheated["B"], cheated["segment"]
    assert "proof" in cheated, "runs after the proof landed"
    before = _registry_storage(chain)
    replay = mine_block(chain, MINER, [prove_tx(BOB, 1, b.hash, j)]).block
    assert _receipt(chain, replay).state_root == b""  # reverted
    after = _registry_storage(chain)
    assert after["audit"] == before["audit"] and after["ring"][: b.number + 1] == before["ring"][: b.number + 1]


def test_the_job_continues_from_the_honest_state_to_an_unpoisoned_result(cheated: dict[str, Any]) -> None:
    """Mined to completion after the rollback: every block since trains the job from the
    state before B, each from the previous one's result, and every one audits honest;
    so the final model is an honest trajectory from the last honest state."""
    chain, b = cheated["chain"], cheated["B"]
    rolled_back_to = read_ring_entry(_state(chain), b.number, MATURITY)
    assert rolled_back_to is not None
    start = cheated["proof"].number + 1
    while _job(chain).status == STATUS_OPEN:
        mine_block(chain, MINER)
    job = _job(chain)
    assert job.status == STATUS_COMPLETED and job.steps_done == job.budget
    trained = [chain.get_block_by_number(n).header for n in range(start, chain.head().block_number + 1)]
    trained = [h for h in trained if int.from_bytes(h.job_id, "big") == 1]
    assert trained and trained[0].start_checkpoint == b.header.start_checkpoint
    for prev, nxt in zip(trained, trained[1:]):
        assert nxt.start_checkpoint == prev.final_state
    assert job.checkpoint == trained[-1].final_state
    assert all(audit_block(chain, h.hash, backend_for("cpu")).honest for h in trained)


def test_a_false_proof_is_refused_and_costs_its_sender_the_gas() -> None:
    chain = _chain()
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=1000), price=PRICE, escrow=ETHER)])
    honest = mine_block(chain, MINER).block
    before = _registry_storage(chain)
    carol_before = chain.get_balance(address_of(CAROL))
    block = mine_block(chain, MINER, [prove_tx(CAROL, 0, honest.hash, 1)]).block
    receipt = _receipt(chain, block)
    assert receipt.state_root == b"" and receipt.gas_used > 100_000
    assert carol_before - chain.get_balance(address_of(CAROL)) == receipt.gas_used * (block.header.base_fee_per_gas + PROOF_TIP)
    after = _registry_storage(chain)
    assert after["audit"] == before["audit"]
    assert after["ring"][honest.number] == before["ring"][honest.number]


@pytest.mark.parametrize("target", ["unknown", "too-old", "segment-out-of-range"])
def test_proofs_outside_the_rules_are_refused(target: str) -> None:
    chain = _chain()
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=100_000), price=PRICE, escrow=ETHER)])
    old = mine_block(chain, MINER).block
    if target == "too-old":
        for _ in range(MATURITY):
            mine_block(chain, MINER)
    block_hash = b"\x42" * 32 if target == "unknown" else old.hash
    segment = 10_000 if target == "segment-out-of-range" else 1
    before = read_audit(_state(chain), 1)
    block = mine_block(chain, MINER, [prove_tx(CAROL, 0, block_hash, segment)]).block
    assert _receipt(chain, block).state_root == b""
    assert read_audit(_state(chain), 1) == before


def test_a_proof_whose_blob_is_withheld_is_refused_by_the_pool_and_fetched_by_validators() -> None:
    """The pool takes a proof only with its start state here; a validator that lacks the
    state gets WorkBlobMissing (transient: fetch by hash, retry) and nothing is written."""
    genesis = pouw_genesis(expected_steps=30, k=2, maturity=MATURITY)
    chain = open_pouw_chain(genesis)
    validator = open_pouw_chain(genesis)
    blocks = [mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=1000), price=PRICE, escrow=ETHER)])]
    sub = substitute_block(chain, CHEATER, segment=3, job_id=1, seed=1)
    chain.import_block(sub.block, sub.payload)
    for mined in blocks:
        validator.import_block(mined.block.copy(), mined.payload)
    validator.import_block(sub.block.copy(), sub.payload)
    audit = audit_block(chain, sub.block.hash, backend_for("cpu"))
    assert audit.fraud_segment == 3 and audit.start_state is not None
    tx = prove_tx(BOB, 0, sub.block.hash, 3)
    pool = TxPool(genesis.chain_id, chain.state_view(), missing_blobs=chain.engine.missing_transaction_blobs)
    with pytest.raises(BlobNotHere) as refused:
        pool.add(tx)
    want = refused.value.blob_hash
    LevelDBBlobStore(chain.db).put_state(audit.start_state)
    assert pool.add(tx) == tx.hash
    proof = mine_block(chain, MINER, [tx])
    with pytest.raises(WorkBlobMissing) as missing:
        validator.import_block(proof.block.copy(), proof.payload)
    assert missing.value.blob_hash == want
    assert validator.head().hash == sub.block.hash  # nothing written
    LevelDBBlobStore(validator.db).put_state(audit.start_state)  # what p2p fetches by that hash
    validator.import_block(proof.block.copy(), proof.payload)
    assert validator.head().hash == chain.head().hash == proof.block.hash


def test_the_cheater_front_running_its_own_proof_still_loses() -> None:
    """The strongest response of a caught cheater: prove its own fraud first and collect
    the bounty. It keeps only the bounty: three quarters of the reward and all the fee are
    gone, and the job is rolled back all the same."""
    from eth_keys import keys

    chain = _chain()
    cheater_key = keys.PrivateKey(b"\x0c" * 32)
    cheater = address_of(cheater_key)
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=1000), price=PRICE, escrow=ETHER),
                              _fund(ALICE, 1, cheater)])
    sub = substitute_block(chain, cheater, segment=3, job_id=1, seed=2)
    chain.import_block(sub.block, sub.payload)
    entry = read_ring_entry(_state(chain), sub.block.number, MATURITY)
    assert entry is not None
    LevelDBBlobStore(chain.db).put_state(audit_block(chain, sub.block.hash, backend_for("cpu")).start_state)
    proof = mine_block(chain, MINER, [prove_tx(cheater_key, 0, sub.block.hash, 3)]).block
    assert _receipt(chain, proof).state_root == b"\x01"
    assert _job(chain).steps_done == entry.steps_before  # rolled back all the same
    for _ in range(MATURITY):
        mine_block(chain, MINER)  # B's entry matures: nothing left to credit
    gained = chain.get_balance(cheater) - ETHER
    assert gained <= entry.reward // BOUNTY_DIVISOR
    assert gained < entry.reward + entry.fee
    assert read_audit(_state(chain), 1).frauds == 1


def _fund(key: Any, nonce: int, to: bytes) -> Any:
    from tests.chain.helpers import transfer

    return transfer(key, nonce, to, ETHER)

"""Red-team attacks on one-segment fraud proofs and slashing (consensus/fraud.py,
consensus/rewards.py). Claims that held are pinned as ordinary tests; claims that broke
are ``xfail(strict=True)`` with the reason, so they document the bug until it is fixed.
"""
from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode

from chain.schema import work_payload
from chain.txpool import TxPool
from consensus.audit import job_before
from consensus.auditor import audit_block
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from consensus.fraud import (
    GAS_PROVE_BASE, GAS_PROVE_PER_ENTRY, SEL_PROVE, WORK_UNITS_PER_GAS, encode_prove_fraud, read_audit,
)
from consensus.jobs import checkpoint_state_bytes, load_dataset
from consensus.params import REGISTRY_ADDRESS
from consensus.payload import WorkPayload
from consensus.registry import STATUS_CANCELLED, STATUS_OPEN, encode_cancel_job, read_job
from consensus.rewards import read_ring_entry
from genesis.format import parse_genesis
from pouw.commit import accumulator_chain, batch_accumulator_index, max_segment_steps, seal_seed, trajectory_points
from pouw.state import deserialize_state, serialize_state
from pouw.engine import run_segment
from tests.chain.helpers import ALICE, BOB, CAROL, ETHER, GWEI, MINER, address_of, sign_tx
from tests.consensus.fraud_helpers import PROOF_TIP, prove_tx, substitute_block
from tests.consensus.helpers import STANDING_ID, mine_block, open_pouw_chain, pouw_genesis_dict, post_job_tx, tiny_spec

MATURITY = 8
CHEATER = b"\xcc" * 20
PROXY = b"\x77" * 20
"""A contract that forwards its calldata to the registry with all its gas (CALLDATACOPY;
CALL(gas, REGISTRY, 0, 0, calldatasize, 0, 0); STOP)."""
PROXY_RUNTIME = bytes.fromhex("36600060003760006000366000600073") + REGISTRY_ADDRESS + bytes.fromhex("5af100")


def _genesis() -> Any:
    raw = pouw_genesis_dict(expected_steps=30, k=2, maturity=MATURITY, maxAdjustUpPercent=1, maxAdjustDownPercent=1)
    raw["alloc"]["0x" + PROXY.hex()] = {"balance": "0x0", "code": "0x" + PROXY_RUNTIME.hex()}  # type: ignore[index]
    return parse_genesis(raw)


def _state(chain: Any) -> Any:
    return chain.state_at(chain.head())


def _config(chain: Any) -> Any:
    return chain.engine_class.config


def _registry_view(chain: Any, job_ids: tuple[int, ...]) -> dict[str, Any]:
    """What a proof may touch: jobs, ring entries still held, audit records, balances."""
    state = _state(chain)
    head = chain.head().block_number
    return {
        "jobs": [read_job(state, j, _config(chain)) for j in job_ids],
        "ring": {n: read_ring_entry(state, n, MATURITY) for n in range(max(0, head - MATURITY + 1), head + 1)},
        "audit": [read_audit(state, j) for j in job_ids],
        "registry": chain.get_balance(REGISTRY_ADDRESS),
    }


def _store_every_start_state(chain: Any, block_hash: bytes) -> int:
    """An honest prover's best effort: recompute the block and store every segment's start
    state (so no proof is refused for a missing blob). Returns the number of segments."""
    header = chain.get_header_by_hash(block_hash)
    job = job_before(chain, header)
    assert job.spec is not None
    blobs = LevelDBBlobStore(chain.db)
    payload = WorkPayload.decode(bytes(chain.db[work_payload(block_hash)]))
    points = trajectory_points(header.step_count, payload.m, job.budget_left)
    seed = seal_seed(header.mining_hash, header.coinbase, job.job_id, header.start_checkpoint, payload.m)
    accs = accumulator_chain(seed, payload.commitments)
    dataset = load_dataset(job.spec, blobs, 1 << 30)
    state = deserialize_state(job.spec, checkpoint_state_bytes(job, blobs))
    first = 1
    for j, last in enumerate(points, start=1):
        state = run_segment(job.spec, dataset, state, accs[batch_accumulator_index(j)], first, last, backend_for("cpu"))
        blobs.put_state(serialize_state(job.spec, state))
        first = last + 1
    return len(points)


# --- claim 1: an honest block can never be proven fraudulent ---------------------------------


@pytest.mark.parametrize("kind", ["standing", "budget-point"])
def test_no_segment_of_an_honest_block_proves_fraud(kind: str) -> None:
    """Every segment of an honest block (a standing job's, with no budget; a posted job's
    last block, whose budget ends inside it), each start state stored: all revert, and the
    registry, jobs, ring and audit records are exactly as before."""
    chain = open_pouw_chain(_genesis())
    if kind == "standing":
        target = mine_block(chain, MINER).block
        assert int.from_bytes(target.header.job_id, "big") == STANDING_ID
    else:
        mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=35), price=GWEI, escrow=ETHER)])
        while read_job(_state(chain), 1, _config(chain)).status == STATUS_OPEN:
            target = mine_block(chain, MINER).block
        assert int.from_bytes(target.header.job_id, "big") == 1  # completed inside it, at its budget point
        assert target.header.step_count > 35 - read_ring_entry(_state(chain), target.number, MATURITY).steps_before
    n = _store_every_start_state(chain, target.hash)
    assert n >= 2
    jobs = (1, STANDING_ID)
    before = _registry_view(chain, jobs)
    carol = chain.get_balance(address_of(CAROL))
    proofs = [prove_tx(CAROL, j - 1, target.hash, j) for j in range(1, n + 1)]
    block = mine_block(chain, MINER, proofs).block
    receipts = chain.get_receipts(block)
    assert all(r.state_root == b"" for r in receipts), "every proof reverts"
    after = _registry_view(chain, jobs)
    assert after["audit"] == before["audit"]
    assert all(after["ring"][n] == e for n, e in before["ring"].items() if n in after["ring"])
    used = receipts[-1].gas_used  # cumulative: every proof's gas
    assert carol - chain.get_balance(address_of(CAROL)) == used * (block.header.base_fee_per_gas + PROOF_TIP)


@pytest.mark.parametrize("calldata", ["segment-0", "segment-2^256-1", "short", "uncle"])
def test_malformed_or_foreign_proofs_revert_and_change_nothing(calldata: str) -> None:
    chain = open_pouw_chain(_genesis())
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=1000), price=GWEI, escrow=ETHER)])
    honest = mine_block(chain, MINER).block
    if calldata == "uncle":  # a sibling of the canonical block, stored here, never canonical
        other = open_pouw_chain(_genesis())
        for n in range(1, honest.number):
            block = chain.get_block_by_number(n)
            other.import_block(block.copy(), bytes(chain.db[work_payload(block.hash)]))
        side = mine_block(other, CHEATER, dt=7)
        chain.import_block(side.block.copy(), side.payload)
        assert chain.get_canonical_hash(side.block.number) == honest.hash != side.block.hash
        mine_block(chain, MINER)
        data = encode_prove_fraud(side.block.hash, 1)
    elif calldata == "short":
        data = SEL_PROVE + abi_encode(["bytes32", "uint256"], [honest.hash, 1])[:40]
    else:
        data = encode_prove_fraud(honest.hash, 0 if calldata == "segment-0" else 2**256 - 1)
    before = _registry_view(chain, (1,))
    tx = sign_tx(CAROL, 0, REGISTRY_ADDRESS, data=data, gas=3_000_000, tip=PROOF_TIP)
    block = mine_block(chain, MINER, [tx]).block
    assert chain.get_receipts(block)[0].state_root == b""
    after = _registry_view(chain, (1,))
    assert after["audit"] == before["audit"]
    assert all(after["ring"][n] == e for n, e in before["ring"].items() if n in after["ring"])
    new = after["ring"][block.number]  # the proof's block trained on from where the job was: no rollback
    job = before["jobs"][0]
    assert new is not None and (new.steps_before, new.checkpoint_before) == (job.steps_done, job.checkpoint)


# --- claim 3: the accounting identity across fraud, rollback, completion, cancellation -------


def _immature_fees(chain: Any) -> int:
    state = _state(chain)
    head = chain.head().block_number
    return sum(e.fee for n in range(max(0, head - MATURITY + 1), head + 1)
               if (e := read_ring_entry(state, n, MATURITY)) is not None)


def _check_registry_balance(chain: Any, job_ids: tuple[int, ...]) -> None:
    state = _state(chain)
    open_escrow = sum(j.escrow for i in job_ids if (j := read_job(state, i, _config(chain))) is not None
                      and j.status == STATUS_OPEN)
    assert chain.get_balance(REGISTRY_ADDRESS) == open_escrow + _immature_fees(chain)


def test_the_registry_balance_identity_holds_across_fraud_rollback_completion_and_cancellation() -> None:
    chain = open_pouw_chain(_genesis())
    jobs = (1, 2)
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=150), price=GWEI, escrow=ETHER),
                              post_job_tx(BOB, 0, tiny_spec(steps=10_000, hidden=5), price=2 * GWEI, escrow=ETHER)])
    _check_registry_balance(chain, jobs)
    b1 = substitute_block(chain, CHEATER, segment=3, job_id=1, seed=11)
    chain.import_block(b1.block, b1.payload)
    b2 = substitute_block(chain, CHEATER, segment=3, job_id=2, seed=12)
    chain.import_block(b2.block, b2.payload)
    mine_block(chain, MINER, [sign_tx(BOB, 1, REGISTRY_ADDRESS, data=encode_cancel_job(2), gas=200_000, tip=0)])
    assert read_job(_state(chain), 2, _config(chain)).status == STATUS_CANCELLED
    _check_registry_balance(chain, jobs)
    bob_before = chain.get_balance(address_of(BOB))
    for n, sub in enumerate((b1, b2)):
        LevelDBBlobStore(chain.db).put_state(audit_block(chain, sub.block.hash, backend_for("cpu")).start_state)
        proof = mine_block(chain, MINER, [prove_tx(CAROL, n, sub.block.hash, 3)]).block
        assert chain.get_receipts(proof)[0].state_root == b"\x01"
        _check_registry_balance(chain, jobs)
    assert chain.get_balance(address_of(BOB)) > bob_before, "the cancelled job's slashed fee went to its poster"
    while read_job(_state(chain), 1, _config(chain)).status == STATUS_OPEN:
        mine_block(chain, MINER)
        _check_registry_balance(chain, jobs)
    for _ in range(MATURITY + 1):
        mine_block(chain, MINER)
        _check_registry_balance(chain, jobs)
    assert _immature_fees(chain) == 0 and chain.get_balance(REGISTRY_ADDRESS) == 0


# --- claim 4: a cheater cannot escape slashing ------------------------------------------------


DEFAULT_GAS_LIMIT = 30_000_000
DEFAULT_K = 8
DEFAULT_MATURITY = 240
DEFAULT_INITIAL_DIFFICULTY = 10**12


def test_a_cheater_using_the_longest_segments_can_still_be_proven_within_the_block_gas_limit() -> None:
    from pouw.families import get_family
    from pouw.spec import JobSpec
    from devnet.kit.genesis import default_genesis_dict

    raw = default_genesis_dict()
    assert raw["gasLimit"] == DEFAULT_GAS_LIMIT and raw["pouw"]["challengeCount"] == DEFAULT_K  # type: ignore[index]
    assert raw["consensus"]["coinbaseMaturity"] == DEFAULT_MATURITY  # type: ignore[index]
    spec = JobSpec.from_dict(raw["pouw"]["standingJobs"][0])  # type: ignore[index]
    w = get_family(spec.family).work_units(spec)
    intrinsic = 21_000 + 16 * 68
    for growth in (1, 10, 100, 1000):  # difficulty follows the network's hash rate
        d = DEFAULT_INITIAL_DIFFICULTY * growth
        m = max_segment_steps(d, w, DEFAULT_K)
        gas = intrinsic + GAS_PROVE_BASE + GAS_PROVE_PER_ENTRY * DEFAULT_MATURITY + -(-m * w // WORK_UNITS_PER_GAS)
        assert gas <= DEFAULT_GAS_LIMIT, f"difficulty {d:.2e}: a proof of one {m}-step segment needs {gas:,} gas"


# --- claim 5: a proof's start state is checked before the pool takes it ------------------------


def test_a_contract_relayed_proof_reverts_and_leaves_the_pool() -> None:
    """Nodes check that a proof's start state is here only for transactions *to* the
    registry; a proveFraud relayed by a contract could otherwise sit in the pool unpaid
    (every template skipping it) or reach execution without its blob. The registry
    refuses calls from contracts: the relayed proof is mined, its registry call reverts,
    its sender pays the gas and nothing changes."""
    genesis = _genesis()
    chain = open_pouw_chain(genesis)
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER)])
    honest = mine_block(chain, MINER).block
    pool = TxPool(genesis.chain_id, chain.state_view(), missing_blobs=chain.engine.missing_transaction_blobs)
    chain.txpool = pool
    relayed = sign_tx(CAROL, 0, PROXY, data=encode_prove_fraud(honest.hash, 2), gas=3_000_000, tip=PROOF_TIP)
    carol = chain.get_balance(address_of(CAROL))
    pool.add(relayed)
    before = read_audit(chain.state_at(chain.head()), 1)
    template = chain.build_template(MINER)
    assert [tx.hash for tx in template.transactions] == [relayed.hash]
    block = mine_block(chain, MINER, list(template.transactions)).block
    pool.on_new_head(chain.state_view())
    assert pool.get(relayed.hash) is None, "mined, not left in the pool"
    assert not chain.get_receipts(block)[0].logs, "the registry call reverted (the proxy ignores that)"
    assert chain.get_balance(address_of(CAROL)) < carol, "the sender paid the gas"
    assert read_audit(chain.state_at(chain.head()), 1) == before


def test_a_cheater_cancelling_its_job_inside_the_lying_block_is_still_slashed() -> None:
    from eth_keys import keys

    chain = open_pouw_chain(_genesis())
    cheater_key = keys.PrivateKey(b"\x0d" * 32)
    cheater = address_of(cheater_key)
    mine_block(chain, MINER, [sign_tx(ALICE, 0, cheater, value=ETHER, tip=0)])
    mine_block(chain, MINER, [post_job_tx(cheater_key, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER // 10)])
    cancel = sign_tx(cheater_key, 1, REGISTRY_ADDRESS, data=encode_cancel_job(1), gas=200_000, tip=0)
    sub = substitute_block(chain, cheater, segment=3, job_id=1, transactions=[cancel], seed=21)
    chain.import_block(sub.block, sub.payload)  # accepted: the cheater's own cancel rides in its block
    assert read_job(_state(chain), 1, _config(chain)).status == STATUS_CANCELLED
    audit = audit_block(chain, sub.block.hash, backend_for("cpu"))
    assert audit.fraud_segment == 3  # the auditor sees it
    LevelDBBlobStore(chain.db).put_state(audit.start_state)
    entry = read_ring_entry(_state(chain), sub.block.number, MATURITY)
    assert entry is not None and entry.reward > 0  # entry.job_id is 0 here: locate() says "trained no job"
    proof = mine_block(chain, MINER, [prove_tx(CAROL, 0, sub.block.hash, 3)]).block
    assert chain.get_receipts(proof)[0].state_root == b"\x01", "the proof lands"
    slashed = read_ring_entry(_state(chain), sub.block.number, MATURITY)
    assert slashed is not None and slashed.slashed and slashed.reward == 0

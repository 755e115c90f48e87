"""Every rule of the pouw seal has its test_invalid_*: a block breaking it is refused
with that rule's error, and nothing is written."""
from __future__ import annotations

import pytest
import rlp
from eth_utils import keccak

from chain.chain import Seal
from chain.errors import InvalidWork, OversizedBlock, WorkVerificationUnavailable
from consensus.errors import (
    AccumulatorMismatch,
    BadCarriedState,
    DatasetUnavailable,
    InvalidSealField,
    InvalidStepCount,
    JobNotOpen,
    MalformedPayload,
    NotAWinningTicket,
    TicketStepMismatch,
    UnknownJob,
    WrongChallengedSteps,
    WrongFinalState,
    WrongPreviousState,
    WrongStartCheckpoint,
    WrongStepHashCount,
)
from consensus.params import MAX_STEPS_PER_BLOCK
from consensus.payload import WorkPayload
from pouw.commit import is_winning_ticket
from tests.chain.helpers import ALICE, ETHER, GWEI, MINER, db_snapshot
from tests.consensus.helpers import (
    STANDING_ID,
    mine_block,
    open_pouw_chain,
    pouw_genesis,
    post_job_tx,
    tiny_spec,
    tiny_work_units,
)


@pytest.fixture(scope="module")
def setup():
    """A chain at #1 and an honest, not yet imported block #2 with its payload."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=12, k=3))
    mine_block(chain, MINER)
    mined = mine_block(chain, MINER, do_import=False)
    assert mined.steps >= 3
    return chain, mined


def reseal(chain, mined, **fields):
    h = mined.block.header
    seal = dict(job_id=h.job_id, start_checkpoint=h.start_checkpoint, step_count=h.step_count,
                final_state=h.final_state, work_accumulator=h.work_accumulator)
    seal.update(fields)
    header = h.copy(**seal)
    return mined.block.copy(header=header)


def refused(chain, block, payload, error):
    before = db_snapshot(chain.db)
    with pytest.raises(error):
        chain.import_block(block, payload)
    assert db_snapshot(chain.db) == before


def payload_of(mined) -> WorkPayload:
    return WorkPayload.decode(mined.payload)


# --- header alone ---------------------------------------------------------------------------


def test_honest_block_imports(setup) -> None:
    chain, mined = setup
    # import into a copy so the module's chain stays at #1
    other = open_pouw_chain(chain.genesis)
    other.import_block(chain.get_block_by_number(1), chain.get_payload(chain.get_canonical_hash(1)))
    other.import_block(mined.block, mined.payload)
    assert other.head().hash == mined.block.hash
    assert other.get_payload(mined.block.hash) == mined.payload


def test_invalid_step_count_zero(setup) -> None:
    chain, mined = setup
    refused(chain, reseal(chain, mined, step_count=0), mined.payload, InvalidStepCount)


def test_invalid_step_count_above_limit(setup) -> None:
    chain, mined = setup
    refused(chain, reseal(chain, mined, step_count=MAX_STEPS_PER_BLOCK + 1), mined.payload, InvalidStepCount)


def test_invalid_zero_seal_field(setup) -> None:
    chain, mined = setup
    for name in ("job_id", "start_checkpoint", "final_state", "work_accumulator"):
        refused(chain, reseal(chain, mined, **{name: b"\x00" * 32}), mined.payload, InvalidSealField)


# --- header against the parent state ------------------------------------------------------


def test_invalid_unknown_job(setup) -> None:
    chain, mined = setup
    refused(chain, reseal(chain, mined, job_id=(12345).to_bytes(32, "big")), mined.payload, UnknownJob)
    refused(chain, reseal(chain, mined, job_id=(STANDING_ID + 1).to_bytes(32, "big")), mined.payload, UnknownJob)


def test_invalid_wrong_start_checkpoint(setup) -> None:
    chain, mined = setup
    refused(chain, reseal(chain, mined, start_checkpoint=keccak(b"elsewhere")), mined.payload, WrongStartCheckpoint)


def test_invalid_not_a_winning_ticket(setup) -> None:
    chain, mined = setup
    d = mined.block.header.difficulty
    losing = next(a for a in (keccak(bytes([i])) for i in range(256)) if not is_winning_ticket(a, tiny_work_units(), d))
    refused(chain, reseal(chain, mined, work_accumulator=losing), mined.payload, NotAWinningTicket)


def test_invalid_job_not_open() -> None:
    """A completed job cannot be mined any more."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=4, k=2))
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=1), price=GWEI, escrow=ETHER)])
    first = mine_block(chain, MINER)
    assert first.job_id == 1  # completes it (budget 1 step)
    again = mine_block(chain, MINER, do_import=False)
    assert again.job_id == STANDING_ID
    forged = reseal(chain, again, job_id=(1).to_bytes(32, "big"))
    refused(chain, forged, again.payload, JobNotOpen)


# --- the payload -------------------------------------------------------------------------


def test_invalid_missing_payload(setup) -> None:
    chain, mined = setup
    refused(chain, mined.block, None, InvalidWork)


def test_invalid_oversized_payload(setup) -> None:
    chain, mined = setup
    refused(chain, mined.block, b"\x00" * (chain.engine.max_payload_bytes() + 1), OversizedBlock)


def test_invalid_malformed_payload(setup) -> None:
    chain, mined = setup
    refused(chain, mined.block, b"\xff\x00garbage", MalformedPayload)
    refused(chain, mined.block, rlp.encode([2, [], [], b""]), MalformedPayload)


def test_invalid_wrong_step_hash_count(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    bad = WorkPayload(p.step_hashes[:-1], p.carried, p.final_state)
    refused(chain, mined.block, bad.encode(), WrongStepHashCount)


def test_invalid_last_step_hash_differs_from_final_state(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    bad = WorkPayload(p.step_hashes[:-1] + (keccak(b"x"),), p.carried, p.final_state)
    refused(chain, mined.block, bad.encode(), WrongFinalState)


def test_invalid_accumulator_mismatch(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    hashes = list(p.step_hashes)
    hashes[0] = keccak(b"another first step")
    refused(chain, mined.block, WorkPayload(tuple(hashes), p.carried, p.final_state).encode(), AccumulatorMismatch)


def test_invalid_wrong_challenged_steps(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    refused(chain, mined.block, WorkPayload(p.step_hashes, p.carried[1:], p.final_state).encode(), WrongChallengedSteps)


def test_invalid_carried_final_state_differs(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    refused(chain, mined.block, WorkPayload(p.step_hashes, p.carried, p.carried[0][1]).encode(), WrongFinalState)


def test_invalid_carried_previous_state(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    carried = list(p.carried)
    i, _ = carried[-1]
    carried[-1] = (i, p.final_state)  # a real state, but not s_{i-1}
    refused(chain, mined.block, WorkPayload(p.step_hashes, tuple(carried), p.final_state).encode(), WrongPreviousState)


def test_invalid_undecodable_carried_state() -> None:
    """A trajectory whose final state is bytes that do not decode for the spec."""
    from consensus.engine import backend_for
    from consensus.jobs import load_dataset
    from consensus.seal import SealClaim, required_steps, verify_trajectory
    from pouw.commit import accumulator_chain
    from pouw.spec import JobSpec

    spec = JobSpec.from_dict(tiny_spec())
    w = tiny_work_units()
    garbage = b"PWST not a state"
    h = keccak(garbage)  # s_0 = s_1 = garbage, so every hash check passes
    seed_claim = SealClaim(b"\x01" * 32, b"\xc0" * 20, 1, h, 1, h, b"", w)
    a_t = accumulator_chain(seed_claim.seed, h, [h])[-1]
    claim = SealClaim(b"\x01" * 32, b"\xc0" * 20, 1, h, 1, h, a_t, w)  # D = w: every step wins
    assert required_steps(claim.work_accumulator, 1, 3) == [1]
    payload = WorkPayload((keccak(garbage),), ((1, garbage),), garbage)
    ds = load_dataset(spec, None, 1 << 30)
    with pytest.raises(BadCarriedState):
        verify_trajectory(claim, payload, spec, ds, 3, backend_for("cpu"))


def test_invalid_faked_ticket_step_in_a_block() -> None:
    """A cheater who lists a fake state for the ticket step (drawn until it wins) is refused."""
    from consensus.jobs import initial_state_bytes, load_dataset
    from consensus.engine import backend_for
    from pouw.spec import JobSpec
    from tests.consensus.sim import simulate

    chain = open_pouw_chain(pouw_genesis(expected_steps=4, k=2))
    spec = JobSpec.from_dict(tiny_spec())
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[])
    tr = simulate(spec, load_dataset(spec, None, 1 << 30), backend_for("cpu"), initial_state_bytes(STANDING_ID, spec),
                  k=2, difficulty=template.header.difficulty, work_units=tiny_work_units(), fake_ticket=True,
                  template_hash=template.template_hash, coinbase=MINER, job_id=STANDING_ID)
    c = tr.claim
    block = chain.seal_block(template, Seal(STANDING_ID.to_bytes(32, "big"), c.h0, c.step_count, c.final_state, c.work_accumulator))
    refused(chain, block, tr.payload.encode(), TicketStepMismatch)


def test_dataset_missing_is_transient_not_invalid() -> None:
    """A validator without the job's dataset cannot verify yet: a transient error, nothing
    written; once it has the blob, the same block imports."""
    from consensus.blobs import LevelDBBlobStore
    from pouw.datasets import dataset_id, dataset_to_bytes, synthetic_blobs

    genesis = pouw_genesis(expected_steps=4, k=2)
    miner_chain = open_pouw_chain(genesis)
    validator = open_pouw_chain(genesis)
    blob = dataset_to_bytes(synthetic_blobs(5, 200, 50))
    LevelDBBlobStore(miner_chain.db).put(blob)
    post = post_job_tx(ALICE, 0, tiny_spec(dataset=dataset_id(blob)), price=GWEI, escrow=ETHER)
    first = mine_block(miner_chain, MINER, [post])
    validator.import_block(first.block, first.payload)
    second = mine_block(miner_chain, MINER)
    assert second.job_id == 1
    import consensus.jobs

    consensus.jobs._datasets.clear()  # the validator is another process: no cached copy
    before = db_snapshot(validator.db)
    with pytest.raises(DatasetUnavailable) as info:
        validator.import_block(second.block, second.payload)
    assert isinstance(info.value, WorkVerificationUnavailable)
    assert db_snapshot(validator.db) == before
    LevelDBBlobStore(validator.db).put(blob)
    validator.import_block(second.block, second.payload)
    assert validator.head().hash == second.block.hash


def test_invalid_faked_challenged_step_in_a_block() -> None:
    """Every non-ticket step faked (f = 1): a challenged step recomputes to another state."""
    from consensus.engine import backend_for
    from consensus.errors import ChallengedStepMismatch
    from consensus.jobs import initial_state_bytes, load_dataset
    from pouw.spec import JobSpec
    from tests.consensus.sim import simulate

    chain = open_pouw_chain(pouw_genesis(expected_steps=4, k=2))
    spec = JobSpec.from_dict(tiny_spec())
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[])
    tr = simulate(spec, load_dataset(spec, None, 1 << 30), backend_for("cpu"), initial_state_bytes(STANDING_ID, spec),
                  k=2, difficulty=template.header.difficulty, work_units=tiny_work_units(), f=1.0,
                  template_hash=template.template_hash, coinbase=MINER, job_id=STANDING_ID)
    c = tr.claim
    block = chain.seal_block(template, Seal(STANDING_ID.to_bytes(32, "big"), c.h0, c.step_count, c.final_state, c.work_accumulator))
    refused(chain, block, tr.payload.encode(), ChallengedStepMismatch)

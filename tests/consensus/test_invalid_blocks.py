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
    AnchoredSegmentMismatch,
    BadCarriedState,
    ChallengedSegmentMismatch,
    DatasetUnavailable,
    InvalidSealField,
    InvalidStepCount,
    JobNotOpen,
    MalformedPayload,
    NotAPoint,
    NotAWinningTicket,
    SegmentTooLong,
    TicketSegmentMismatch,
    TooFewPoints,
    UnknownJob,
    WrongChallengedSegments,
    WrongCommitmentCount,
    WrongFinalState,
    WrongStartCheckpoint,
    WrongStartState,
)
from consensus.params import MAX_STEPS_PER_BLOCK
from consensus.payload import WorkPayload
from pouw.commit import accumulator_chain
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
    refused(chain, mined.block, rlp.encode([1, [], [], b""]), MalformedPayload)  # the old version 1
    refused(chain, mined.block, rlp.encode([3, 1, [], []]), MalformedPayload)


def test_invalid_segment_too_long(setup) -> None:
    """m is bounded so that recomputation stays under 2% of the block's work."""
    chain, mined = setup
    p = payload_of(mined)
    refused(chain, mined.block, WorkPayload(p.m + 1, p.commitments, p.carried).encode(), SegmentTooLong)
    refused(chain, mined.block, WorkPayload(0, p.commitments, p.carried).encode(), SegmentTooLong)


def test_invalid_t_not_a_point(setup) -> None:
    chain, mined = setup
    long_m = open_pouw_chain(pouw_genesis(expected_steps=2000, k=3))  # allows m > 1
    mine = mine_block(long_m, MINER, do_import=False)
    p = payload_of(mine)
    assert p.m > 1
    refused(long_m, reseal(long_m, mine, step_count=mine.block.header.step_count + 1), mine.payload, NotAPoint)


def test_invalid_single_point_trajectory(setup) -> None:
    """Point 1 is never a winning ticket: a one-segment block is refused."""
    chain, mined = setup
    p = payload_of(mined)
    assert p.m == 1
    one = WorkPayload(1, p.commitments[:1], ())
    forged = reseal(chain, mined, step_count=1, final_state=p.commitments[0],
                    work_accumulator=accumulator_chain(b"\x00" * 32, p.commitments[:1])[-1])
    refused(chain, forged, one.encode(), TooFewPoints)


def test_invalid_wrong_commitment_count(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    refused(chain, mined.block, WorkPayload(p.m, p.commitments[:-1], p.carried).encode(), WrongCommitmentCount)


def test_invalid_last_commitment_differs_from_final_state(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    bad = WorkPayload(p.m, p.commitments[:-1] + (keccak(b"x"),), p.carried)
    refused(chain, mined.block, bad.encode(), WrongFinalState)


def test_invalid_accumulator_mismatch(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    commitments = list(p.commitments)
    commitments[0] = keccak(b"another first point")
    refused(chain, mined.block, WorkPayload(p.m, tuple(commitments), p.carried).encode(), AccumulatorMismatch)
    refused(chain, reseal(chain, mined, work_accumulator=keccak(b"a")), mined.payload, AccumulatorMismatch)


def test_invalid_not_a_winning_ticket(setup) -> None:
    """An honest trajectory cut at an earlier point: the accumulator is consistent, but the
    point it ends at did not win."""
    chain, mined = setup
    p = payload_of(mined)
    n = len(p.commitments)
    assert n >= 3, "the module's block needs at least three points"
    cut = p.commitments[:-1]
    seed = chain_seed(chain, mined, p.m)
    forged = reseal(chain, mined, step_count=n - 1, final_state=cut[-1],
                    work_accumulator=accumulator_chain(seed, cut)[-1])
    refused(chain, forged, WorkPayload(p.m, cut, p.carried).encode(), NotAWinningTicket)


def chain_seed(chain, mined, m):
    from pouw.commit import seal_seed

    h = mined.block.header
    return seal_seed(h.mining_hash, h.coinbase, h.job_id, h.start_checkpoint, m)


def test_invalid_wrong_challenged_segments(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    refused(chain, mined.block, WorkPayload(p.m, p.commitments, p.carried[1:]).encode(), WrongChallengedSegments)


def test_invalid_carried_start_state(setup) -> None:
    chain, mined = setup
    p = payload_of(mined)
    carried = list(p.carried)
    j, _ = carried[-1]
    carried[-1] = (j, carried[0][1])  # a real state, but not the start of segment j
    refused(chain, mined.block, WorkPayload(p.m, p.commitments, tuple(carried)).encode(), WrongStartState)


def test_invalid_undecodable_carried_state() -> None:
    """A trajectory whose carried start state is bytes that do not decode for the spec."""
    from consensus.engine import backend_for
    from consensus.jobs import initial_state_bytes, load_dataset
    from consensus.seal import SealClaim, verify_trajectory
    from pouw.commit import required_segments
    from pouw.spec import JobSpec
    from pouw.state import state_hash

    spec = JobSpec.from_dict(tiny_spec())
    w = tiny_work_units()
    s0 = initial_state_bytes(1, spec)
    garbage = b"PWST not a state"
    c = state_hash(garbage)
    h0 = state_hash(s0)
    claim0 = SealClaim(b"\x01" * 32, b"\xc0" * 20, 1, h0, 2, c, b"", w, None)
    a_n = accumulator_chain(claim0.seed(1), [c, c])[-1]
    claim = SealClaim(b"\x01" * 32, b"\xc0" * 20, 1, h0, 2, c, a_n, w, None)  # D = w: every point wins
    assert required_segments(a_n, 2, 3) == [1, 2]
    payload = WorkPayload(1, (c, c), ((2, garbage),))
    ds = load_dataset(spec, None, 1 << 30)
    with pytest.raises(BadCarriedState):
        verify_trajectory(claim, payload, spec, s0, ds, 3, backend_for("cpu"))


def forged_block(chain, dt: int = 5, **kwargs):
    """A block sealed with a forged trajectory on the chain's standing job."""
    from consensus.engine import backend_for
    from consensus.jobs import initial_state_bytes, load_dataset
    from pouw.spec import JobSpec
    from tests.consensus.sim import simulate

    spec = JobSpec.from_dict(tiny_spec())
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + dt, transactions=[])
    tr = simulate(spec, load_dataset(spec, None, 1 << 30), backend_for("cpu"), initial_state_bytes(STANDING_ID, spec),
                  difficulty=template.header.difficulty, work_units=tiny_work_units(),
                  template_hash=template.template_hash, coinbase=MINER, job_id=STANDING_ID, **kwargs)
    c = tr.claim
    block = chain.seal_block(template, Seal(STANDING_ID.to_bytes(32, "big"), c.h0, c.step_count, c.final_state,
                                            c.work_accumulator))
    return block, tr


def test_invalid_faked_ticket_segment_in_a_block() -> None:
    """A cheater who lists a fake end state for the ticket segment (drawn until it wins) is refused."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=4, k=2))
    block, tr = forged_block(chain, k=2, fake_ticket=True)
    refused(chain, block, tr.payload.encode(), TicketSegmentMismatch)


def test_invalid_garbage_start_state_in_a_block() -> None:
    """Training from a state of the forger's choosing while naming the right h_0: segment 1
    is recomputed from the stored checkpoint every time."""
    import torch

    from consensus.jobs import initial_state_bytes
    from pouw.spec import JobSpec
    from pouw.state import deserialize_state

    chain = open_pouw_chain(pouw_genesis(expected_steps=4, k=2))
    spec = JobSpec.from_dict(tiny_spec())
    zeros = {name: torch.zeros_like(t) for name, t in deserialize_state(spec, initial_state_bytes(STANDING_ID, spec)).items()}
    block, tr = forged_block(chain, k=2, start_state=zeros)
    refused(chain, block, tr.payload.encode(), AnchoredSegmentMismatch)


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


def test_invalid_faked_challenged_segment_in_a_block() -> None:
    """A fake in a middle segment passes the anchored checks and is caught where a
    challenge lands on it."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=10, k=2))
    for dt in range(5, 200):  # other timestamps, other templates: until a challenge lands on segment 2
        block, tr = forged_block(chain, dt=dt, k=2, fake=lambda j: j == 2, min_points=8)
        if 2 in tr.required:
            break
    else:
        pytest.fail("no forged block had its fake challenged")
    refused(chain, block, tr.payload.encode(), ChallengedSegmentMismatch)

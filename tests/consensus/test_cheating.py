"""Cheating is caught at the promised rate; seals cannot be moved, re-rolled or stolen."""
from __future__ import annotations

import math
import random

import pytest

from consensus.errors import (
    AccumulatorMismatch,
    SegmentMismatch,
    TicketSegmentMismatch,
    WrongStartCheckpoint,
)
from consensus.engine import backend_for
from consensus.jobs import initial_state_bytes, load_dataset
from consensus.seal import verify_trajectory
from pouw.commit import required_segments
from pouw.families import get_family
from pouw.spec import JobSpec
from tests.chain.helpers import ALICE, BOB, MINER, OTHER_MINER, transfer
from tests.consensus.helpers import mine_block, mine_template, open_pouw_chain, pouw_genesis, tiny_spec
from tests.consensus.sim import simulate

K = 8  # the default genesis's challenge count
BLOCKS_PER_F = 200


@pytest.fixture(scope="module")
def setup():
    spec = JobSpec.from_dict(tiny_spec())
    ds = load_dataset(spec, None, 1 << 30)
    backend = backend_for("cpu")
    w = get_family("mlp").work_units(spec)
    return spec, ds, backend, w, initial_state_bytes(1, spec)


def rejected(trajectory, setup) -> bool:
    spec, ds, backend, w, s0 = setup
    try:
        verify_trajectory(trajectory.claim, trajectory.payload, spec, s0, ds, K, backend)
    except SegmentMismatch:
        return True
    return False


def test_honest_trajectories_pass(setup) -> None:
    spec, ds, backend, w, s0 = setup
    rng = random.Random(7)
    for n in range(20):
        tr = simulate(spec, ds, backend, s0, k=K, difficulty=w * 4, work_units=w, rng=rng,
                      template_hash=n.to_bytes(32, "big"))
        assert not tr.faked
        verify_trajectory(tr.claim, tr.payload, spec, s0, ds, K, backend)


@pytest.mark.parametrize("f", [0.1, 0.3])
def test_cheat_detection_rate_matches_theory(setup, f: float) -> None:
    """Segments 2.. faked each with probability f, published at the first win (no
    selection): a block passes only if none of its recomputed segments is faked. With r
    recomputed segments besides segment 1 (the three anchored last ones and the k
    challenges, fewer in a short trajectory), it passes with probability (1-f)^r; the
    measured rejection rate over 200 blocks matches the mean of 1-(1-f)^r within 3
    standard errors."""
    spec, ds, backend, w, s0 = setup
    rng = random.Random(int(f * 1000))
    caught, promised = 0, 0.0
    for n in range(BLOCKS_PER_F):
        tr = simulate(spec, ds, backend, s0, k=K, difficulty=w * 12, work_units=w,
                      fake=lambda j: j >= 2 and rng.random() < f, rng=rng,
                      template_hash=(n + int(f * 1e6)).to_bytes(32, "big"))
        r = len([j for j in required_segments(tr.claim.work_accumulator, len(tr.payload.commitments), K) if j >= 2])
        promised += 1 - (1 - f) ** r
        caught += rejected(tr, setup)
    promised /= BLOCKS_PER_F
    rate = caught / BLOCKS_PER_F
    sigma = math.sqrt(promised * (1 - promised) / BLOCKS_PER_F)
    print(f"f={f}: rejected {caught}/{BLOCKS_PER_F} = {rate:.3f}, promised {promised:.3f} +- {sigma:.3f}")
    assert abs(rate - promised) <= 3 * sigma + 1 / BLOCKS_PER_F


def test_invalid_faked_ticket_segment_rejected_every_time(setup) -> None:
    spec, ds, backend, w, s0 = setup
    rng = random.Random(3)
    for n in range(40):
        tr = simulate(spec, ds, backend, s0, k=K, difficulty=w * 4, work_units=w, rng=rng, fake_ticket=True,
                      template_hash=(n + 10**6).to_bytes(32, "big"), min_points=2 + n % 5)
        assert len(tr.payload.commitments) in tr.faked
        with pytest.raises(TicketSegmentMismatch):
            verify_trajectory(tr.claim, tr.payload, spec, s0, ds, K, backend)


# --- chain level ------------------------------------------------------------------------


@pytest.fixture
def chain():
    return open_pouw_chain(pouw_genesis(expected_steps=12, k=3))


def test_rerolled_timestamp_or_extra_data_keeps_challenges_but_breaks_seal(chain) -> None:
    from consensus.miner import Miner

    mine_block(chain, MINER)  # advance the standing job once
    parent = chain.head()
    miner = Miner(chain, MINER, device="cpu")
    template = chain.build_template(MINER, timestamp=parent.timestamp + 5, transactions=[])
    mined = mine_template(miner, template)
    header = mined.block.header
    k = chain.engine_class.config.challenge_count
    n = header.step_count  # m = 1 on this chain: one point per step
    challenged = required_segments(header.work_accumulator, n, k)
    for changes in ({"timestamp": parent.timestamp + 6}, {"extra_data": b"re-rolled"}):
        rerolled_template = chain.build_template(
            MINER, transactions=[], **{"timestamp": parent.timestamp + 5, **changes})
        assert rerolled_template.template_hash != template.template_hash
        from chain.chain import Seal

        seal = Seal(header.job_id, header.start_checkpoint, header.step_count, header.final_state, header.work_accumulator)
        rerolled = chain.seal_block(rerolled_template, seal)
        assert rerolled.hash != mined.block.hash
        # the challenges depend on a_t (and t, k) only: re-rolling the block hash cannot move them
        assert required_segments(rerolled.header.work_accumulator, n, k) == challenged
        # ...and the re-rolled block is refused: its seed, hence its accumulator, changed
        with pytest.raises(AccumulatorMismatch):
            chain.import_block(rerolled, mined.payload)
    chain.import_block(mined.block, mined.payload)


def _move_seal(chain, mined, template):
    from chain.chain import Seal

    h = mined.block.header
    return chain.seal_block(template, Seal(h.job_id, h.start_checkpoint, h.step_count, h.final_state, h.work_accumulator))


def test_invalid_trajectory_for_another_parent(chain) -> None:
    first = mine_block(chain, MINER, do_import=False)
    sibling_parent = mine_block(chain, OTHER_MINER)  # another block at height 1
    assert chain.head().hash == sibling_parent.block.hash
    # first's trajectory was built on genesis: put it on a template whose parent is #1
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[])
    moved = _move_seal(chain, first, template)
    with pytest.raises(WrongStartCheckpoint):  # the parent advanced the job: h_0 moved on
        chain.import_block(moved, first.payload)
    # even claiming the new parent's h_0, the trajectory was seeded with the old template
    from chain.chain import Seal

    h = first.block.header
    forged = chain.seal_block(template, Seal(h.job_id, chain.head().final_state, h.step_count, h.final_state, h.work_accumulator))
    with pytest.raises(AccumulatorMismatch):
        chain.import_block(forged, first.payload)


def test_invalid_trajectory_for_another_coinbase_template_or_resealed(chain) -> None:
    mined = mine_block(chain, MINER, [transfer(ALICE, 0, b"\x01" * 20, tip=0)], do_import=False)
    ts = mined.block.header.timestamp
    # another miner takes the work and re-seals it under its own coinbase
    stolen = _move_seal(chain, mined, chain.build_template(OTHER_MINER, timestamp=ts, transactions=list(mined.block.transactions)))
    with pytest.raises(AccumulatorMismatch):
        chain.import_block(stolen, mined.payload)
    # the same work on a template with other transactions
    other_txs = _move_seal(chain, mined, chain.build_template(MINER, timestamp=ts, transactions=[transfer(BOB, 0, b"\x02" * 20, tip=0)]))
    with pytest.raises(AccumulatorMismatch):
        chain.import_block(other_txs, mined.payload)
    chain.import_block(mined.block, mined.payload)  # the honest block is fine


def test_invalid_trajectory_for_another_start_checkpoint(chain) -> None:
    """Work started from the job's *previous* checkpoint (e.g. stockpiled before the last
    block) is refused: its header names the old h_0, or its accumulator was seeded with it."""
    from consensus.miner import Miner

    parent = chain.head()
    miner = Miner(chain, MINER, device="cpu")
    stale_template = chain.build_template(MINER, timestamp=parent.timestamp + 5, transactions=[])
    stale = mine_template(miner, stale_template)  # trained from the initial checkpoint
    mine_block(chain, OTHER_MINER)  # the job's checkpoint moves on (a block on the same parent wins)
    # a sibling of OTHER_MINER's block would still be valid; build on the new head instead:
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[])
    with pytest.raises(WrongStartCheckpoint):
        chain.import_block(_move_seal(chain, stale, template), stale.payload)
    # claiming the new on-chain h_0 with the old trajectory: the seed differs
    from chain.chain import Seal

    h = stale.block.header
    new_h0 = chain.head().final_state
    forged = chain.seal_block(template, Seal(h.job_id, new_h0, h.step_count, h.final_state, h.work_accumulator))
    with pytest.raises(AccumulatorMismatch):
        chain.import_block(forged, stale.payload)

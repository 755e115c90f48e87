"""pouw.verifier: honest segments pass; a flipped bit, a wrong hash or seed, garbage do not; no raise."""
from __future__ import annotations

import pytest

from pouw.arith import select_backend
from pouw.families import get_family
from pouw.state import serialize_state, state_hash
from pouw.trainer import Trainer
from pouw.verifier import BadState, Mismatch, Ok, SegmentClaim, all_ok, verify_segment
from tests.pouw.test_engine import small_job

SEED = b"\x42" * 32
M = 2


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    spec, ds = small_job()
    tr = Trainer(spec, ds, get_family("mlp").init_state(spec, b"\x07" * 32), SEED, select_backend("cpu"), m=M)
    tr.run(max_steps=10)
    return spec, ds, tr


def claim(tr: Trainer, j: int, *, start: object = None, claimed: bytes | None = None, seed: bytes | None = None) -> SegmentClaim:
    first = (tr.points[j - 2].p if j >= 2 else 0) + 1
    return SegmentClaim(
        tag=j, first=first, last=tr.points[j - 1].p,
        batch_seed=seed if seed is not None else tr.batch_seed(j),
        start_state=start if start is not None else tr.point_bytes(j - 1),  # type: ignore[arg-type]
        claimed=claimed if claimed is not None else tr.points[j - 1].c,
    )


def verify(run, c: SegmentClaim):  # type: ignore[no-untyped-def]
    spec, ds, _ = run
    return verify_segment(spec, ds, c, select_backend("cpu"))


def test_honest_segments_pass_and_return_the_end_state(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    verdicts = [verify(run, claim(tr, j)) for j in (1, 3, 5)]
    assert all_ok(verdicts) and [v.tag for v in verdicts] == [1, 3, 5]
    assert serialize_state(spec, verdicts[-1].state) == tr.point_bytes(5)  # type: ignore[union-attr]
    # the start state may also be given as tensors (a validator's stored checkpoint)
    assert isinstance(verify(run, claim(tr, 2, start=tr.point_state(1))), Ok)


def test_invalid_wrong_claimed_hash(run) -> None:  # type: ignore[no-untyped-def]
    _, _, tr = run
    v = verify(run, claim(tr, 3, claimed=tr.points[3].c))
    assert v == Mismatch(3, expected=tr.points[3].c, found=tr.points[2].c)


def test_invalid_wrong_batch_seed(run) -> None:  # type: ignore[no-untyped-def]
    _, _, tr = run
    assert isinstance(verify(run, claim(tr, 3, seed=b"\x43" * 32)), Mismatch)
    assert isinstance(verify(run, claim(tr, 3, seed=tr.batch_seed(4))), Mismatch)


def test_invalid_single_flipped_state_bit(run) -> None:  # type: ignore[no-untyped-def]
    _, _, tr = run
    data = bytearray(tr.point_bytes(3))
    for pos in (len(data) - 1, len(data) // 2, len(data) - 4 * 17):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        v = verify(run, claim(tr, 4, start=bytes(flipped)))
        assert isinstance(v, (Mismatch, BadState)), pos
        assert v.tag == 4


def test_invalid_garbage_states_are_bad_state(run) -> None:  # type: ignore[no-untyped-def]
    _, _, tr = run
    good = tr.point_bytes(0)
    for bad in (b"", b"\x00" * 100, good[:-1], good + b"\x00", b"\xff" * len(good)):
        v = verify(run, claim(tr, 1, start=bad))
        assert isinstance(v, BadState) and v.tag == 1 and v.reason


def test_invalid_malformed_claims(run) -> None:  # type: ignore[no-untyped-def]
    _, _, tr = run
    good = claim(tr, 1)
    bad_claims = [
        SegmentClaim(1, 0, 2, good.batch_seed, good.start_state, good.claimed),
        SegmentClaim(1, 3, 2, good.batch_seed, good.start_state, good.claimed),
        SegmentClaim(1, 1, 2, good.batch_seed[:31], good.start_state, good.claimed),
        SegmentClaim(1, 1, 2, good.batch_seed, good.start_state, b"\x00" * 31),
        SegmentClaim(1, 1, 2, good.batch_seed, "not bytes", good.claimed),  # type: ignore[arg-type]
        SegmentClaim(1, 2**64, 2**64, good.batch_seed, good.start_state, good.claimed),
    ]
    verdicts = [verify(run, c) for c in bad_claims]
    assert all(isinstance(v, BadState) for v in verdicts)
    assert not all_ok(verdicts)


def test_invalid_faked_point_is_caught_exactly_where_it_is_recomputed(run) -> None:  # type: ignore[no-untyped-def]
    """A miner that invents the state at point 2 (a perturbed honest state) and trains on
    honestly from it lists c_2 = hash(fake). Recomputing segment 2 exposes it; segment 3,
    computed honestly from the fake, passes: only a challenge that lands on a faked
    segment detects it."""
    from pouw.engine import run_segment
    from pouw.state import deserialize_state

    spec, ds, tr = run
    backend = select_backend("cpu")
    fake2 = {k: v.clone() for k, v in tr.point_state(2).items()}
    fake2["w0"][0, 0] += 1
    fake2_bytes = serialize_state(spec, fake2)
    s3 = run_segment(spec, ds, deserialize_state(spec, fake2_bytes), tr.batch_seed(3), 5, 6, backend)
    listed_c2, listed_c3 = state_hash(fake2_bytes), state_hash(s3, spec)
    v2 = verify(run, claim(tr, 2, claimed=listed_c2))
    v3 = verify(run, claim(tr, 3, start=fake2_bytes, claimed=listed_c3))
    assert isinstance(v2, Mismatch) and v2.found == tr.points[1].c
    assert isinstance(v3, Ok)

"""pouw.verifier: honest claims pass; a flipped bit, a wrong hash, garbage do not; no raise."""
from __future__ import annotations

import pytest

from pouw.arith import select_backend
from pouw.families import get_family
from pouw.trainer import Trainer
from pouw.verifier import BadState, Claim, Mismatch, Ok, all_ok, verify_steps
from tests.pouw.test_engine import small_job

SEED = b"\x42" * 32


@pytest.fixture(scope="module")
def run():  # type: ignore[no-untyped-def]
    spec, ds = small_job()
    tr = Trainer(spec, ds, get_family("mlp").init_state(spec, b"\x07" * 32), SEED, select_backend("cpu"))
    tr.run(max_steps=10)
    return spec, ds, tr


def claim(tr: Trainer, i: int) -> Claim:
    return Claim(i, tr.state_bytes(i - 1), tr.records[i - 1].h)


def test_honest_claims_pass(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    verdicts = verify_steps(spec, ds, SEED, [claim(tr, i) for i in (1, 4, 10)], select_backend("cpu"))
    assert verdicts == [Ok(1), Ok(4), Ok(10)] and all_ok(verdicts)


def test_invalid_wrong_claimed_hash(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    c = claim(tr, 5)
    bad = Claim(5, c.prev_state, tr.records[5].h)  # h_6 claimed for step 5
    [v] = verify_steps(spec, ds, SEED, [bad], select_backend("cpu"))
    assert v == Mismatch(5, expected=tr.records[5].h, found=tr.records[4].h)


def test_invalid_wrong_seed(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    [v] = verify_steps(spec, ds, b"\x43" * 32, [claim(tr, 3)], select_backend("cpu"))
    assert isinstance(v, Mismatch)


def test_invalid_single_flipped_state_bit(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    c = claim(tr, 7)
    data = bytearray(c.prev_state)
    for pos in (len(data) - 1, len(data) // 2, len(data) - 4 * 17):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        [v] = verify_steps(spec, ds, SEED, [Claim(7, bytes(flipped), c.claimed_h)], select_backend("cpu"))
        assert isinstance(v, (Mismatch, BadState)), pos
        assert v.i == 7


def test_invalid_garbage_states_are_bad_state(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    h = tr.records[0].h
    good = tr.state_bytes(0)
    claims = [
        Claim(1, b"", h),
        Claim(1, b"\x00" * 100, h),
        Claim(1, good[:-1], h),
        Claim(1, good + b"\x00", h),
        Claim(1, b"\xff" * len(good), h),
    ]
    verdicts = verify_steps(spec, ds, SEED, claims, select_backend("cpu"))
    assert all(isinstance(v, BadState) and v.i == 1 and v.reason for v in verdicts), verdicts


def test_invalid_malformed_claims(run) -> None:  # type: ignore[no-untyped-def]
    spec, ds, tr = run
    good = tr.state_bytes(0)
    claims = [
        (0, good, tr.records[0].h),
        (1, good, b"\x00" * 31),
        (1, "not bytes", tr.records[0].h),
        (1, good),
        "nonsense",
        (2**64, good, tr.records[0].h),
    ]
    verdicts = verify_steps(spec, ds, SEED, claims, select_backend("cpu"))  # type: ignore[arg-type]
    assert len(verdicts) == 6 and all(isinstance(v, BadState) for v in verdicts)
    assert not all_ok(verdicts)


def test_invalid_faked_step_is_caught_exactly_where_it_is_challenged(run) -> None:  # type: ignore[no-untyped-def]
    """A miner that invents s_5 (here: a perturbed honest state) and trains on honestly
    from it lists h_5 = hash(fake). Recomputing step 5 exposes it; step 6, computed
    honestly from the fake s_5, passes: only a challenge that lands on a faked step
    detects it, hence the (1-f)^k escape probability."""
    from pouw.engine import compute_step
    from pouw.state import deserialize_state, serialize_state, state_hash

    spec, ds, tr = run
    backend = select_backend("cpu")
    s4 = deserialize_state(spec, tr.state_bytes(4))
    fake5 = {k: v.clone() for k, v in deserialize_state(spec, tr.state_bytes(5)).items()}
    fake5["w0"][0, 0] += 1
    fake5_bytes = serialize_state(spec, fake5)
    s6 = compute_step(spec, ds, fake5, SEED, 6, backend)
    listed_h5, listed_h6 = state_hash(fake5_bytes), state_hash(serialize_state(spec, s6))
    verdicts = verify_steps(
        spec, ds, SEED, [Claim(5, serialize_state(spec, s4), listed_h5), Claim(6, fake5_bytes, listed_h6)], backend
    )
    assert isinstance(verdicts[0], Mismatch) and verdicts[0].found == tr.records[4].h
    assert verdicts[1] == Ok(6)

"""pouw.trainer: accumulator, stop at once, ticket stop, kept states, event loop stays free."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pouw.arith import select_backend
from pouw.commit import accumulator_chain, challenge_indices, is_winning_ticket
from pouw.engine import compute_step
from pouw.families import get_family
from pouw.state import serialize_state, state_hash
from pouw.trainer import KeepPolicy, Trainer, ticket_condition
from tests.pouw.test_engine import small_job

SEED = b"\x42" * 32


@pytest.fixture(scope="module")
def job():  # type: ignore[no-untyped-def]
    spec, ds = small_job()
    return spec, ds, get_family("mlp").init_state(spec, b"\x07" * 32)


def make(job, keep: KeepPolicy = KeepPolicy(), pipeline: bool = False) -> Trainer:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job
    return Trainer(spec, ds, s0, SEED, select_backend("cpu"), keep=keep, pipeline=pipeline)


PIPELINE = pytest.mark.parametrize("pipeline", [False, True], ids=["serial", "pipelined"])


@PIPELINE
def test_records_match_recomputation_and_accumulator(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job
    tr = make(job, pipeline=pipeline)
    res = tr.run(max_steps=6)
    assert res.reason == "budget" and res.steps_run == 6 and tr.step == 6
    backend = select_backend("cpu")
    state, hashes = s0, []
    for i in range(1, 7):
        state = compute_step(spec, ds, state, SEED, i, backend)
        hashes.append(state_hash(serialize_state(spec, state)))
    assert tr.step_hashes() == hashes
    assert tr.h0 == state_hash(serialize_state(spec, s0))
    assert [tr.a0] + [r.a for r in tr.records] == accumulator_chain(SEED, tr.h0, hashes)
    assert [r.i for r in tr.records] == list(range(1, 7))
    # a second run continues the same trajectory
    tr.run(max_steps=2)
    assert tr.step == 8 and tr.records[5].h == hashes[5]


@PIPELINE
def test_default_budget_is_spec_steps(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline)
    res = tr.run()
    assert res.reason == "budget" and tr.step == job[0].steps
    assert tr.run().steps_run == 0


@PIPELINE
def test_stop_takes_effect_at_once(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline)
    res = tr.run(max_steps=100, on_step=lambda r: tr.stop() if r.i == 3 else None)
    assert res.reason == "stopped" and tr.step == 3
    assert tr.run(max_steps=5).steps_run == 0  # a stopped trainer stays stopped


@PIPELINE
def test_stop_from_another_thread(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline)
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.setdefault("res", tr.run(max_steps=10**6)))
    worker.start()
    time.sleep(0.3)
    t0 = time.perf_counter()
    tr.stop()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.perf_counter() - t0 < 0.5
    assert box["res"].reason == "stopped" and tr.step > 0  # type: ignore[attr-defined]


@PIPELINE
def test_ticket_condition_stops_at_first_win(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline)
    w, d = 1, 6
    res = tr.run(max_steps=200, until=ticket_condition(w, d))
    assert res.reason == "condition"
    t = res.last.i  # type: ignore[union-attr]
    assert is_winning_ticket(tr.records[-1].a, w, d)
    assert not any(is_winning_ticket(r.a, w, d) for r in tr.records[:-1])
    assert t == tr.step
    serial = make(job)
    serial.run(max_steps=t)
    assert serial.step_hashes() == tr.step_hashes()
    assert tr.state_bytes(t) == serial.state_bytes(t)  # the speculative step t+1 left no trace


def test_checkpoints_and_replay(job) -> None:  # type: ignore[no-untyped-def]
    full = make(job)
    full.run(max_steps=12)
    sparse = make(job, KeepPolicy(every=5))
    sparse.run(max_steps=12)
    assert sparse.kept_steps() == [0, 5, 10]
    assert sparse.step_hashes() == full.step_hashes()
    for i in range(13):
        assert sparse.state_bytes(i) == full.state_bytes(i)
    payload = sparse.payload_states([12, 3, 7])
    assert sorted(payload) == [3, 7, 12]
    assert payload[7] == full.state_bytes(6)
    with pytest.raises(IndexError):
        sparse.payload_states([13])


def test_memory_cap_doubles_interval(job) -> None:  # type: ignore[no-untyped-def]
    spec, _, s0 = job
    size = len(serialize_state(spec, s0))
    tr = make(job, KeepPolicy(every=1, max_bytes=4 * size))
    tr.run(max_steps=16)
    assert len(tr.kept_steps()) <= 4 and tr.interval > 1
    assert all(i % tr.interval == 0 for i in tr.kept_steps())
    ref = make(job)
    ref.run(max_steps=16)
    assert tr.state_bytes(11) == ref.state_bytes(11)


def test_payload_for_a_ticket(job) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, KeepPolicy(every=4))
    res = tr.run(max_steps=40)
    t = res.last.i  # type: ignore[union-attr]
    steps = challenge_indices(tr.accumulator, t, 3) + [t]
    payload = tr.payload_states(steps)
    assert len(payload) == 4


def test_event_loop_stays_responsive(job) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job

    async def main() -> tuple[float, int, object]:
        tr = Trainer(spec, ds, s0, SEED, select_backend("cpu"))
        task = asyncio.create_task(tr.run_async(max_steps=10**6))
        worst, ticks = 0.0, 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.0
        while loop.time() < end:
            t0 = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - t0 - 0.01)
            ticks += 1
        steps_while_ticking = tr.step
        tr.stop()
        res = await asyncio.wait_for(task, timeout=5)
        assert steps_while_ticking > 0
        return worst, ticks, res

    worst, ticks, res = asyncio.run(main())
    assert res.reason == "stopped"  # type: ignore[attr-defined]
    assert ticks > 30
    assert worst < 0.25  # a blocked loop would lag by the whole run (seconds)


def test_cancelling_run_async_stops_the_trainer(job) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job

    async def main() -> Trainer:
        tr = Trainer(spec, ds, s0, SEED, select_backend("cpu"))
        task = asyncio.create_task(tr.run_async(max_steps=10**6))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return tr

    tr = asyncio.run(main())
    assert tr.stopped
    n = tr.step
    time.sleep(0.2)
    assert tr.step <= n + 1


def test_invalid_seed(job) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job
    with pytest.raises(ValueError):
        Trainer(spec, ds, s0, b"short", select_backend("cpu"))


def test_seal_payload(job) -> None:  # type: ignore[no-untyped-def]
    tr = make(job)
    tr.run(max_steps=20)
    payload = tr.seal_payload(4)
    want = challenge_indices(tr.accumulator, 20, 4) + [20]
    assert sorted(payload) == sorted(want) and len(payload) == 5
    assert all(payload[i] == tr.state_bytes(i - 1) for i in payload)


def test_pipelined_equals_serial_with_checkpoints(job) -> None:  # type: ignore[no-untyped-def]
    a = make(job, KeepPolicy(every=3), pipeline=True)
    b = make(job, KeepPolicy(every=3), pipeline=False)
    ra, rb = a.run(max_steps=10), b.run(max_steps=10)
    assert (ra.reason, ra.steps_run) == (rb.reason, rb.steps_run) == ("budget", 10)
    assert a.records == b.records and a.kept_steps() == b.kept_steps() == [0, 3, 6, 9]
    assert a.state_bytes(10) == b.state_bytes(10) and a.state_bytes(7) == b.state_bytes(7)
    assert a.run(max_steps=0).steps_run == 0

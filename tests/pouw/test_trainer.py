"""pouw.trainer: segments and commitments, chained batches, stop at once, ticket stop,
kept states and replay, pipelining, the event loop stays free."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pouw.arith import select_backend
from pouw.commit import accumulator_chain, is_winning_ticket
from pouw.engine import compute_step, run_segment
from pouw.families import get_family
from pouw.state import serialize_state, state_hash
from pouw.trainer import KeepPolicy, Trainer, ticket_condition
from tests.pouw.test_engine import small_job

SEED = b"\x42" * 32


@pytest.fixture(scope="module")
def job():  # type: ignore[no-untyped-def]
    spec, ds = small_job()
    return spec, ds, get_family("mlp").init_state(spec, b"\x07" * 32)


def make(job, keep: KeepPolicy = KeepPolicy(), pipeline: bool = False, m: int = 1,  # type: ignore[no-untyped-def]
         budget: int | None = None) -> Trainer:
    spec, ds, s0 = job
    return Trainer(spec, ds, s0, SEED, select_backend("cpu"), keep=keep, pipeline=pipeline, m=m, budget=budget)


PIPELINE = pytest.mark.parametrize("pipeline", [False, True], ids=["serial", "pipelined"])


def reference(job, t: int, m: int, budget: int | None = None):  # type: ignore[no-untyped-def]
    """The trajectory recomputed from the definition (docs/protocol.md §14), step by step."""
    from pouw.commit import next_point

    spec, ds, s0 = job
    backend = select_backend("cpu")
    accs = [SEED]
    state, p, commitments, points = s0, 0, [], []
    while p < t:
        q = next_point(p, m, budget)
        j = len(points) + 1
        for i in range(p + 1, q + 1):
            state = compute_step(spec, ds, state, accs[max(j - 2, 0)], i, backend)
        c = state_hash(serialize_state(spec, state))
        commitments.append(c)
        accs.append(accumulator_chain(SEED, commitments)[-1])
        points.append(q)
        p = q
    return points, commitments, accs, state


@PIPELINE
@pytest.mark.parametrize("m", [1, 3])
def test_points_match_the_definition(job, pipeline: bool, m: int) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job
    tr = make(job, pipeline=pipeline, m=m)
    res = tr.run(max_steps=9)
    assert res.reason == "budget" and res.steps_run == 9 and tr.step == 9
    points, commitments, accs, state = reference(job, 9, m)
    assert [r.p for r in tr.points] == points
    assert tr.commitments() == commitments
    assert [tr.a0] + [r.a for r in tr.points] == accs
    assert tr.h0 == state_hash(serialize_state(spec, s0))
    assert serialize_state(spec, tr.state) == serialize_state(spec, state)
    assert all(r.length == m for r in tr.points)
    # a second run continues the same trajectory
    tr.run(max_steps=2 * m)
    assert tr.step == 9 + 2 * m and tr.points[1].c == commitments[1]


def test_a_changed_commitment_changes_every_later_batch(job) -> None:  # type: ignore[no-untyped-def]
    """Segment j's batches come from A_{j-2}: the chained draw that makes every re-roll
    of a listed commitment cost a new segment of training."""
    spec, ds, s0 = job
    tr = make(job, m=2)
    tr.run(max_steps=8)
    backend = select_backend("cpu")
    start = tr.point_state(2)
    assert tr.batch_seed(3) == tr.points[0].a  # segment 3 (steps 5..6) draws from A_1
    honest = run_segment(spec, ds, start, tr.batch_seed(3), 5, 6, backend)
    assert state_hash(honest, spec) == tr.points[2].c
    other_seed = accumulator_chain(SEED, [b"\x01" * 32])[-1]  # A_1 had c_1 been listed otherwise
    rerolled = run_segment(spec, ds, start, other_seed, 5, 6, backend)
    assert state_hash(rerolled, spec) != tr.points[2].c


def test_budget_point_is_committed(job) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, m=4, budget=6)
    tr.run(max_steps=12)
    assert [(r.p, r.length) for r in tr.points] == [(4, 4), (6, 2), (8, 2), (12, 4)]
    points, commitments, _, _ = reference(job, 12, 4, budget=6)
    assert tr.commitments() == commitments
    assert tr.point_index(6) == 2


@PIPELINE
def test_default_budget_is_spec_steps(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline)
    res = tr.run()
    assert res.reason == "budget" and tr.step == job[0].steps
    assert tr.run().steps_run == 0


@PIPELINE
def test_stop_takes_effect_at_once(job, pipeline: bool) -> None:  # type: ignore[no-untyped-def]
    tr = make(job, pipeline=pipeline, m=2)
    res = tr.run(max_steps=100, on_step=lambda i: tr.stop() if i == 5 else None)
    assert res.reason == "stopped"
    assert tr.step == 4  # the segment of steps 5..6 was cut short and discarded
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
    tr = make(job, pipeline=pipeline, m=2)
    w, d = 1, 12
    res = tr.run(max_steps=400, until=ticket_condition(w, d))
    assert res.reason == "condition" and res.last is not None
    assert is_winning_ticket(tr.points[-1].a, 2 * w, d) and tr.points[-1].j >= 2
    assert not any(is_winning_ticket(r.a, 2 * w, d) for r in tr.points[1:-1])  # point 1 never wins
    t = res.last.p
    assert t == tr.step
    serial = make(job, m=2)
    serial.run(max_steps=t)
    assert serial.commitments() == tr.commitments()
    assert tr.point_bytes(len(tr.points)) == serial.point_bytes(len(serial.points))  # no trace of speculation


def test_kept_points_and_replay(job) -> None:  # type: ignore[no-untyped-def]
    full = make(job)
    full.run(max_steps=12)
    sparse = make(job, KeepPolicy(every=5))
    sparse.run(max_steps=12)
    assert sparse.kept_points() == [0, 5, 10, 11, 12]
    assert sparse.commitments() == full.commitments()
    for j in range(13):
        assert sparse.point_bytes(j) == full.point_bytes(j)
    starts = sparse.segment_starts([12, 3, 7, 1])
    assert sorted(starts) == [3, 7, 12]  # segment 1 starts at the stored checkpoint: not carried
    assert starts[7] == full.point_bytes(6)
    with pytest.raises(IndexError):
        sparse.segment_starts([13])


def test_memory_cap_doubles_interval(job) -> None:  # type: ignore[no-untyped-def]
    spec, _, s0 = job
    size = sum(t.numel() * t.element_size() for t in s0.values())
    tr = make(job, KeepPolicy(every=1, max_bytes=4 * size))
    tr.run(max_steps=16)
    assert tr.interval > 1
    ref = make(job)
    ref.run(max_steps=16)
    assert tr.point_bytes(11) == ref.point_bytes(11)


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
    assert worst < 0.5  # a blocked loop would lag by the whole run (seconds); 0.5 s leaves room for a loaded CI machine


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


def test_invalid_arguments(job) -> None:  # type: ignore[no-untyped-def]
    spec, ds, s0 = job
    with pytest.raises(ValueError):
        Trainer(spec, ds, s0, b"short", select_backend("cpu"))
    with pytest.raises(ValueError):
        Trainer(spec, ds, s0, SEED, select_backend("cpu"), m=0)
    with pytest.raises(ValueError):
        Trainer(spec, ds, s0, SEED, select_backend("cpu"), budget=0)


@pytest.mark.parametrize("m", [1, 2])
def test_pipelined_equals_serial_with_kept_points(job, m: int) -> None:  # type: ignore[no-untyped-def]
    a = make(job, KeepPolicy(every=3), pipeline=True, m=m)
    b = make(job, KeepPolicy(every=3), pipeline=False, m=m)
    ra, rb = a.run(max_steps=10 * m), b.run(max_steps=10 * m)
    assert (ra.reason, ra.steps_run) == (rb.reason, rb.steps_run) == ("budget", 10 * m)
    assert a.points == b.points and a.kept_points() == b.kept_points() == [0, 3, 6, 9, 10]
    assert a.point_bytes(10) == b.point_bytes(10) and a.point_bytes(7) == b.point_bytes(7)
    assert a.run(max_steps=0).steps_run == 0

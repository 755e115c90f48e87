"""The miner's loop: train segment after segment, commit at every point, stop on a ticket.

For a seal attempt (seal seed, ``s_0``, segment length ``m``, budget point ``r``) the
trainer computes (docs/protocol.md §14, :mod:`pouw.commit`)::

    A_0 = seed
    for j = 1, 2, ...:                                   # segment j: steps p_{j-1}+1 .. p_j
        s_{p_j} = run_segment(s_{p_{j-1}}, batches from A_{max(j-2, 0)})
        c_j = state_hash(s_{p_j});  A_j = H(A_{j-1} || c_j)

and records ``PointRecord(j, p_j, l_j, c_j, A_j)``. It stops when asked (:meth:`Trainer.stop`,
checked before every step), when a stop condition holds on a point (e.g.
:func:`ticket_condition`), or when the next segment would pass ``max_steps``. Because the
batches of segment ``j+1`` come from ``A_{j-1}``, the state hash of point ``j`` does not
hold up the next segment: with ``pipeline=True`` it runs in a worker thread (from a host
snapshot of the state, taken asynchronously on a GPU) while segment ``j+1`` trains.

**Which states to keep.** A block's payload carries the start state of every recomputed
segment (the anchored ones and the challenges, known only once the ticket is), and the
node keeps the job's new checkpoint. Points' states are kept as tensors (no copy: a step
returns new tensors) every ``interval`` points (``s_0`` and the last two points always);
``interval`` starts at ``KeepPolicy.every`` and doubles, dropping off-grid points, when the
kept bytes pass ``KeepPolicy.max_bytes`` (default 1 GiB). Any other point's state is
replayed from the kept point before it, exactly, and checked against its commitment.
"""
from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pouw.commit import (
    batch_accumulator_index,
    is_ticket_point,
    is_winning_ticket,
    next_accumulator,
    next_point,
)
from pouw.datasets import Dataset
from pouw.engine import check_compatible, compute_step, run_segment, state_to_device
from pouw.errors import StateError

if TYPE_CHECKING:
    from pouw.arith import Backend
    from pouw.spec import JobSpec
    from pouw.state import State

__all__ = [
    "PointRecord",
    "KeepPolicy",
    "RunResult",
    "StopCondition",
    "ticket_condition",
    "Trainer",
]

DEFAULT_KEEP_BYTES: Final = 1024 * 1024 * 1024


@dataclass(frozen=True)
class PointRecord:
    """What the chain sees of point ``j``: where it is, its state hash and accumulator."""

    j: int  # point index, 1-based
    p: int  # step index of the point (s_p is the committed state)
    length: int  # l_j = p_j - p_{j-1}: steps in segment j, the draw's weight in steps
    c: bytes  # c_j = state_hash(s_{p_j})
    a: bytes  # A_j = H(A_{j-1} || c_j)


StopCondition = Callable[[PointRecord], bool]


def ticket_condition(work_units: int, difficulty: int) -> StopCondition:
    """Stop condition of a miner: point ``j >= 2`` is a winning ticket of weight ``l_j * w``."""
    return lambda rec: is_ticket_point(rec.j) and is_winning_ticket(rec.a, rec.length * work_units, difficulty)


@dataclass(frozen=True)
class KeepPolicy:
    """Which points' states the trainer keeps (see the module docstring)."""

    every: int = 1  # initial interval in points; 1 keeps every point's state
    max_bytes: int = DEFAULT_KEEP_BYTES  # cap on kept state bytes; the interval doubles past it

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"KeepPolicy.every must be >= 1, got {self.every}")


@dataclass(frozen=True)
class RunResult:
    """Why :meth:`Trainer.run` returned, and the last point it recorded."""

    reason: str  # "condition" | "stopped" | "budget"
    last: PointRecord | None
    steps_run: int  # steps committed by this call (whole segments)
    seconds: float


class _Stopped(Exception):
    """Raised inside a segment when :meth:`Trainer.stop` was called (segment discarded)."""


def _host_snapshot(state: "State") -> tuple["State", Any]:
    """The state's tensors on the host for hashing, and an event to wait on before reading.

    On CPU the tensors themselves (a step never modifies its input). On a GPU, copies into
    pinned host memory issued asynchronously, and a CUDA event recorded after them, so the
    device keeps computing while the worker thread waits and hashes.
    """
    import torch

    if all(t.device.type == "cpu" for t in state.values()):
        return state, None
    host = {}
    for name, t in state.items():
        buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        host[name] = buf
    event = torch.cuda.Event()
    event.record()
    return host, event


class Trainer:
    """One trajectory from ``s_0`` under one seal seed and segment length, on one backend.

    ``budget`` is the job's remaining step budget ``r`` (a point of the trajectory when it
    falls inside it), or None for a job without one (a standing job). A stopped trainer
    stays stopped: a miner whose template changes builds a new one.
    """

    def __init__(
        self,
        spec: JobSpec,
        dataset: Dataset,
        start_state: State,
        seed: bytes,
        backend: Backend,
        *,
        m: int = 1,
        budget: int | None = None,
        keep: KeepPolicy = KeepPolicy(),
        pipeline: bool = False,
    ) -> None:
        from pouw.state import state_digest

        check_compatible(spec, dataset)
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        next_point(0, m, budget)  # validates m and budget
        self.spec = spec
        self.dataset = dataset
        self.seed = bytes(seed)
        self.backend = backend
        self.m = m
        self.budget = budget
        self.keep = keep
        self.pipeline = pipeline
        s0 = state_to_device(start_state, backend.device)
        self.h0: bytes = state_digest(start_state, spec)
        self.a0: bytes = self.seed
        self.points: list[PointRecord] = []
        self._accs: list[bytes] = [self.a0]
        self._state: State = s0
        self._state_nbytes = _nbytes(s0)
        self._kept: dict[int, State] = {0: s0}
        self._recent: dict[int, State] = {0: s0}  # the last two points' states, always kept
        self.interval: int = keep.every
        self._stop = threading.Event()
        self._run_lock = threading.Lock()

    # ------------------------------------------------------------------ progress

    @property
    def step(self) -> int:
        """``t``: the step index of the last committed point (0 before the first)."""
        return self.points[-1].p if self.points else 0

    @property
    def accumulator(self) -> bytes:
        """``A_n`` (``A_0`` before the first point)."""
        return self._accs[-1]

    @property
    def state(self) -> State:
        """``s_t`` on the backend's device."""
        return self._state

    def commitments(self) -> list[bytes]:
        """``[c_1, ..., c_n]``, as listed in a block's payload."""
        return [r.c for r in self.points]

    def batch_seed(self, j: int) -> bytes:
        """The accumulator value that keys the batches of segment ``j``."""
        return self._accs[batch_accumulator_index(j)]

    def point_index(self, p: int) -> int:
        """The index ``j`` of the point at step ``p`` (0 for ``s_0``)."""
        if p == 0:
            return 0
        for rec in self.points:
            if rec.p == p:
                return rec.j
        raise IndexError(f"step {p} is not a committed point of this trajectory")

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Ask the loop to stop; no step starts after this call returns."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(
        self,
        max_steps: int | None = None,
        until: StopCondition | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> RunResult:
        """Run segments until ``until(point)``, :meth:`stop`, or until the next segment
        would end past ``max_steps`` more steps (default: what is left of ``spec.steps``).

        ``on_step(i)`` is called after each step (in pipelined mode, steps of a segment
        that is then discarded are reported too). Blocking: from async code use
        :meth:`run_async`.
        """
        if not self._run_lock.acquire(blocking=False):
            raise RuntimeError("Trainer.run is already running")
        try:
            if max_steps is None:
                max_steps = max(0, int(self.spec.steps) - self.step)
            limit = self.step + max_steps
            started = time.perf_counter()
            first = self.step
            if self.pipeline:
                reason, last = self._run_pipelined(limit, until, on_step)
            else:
                reason, last = self._run_serial(limit, until, on_step)
            return RunResult(reason, last, self.step - first, time.perf_counter() - started)
        finally:
            self._run_lock.release()

    def _segment(self, state: State, j: int, start: int, end: int, on_step: Callable[[int], None] | None) -> State:
        seed = self.batch_seed(j)
        for i in range(start + 1, end + 1):
            if self._stop.is_set():
                raise _Stopped
            state = compute_step(self.spec, self.dataset, state, seed, i, self.backend)
            if on_step is not None:
                on_step(i)
        return state

    def _commit(self, state: State, end: int, c: bytes) -> PointRecord:
        j = len(self.points) + 1
        rec = PointRecord(j, end, end - self.step, c, next_accumulator(self._accs[-1], c))
        self.points.append(rec)
        self._accs.append(rec.a)
        self._state = state
        self._recent = {k: v for k, v in self._recent.items() if k >= j - 1}
        self._recent[j] = state
        self._keep(j, state)
        return rec

    def _run_serial(
        self, limit: int, until: StopCondition | None, on_step: Callable[[int], None] | None
    ) -> tuple[str, PointRecord | None]:
        from pouw.state import state_digest

        last: PointRecord | None = None
        while True:
            end = next_point(self.step, self.m, self.budget)
            if end > limit:
                return "budget", last
            try:
                state = self._segment(self._state, len(self.points) + 1, self.step, end, on_step)
            except _Stopped:
                return "stopped", last
            last = self._commit(state, end, state_digest(state, self.spec))
            if until is not None and until(last):
                return "condition", last

    def _run_pipelined(
        self, limit: int, until: StopCondition | None, on_step: Callable[[int], None] | None
    ) -> tuple[str, PointRecord | None]:
        """Like :meth:`_run_serial`, but point ``j``'s state is hashed in a worker thread
        while segment ``j+1`` trains (its batches come from ``A_{j-1}``, already known).
        Segment ``j+1`` is speculative: discarded if point ``j`` wins or the trainer is
        stopped. Records and states are identical to the serial loop."""
        from pouw.state import state_digest

        last: PointRecord | None = None
        pending: tuple[int, State, Future[bytes]] | None = None

        def digest(host: State, event: Any) -> bytes:
            if event is not None:
                event.synchronize()
            return state_digest(host, self.spec)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pouw-hash") as pool:
            while True:
                start = pending[0] if pending is not None else self.step
                base = pending[1] if pending is not None else self._state
                j = len(self.points) + 1 + (1 if pending is not None else 0)
                end = next_point(start, self.m, self.budget)
                new_state: State | None = None
                stopped = False
                if end <= limit:
                    try:
                        new_state = self._segment(base, j, start, end, on_step)
                    except _Stopped:
                        stopped = True
                if pending is not None:
                    p_end, p_state, fut = pending
                    pending = None
                    last = self._commit(p_state, p_end, fut.result())
                    if until is not None and until(last):
                        return "condition", last
                if new_state is None:
                    return ("stopped" if stopped else "budget"), last
                pending = (end, new_state, pool.submit(digest, *_host_snapshot(new_state)))

    async def run_async(
        self,
        max_steps: int | None = None,
        until: StopCondition | None = None,
        executor: Executor | None = None,
    ) -> RunResult:
        """:meth:`run` in a worker thread, so the event loop keeps serving.

        Cancelling the awaiting task stops the trainer (the worker ends after its
        current step).
        """
        loop = asyncio.get_running_loop()
        call = functools.partial(self.run, max_steps, until)
        try:
            return await loop.run_in_executor(executor, call)
        except asyncio.CancelledError:
            self.stop()
            raise

    # ------------------------------------------------------------------ kept states

    def _keep(self, j: int, state: State) -> None:
        if j % self.interval != 0:
            return
        self._kept[j] = state
        while self._state_nbytes * len(self._kept) > self.keep.max_bytes and len(self._kept) > 1:
            self.interval *= 2
            for i in [i for i in self._kept if i != 0 and i % self.interval != 0]:
                del self._kept[i]
            if self.interval > max(1, len(self.points)) * 2:
                break  # only s_0 (and grid points) left; nothing more to thin

    def kept_points(self) -> list[int]:
        """Indices of the points whose states are held in memory (``0`` always)."""
        return sorted(set(self._kept) | set(self._recent))

    def point_state(self, j: int) -> State:
        """The state at point ``j`` (``0 <= j <= n``), replayed from the kept point before it
        if needed. A replayed state is checked against ``c_j``; a mismatch means the step
        is not deterministic on this machine and raises :class:`StateError`."""
        from pouw.state import state_digest

        n = len(self.points)
        if not 0 <= j <= n:
            raise IndexError(f"point {j} not in trajectory 0..{n}")
        if j in self._recent:
            return self._recent[j]
        if j in self._kept:
            return self._kept[j]
        base = max(i for i in self._kept if i <= j)
        state = self._kept[base]
        for seg in range(base + 1, j + 1):
            start = self.points[seg - 2].p if seg >= 2 else 0
            state = run_segment(self.spec, self.dataset, state, self.batch_seed(seg), start + 1,
                                self.points[seg - 1].p, self.backend)
        found = state_digest(state, self.spec)
        if found != self.points[j - 1].c:
            raise StateError(
                f"replay of point {j} disagrees with its commitment (non-deterministic step?)",
                expected=self.points[j - 1].c,
                got=found,
            )
        return state

    def point_bytes(self, j: int) -> bytes:
        """Canonical bytes of the state at point ``j``."""
        from pouw.state import serialize_state

        return serialize_state(self.spec, self.point_state(j))

    def segment_starts(self, segments: Iterable[int]) -> dict[int, bytes]:
        """``{j: canonical bytes of s_{p_{j-1}}}`` for each segment ``j`` to be recomputed by
        validators, except segment 1 (its start is the job's stored checkpoint)."""
        out: dict[int, bytes] = {}
        n = len(self.points)
        for j in sorted(set(segments)):
            if not 1 <= j <= n:
                raise IndexError(f"segment {j} not in trajectory 1..{n}")
            if j >= 2:
                out[j] = self.point_bytes(j - 1)
        return out


def _nbytes(state: "State") -> int:
    return sum(t.numel() * t.element_size() for t in state.values())

"""The miner's loop: run steps 1, 2, ... of a trajectory, commit to each, stop on a ticket.

For a seal attempt (seed, ``s_0``) the trainer computes, for ``i = 1, 2, ...``::

    s_i = compute_step(spec, dataset, s_{i-1}, seed, i, backend)
    h_i = state_hash(serialize_state(spec, s_i))
    a_i = H(a_{i-1} || h_i)            # a_0 = H(seed || h_0)

and records ``StepRecord(i, h_i, a_i)``. It stops when asked (:meth:`Trainer.stop`,
checked before every step), when a stop condition holds (e.g. :func:`ticket_condition`),
or when the step budget is spent. With ``pipeline=True`` the serialisation and hash of
``s_i`` run in a worker thread while step ``i+1`` computes (same records, same states).

**Which states to keep.** A block's payload needs ``s_{i-1}`` for the ticket step and
for each challenged step, and the challenges are known only once the ticket ``a_t`` is
(:func:`pouw.commit.challenge_indices`). Keeping every serialised state costs
``t x state_bytes``: fine for a small MLP (digits 64-128-10: 83 kB a state, 1000 steps
~ 83 MB) but not for a large one (784-1024-1024-10: 14.9 MB a state, 15 GB for 1000).
So the trainer keeps ``s_t`` and ``s_{t-1}`` (the ticket step needs it) and a
*checkpoint* every ``interval`` steps (``s_0`` always), and rebuilds any other state by
replaying from the checkpoint before it, which is exact (the step is deterministic)
and costs at most ``interval - 1`` steps per requested state. ``interval`` starts at
``KeepPolicy.every`` and doubles (dropping the checkpoints off the new grid) whenever
the kept bytes pass ``KeepPolicy.max_bytes`` (default 1 GiB). Preparing a payload with
``k`` challenges then costs up to ``k x (interval - 1)`` extra steps: for the large MLP
after 1000 steps, ``interval = 16`` and up to 8 x 15 = 120 replayed steps (about 60 on
average); a miner with more memory raises ``max_bytes``.
"""
from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pouw.commit import challenge_indices, initial_accumulator, is_winning_ticket, next_accumulator
from pouw.datasets import Dataset
from pouw.engine import check_compatible, compute_step, state_to_device
from pouw.errors import StateError

if TYPE_CHECKING:
    from pouw.arith import Backend
    from pouw.spec import JobSpec
    from pouw.state import State

__all__ = [
    "StepRecord",
    "KeepPolicy",
    "RunResult",
    "StopCondition",
    "ticket_condition",
    "Trainer",
]

DEFAULT_KEEP_BYTES: Final = 1024 * 1024 * 1024


@dataclass(frozen=True)
class StepRecord:
    """What the chain sees of step ``i``: the state hash ``h`` and the accumulator ``a``."""

    i: int
    h: bytes  # h_i = state_hash(s_i)
    a: bytes  # a_i = H(a_{i-1} || h_i)


StopCondition = Callable[[StepRecord], bool]


def ticket_condition(work_units: int, difficulty: int) -> StopCondition:
    """Stop condition of a miner: step ``i`` is a winning ticket."""
    return lambda rec: is_winning_ticket(rec.a, work_units, difficulty)


@dataclass(frozen=True)
class KeepPolicy:
    """Which serialised states the trainer keeps (see the module docstring)."""

    every: int = 1  # initial checkpoint interval; 1 keeps every state
    max_bytes: int = DEFAULT_KEEP_BYTES  # cap on kept state bytes; the interval doubles past it

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"KeepPolicy.every must be >= 1, got {self.every}")


@dataclass(frozen=True)
class RunResult:
    """Why :meth:`Trainer.run` returned, and the last step it recorded."""

    reason: str  # "condition" | "stopped" | "budget"
    last: StepRecord | None
    steps_run: int
    seconds: float


class Trainer:
    """One trajectory from ``s_0`` under one seal seed, on one backend.

    A stopped trainer stays stopped: a miner whose template changed builds a new one.
    """

    def __init__(
        self,
        spec: JobSpec,
        dataset: Dataset,
        start_state: State,
        seed: bytes,
        backend: Backend,
        keep: KeepPolicy = KeepPolicy(),
        pipeline: bool = False,
    ) -> None:
        from pouw.state import serialize_state, state_hash

        check_compatible(spec, dataset)
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        self.spec = spec
        self.dataset = dataset
        self.seed = bytes(seed)
        self.backend = backend
        self.keep = keep
        self.pipeline = pipeline  # hash state i while step i+1 computes (see _run_pipelined)
        s0_bytes = serialize_state(spec, start_state)
        self.h0: bytes = state_hash(s0_bytes)
        self.a0: bytes = initial_accumulator(self.seed, self.h0)
        self.records: list[StepRecord] = []
        self.interval: int = keep.every
        self._kept: dict[int, bytes] = {0: s0_bytes}
        self._kept_bytes = len(s0_bytes)
        self._state: State = state_to_device(start_state, backend.device)
        self._state_bytes: bytes = s0_bytes
        self._prev_state_bytes: bytes | None = None
        self._stop = threading.Event()
        self._run_lock = threading.Lock()

    # ------------------------------------------------------------------ progress

    @property
    def step(self) -> int:
        """``t``: the number of steps run so far."""
        return len(self.records)

    @property
    def accumulator(self) -> bytes:
        """``a_t`` (``a_0`` before the first step)."""
        return self.records[-1].a if self.records else self.a0

    @property
    def state(self) -> State:
        """``s_t`` on the backend's device."""
        return self._state

    def step_hashes(self) -> list[bytes]:
        """``[h_1, ..., h_t]``, as listed in a block."""
        return [r.h for r in self.records]

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
        on_step: Callable[[StepRecord], None] | None = None,
    ) -> RunResult:
        """Run steps ``t+1, t+2, ...`` until ``until(record)``, :meth:`stop` or ``max_steps`` more.

        ``max_steps`` defaults to what is left of ``spec.steps``. Blocking: from async
        code use :meth:`run_async`.
        """
        if not self._run_lock.acquire(blocking=False):
            raise RuntimeError("Trainer.run is already running")
        try:
            if max_steps is None:
                max_steps = max(0, int(self.spec.steps) - self.step)
            started = time.perf_counter()
            if self.pipeline:
                reason, last, steps_run = self._run_pipelined(max_steps, until, on_step)
            else:
                reason, last, steps_run = self._run_serial(max_steps, until, on_step)
            return RunResult(reason, last, steps_run, time.perf_counter() - started)
        finally:
            self._run_lock.release()

    def _commit(self, i: int, state: State, data: bytes, h: bytes) -> StepRecord:
        rec = StepRecord(i, h, next_accumulator(self.accumulator, h))
        self._prev_state_bytes = self._state_bytes  # s_{t-1}: every payload needs it (ticket step)
        self._state, self._state_bytes = state, data
        self.records.append(rec)
        self._keep(i, data)
        return rec

    def _serialize_and_hash(self, state: State) -> tuple[bytes, bytes]:
        from pouw.state import serialize_state, state_hash

        data = serialize_state(self.spec, state)
        return data, state_hash(data)

    def _run_serial(
        self, max_steps: int, until: StopCondition | None, on_step: Callable[[StepRecord], None] | None
    ) -> tuple[str, StepRecord | None, int]:
        last: StepRecord | None = None
        steps_run = 0
        while steps_run < max_steps:
            if self._stop.is_set():
                return "stopped", last, steps_run
            i = self.step + 1
            new_state = compute_step(self.spec, self.dataset, self._state, self.seed, i, self.backend)
            last = self._commit(i, new_state, *self._serialize_and_hash(new_state))
            steps_run += 1
            if on_step is not None:
                on_step(last)
            if until is not None and until(last):
                return "condition", last, steps_run
        return "budget", last, steps_run

    def _run_pipelined(
        self, max_steps: int, until: StopCondition | None, on_step: Callable[[StepRecord], None] | None
    ) -> tuple[str, StepRecord | None, int]:
        """Like :meth:`_run_serial`, but state ``i`` is serialised and hashed in a worker
        thread while step ``i+1`` computes (keccak and torch release the GIL). Step ``i+1``
        is speculative: if step ``i`` wins or :meth:`stop` is called, it is discarded.
        Records, states and results are identical to the serial loop."""
        last: StepRecord | None = None
        steps_run = computed = 0
        pending: tuple[int, State, Future[tuple[bytes, bytes]]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pouw-hash") as pool:
            while True:
                go_on = computed < max_steps and not self._stop.is_set()
                if go_on:
                    base = pending[1] if pending is not None else self._state
                    i = self.step + (2 if pending is not None else 1)
                    new_state = compute_step(self.spec, self.dataset, base, self.seed, i, self.backend)
                    computed += 1
                if pending is not None:
                    j, state_j, fut = pending
                    pending = None
                    last = self._commit(j, state_j, *fut.result())
                    steps_run += 1
                    if on_step is not None:
                        on_step(last)
                    if until is not None and until(last):
                        return "condition", last, steps_run
                    if self._stop.is_set():
                        return "stopped", last, steps_run
                if not go_on:
                    return ("stopped" if self._stop.is_set() else "budget"), last, steps_run
                pending = (i, new_state, pool.submit(self._serialize_and_hash, new_state))

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

    def _keep(self, i: int, data: bytes) -> None:
        if i % self.interval != 0:
            return
        self._kept[i] = data
        self._kept_bytes += len(data)
        while self._kept_bytes > self.keep.max_bytes and len(self._kept) > 1:
            self.interval *= 2
            for j in [j for j in self._kept if j != 0 and j % self.interval != 0]:
                self._kept_bytes -= len(self._kept.pop(j))
            if self.interval > max(1, self.step) * 2:
                break  # only s_0 (and grid points) left; nothing more to thin

    def kept_steps(self) -> list[int]:
        """Indices of the states held in memory (``0`` always)."""
        return sorted(self._kept)

    def state_bytes(self, i: int) -> bytes:
        """Serialised ``s_i`` for ``0 <= i <= t``, replayed from the checkpoint before it if needed.

        A replayed state is checked against the recorded ``h_i``; a mismatch means the
        step is not deterministic on this machine and raises :class:`StateError`.
        """
        from pouw.state import deserialize_state, serialize_state, state_hash

        if not 0 <= i <= self.step:
            raise IndexError(f"state {i} not in trajectory 0..{self.step}")
        if i == self.step:
            return self._state_bytes
        if i == self.step - 1 and self._prev_state_bytes is not None:
            return self._prev_state_bytes
        if i in self._kept:
            return self._kept[i]
        base = max(j for j in self._kept if j <= i)
        state = state_to_device(deserialize_state(self.spec, self._kept[base]), self.backend.device)
        for j in range(base + 1, i + 1):
            state = compute_step(self.spec, self.dataset, state, self.seed, j, self.backend)
        data = serialize_state(self.spec, state)
        if state_hash(data) != self.records[i - 1].h:
            raise StateError(
                f"replay of step {i} disagrees with the recorded hash (non-deterministic step?)",
                expected=self.records[i - 1].h,
                got=state_hash(data),
            )
        return data

    def payload_states(self, steps: Iterable[int]) -> dict[int, bytes]:
        """``{i: serialised s_{i-1}}`` for each step ``i`` to be recomputed by validators
        (the ticket step and the challenged steps)."""
        out: dict[int, bytes] = {}
        for i in sorted(set(steps)):
            if not 1 <= i <= self.step:
                raise IndexError(f"step {i} not in trajectory 1..{self.step}")
            out[i] = self.state_bytes(i - 1)
        return out

    def seal_payload(self, k: int) -> dict[int, bytes]:
        """``{i: s_{i-1} bytes}`` for the ticket step ``t`` (the last step run) and its
        ``k`` challenges ``challenge_indices(a_t, t, k)``: what a block's work payload
        carries besides ``s_t = state_bytes(t)``. Call after :meth:`run` has returned."""
        t = self.step
        if t < 1:
            raise IndexError("no step has been run")
        return self.payload_states(challenge_indices(self.accumulator, t, k) + [t])

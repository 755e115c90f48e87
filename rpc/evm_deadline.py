"""A wall-clock limit for simulated EVM calls (geth's ``--rpc.evmtimeout``).

py-evm is pure Python: a thread running a call cannot be interrupted from outside, so
the limit is checked from inside. Every opcode charges gas through
``Computation.consume_gas`` before it runs (so do calls; memory expansion is charged on
the gas meter directly, after its opcode's own charge); the simulation's computation
class checks the calling thread's deadline there and raises :class:`CallTimeout`. An
infinite loop therefore stops within one opcode of its deadline, however much gas it
was given. One opcode can still run long on its own: a precompile's arithmetic (modexp
on 1 KiB operands: about 0.9 s of Python big-integer work, holding the GIL) is one step.

``eth_call`` is first tried on the event loop itself (:func:`on_the_loop`), where a
cheap call is answered without a hand-over to a thread; there the same checks also
stop it (:class:`LeaveTheLoop`) after a 2 ms budget, at any gas charge above 100,000, at
memory past 256 KiB and before any precompile runs, and it starts again in a thread.
Calls with over 32 KiB of data or 64 access-list entries are not tried there
(:func:`fits_on_the_loop`): what runs before the first gas charge grows with them.

:class:`CallTimeout` is not a py-evm ``VMError``: py-evm does not turn it into a failed
computation but lets it unwind the whole call, and the simulation reverts its state to
the snapshot it took before the call. Block import and block building use the chain's
own VM class, which has no such check: only simulations can time out.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator, TypeVar, cast

from eth.abc import ComputationAPI, MessageAPI, StateAPI, TransactionContextAPI, VirtualMachineAPI
from eth.vm.computation import BaseComputation
from rpc.errors import RpcLayerError


class CallTimeout(RpcLayerError):
    """A simulated call ran past its wall-clock limit; ``seconds`` is that limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"execution aborted (timeout = {seconds:g}s)")


class LeaveTheLoop(RpcLayerError):
    """A call tried on the event loop (:func:`on_the_loop`) went past its budget or
    reached something that may run long in one step: it must start again in an
    executor thread. Its state changes are reverted like a timed-out call's."""


#: Most wall-clock time a call tried on the event loop may take (:func:`on_the_loop`).
INLINE_BUDGET_S = 0.002
#: Largest single gas charge a call on the event loop may make: a charge is paid before
#: the work it prices, and above this the work (memory of hundreds of KiB, a call
#: forwarding much gas) may outlast the budget before the next check.
MAX_INLINE_CHARGE = 100_000
#: Calls with more data or access-list entries than this are not tried on the loop:
#: their intrinsic gas, size checks and warm-up run over every byte and entry before
#: the first gas charge (2.4 MB of init code: about 14 ms there, before any check).
MAX_INLINE_DATA = 32 * 1024
MAX_INLINE_ACCESS_LIST = 64
#: Most memory a call on the event loop may use (py-evm charges memory expansion on the
#: gas meter directly, past ``consume_gas``: it is checked here instead).
MAX_INLINE_MEMORY = 256 * 1024


class TimeShare:
    """A share of wall time some work may take: a token bucket of seconds, refilled at
    ``share`` seconds per second up to ``burst``; work starts only while the bucket
    holds what ``allows`` asks, and what it took (finished or not) is taken out.

    Used for calls tried on the event loop (``Services.loop_share``: a quarter, at least
    one budget's worth to start; however many expensive calls a client sends, the rest
    of the loop stays for every other request, and honest views, ~0.3 ms, hardly dent
    it) and for the precompiles that hold the GIL (:data:`GIL_PRECOMPILE_SHARE`)."""

    def __init__(self, share: float = 0.25, burst: float = 0.05, *, start: float | None = None) -> None:
        self.share = share
        self.burst = burst
        self._tokens = burst
        self._at = time.monotonic() if start is None else start

    def allows(self, now: float, need: float = INLINE_BUDGET_S) -> bool:
        """Refill to ``now``; whether the bucket holds ``need`` seconds."""
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.share)
        self._at = max(self._at, now)
        return self._tokens >= need

    def spend(self, seconds: float) -> None:
        self._tokens -= seconds


class PrecompileBusy(CallTimeout):
    """A simulated call reached a precompile that holds the GIL for its whole run while
    another such run is under way, or such runs already took the node's share of time
    (:data:`GIL_PRECOMPILE_SHARE`)."""

    def __init__(self) -> None:
        RpcLayerError.__init__(self, "execution aborted (precompile work over the node's share of time; retry later)")
        self.seconds = 0.0


#: Precompiles that run as one native step holding the GIL: modexp (0x05, Python's
#: big-integer ``pow``: 0.9 s for 1 KiB operands at 44.7M gas) and BLAKE2 F (0x09,
#: blake2b-py: 0.6 s for 50M rounds). While one runs, nothing else in the process does:
#: not the event loop, not block import.
GIL_PRECOMPILES = frozenset(n.to_bytes(20, "big") for n in (0x05, 0x09))
#: A call to them with at most this much gas is never held back: the precompile charges
#: its gas before it works, so this bounds the work (modexp: tens of ms).
GIL_PRECOMPILE_FREE_GAS = 1_000_000
#: Simulations may spend this share of wall time in those precompiles (with a burst
#: of one second); a heavier call past it is refused with :class:`PrecompileBusy`.
#: Eight clients calling modexp at the gas cap in a loop had raised eth_blockNumber's
#: p50 from 1.2 ms to 837 ms.
GIL_PRECOMPILE_SHARE = TimeShare(share=0.2, burst=1.0)
_GIL_PRECOMPILE_RUNNING = threading.Lock()


class _Deadline(threading.local):
    #: time.monotonic() value after which the running call is stopped; None: no limit.
    at: float | None = None
    seconds: float = 0.0
    #: On the event loop: stop (LeaveTheLoop) after this time.monotonic() value, at a
    #: large gas charge or at a precompile (pure-Python curve arithmetic, one step).
    inline_until: float | None = None


_DEADLINE = _Deadline()


@contextlib.contextmanager
def deadline(seconds: float | None, *, start: float | None = None) -> Iterator[None]:
    """Calls run by this thread inside the block stop ``seconds`` after ``start``
    (default: now). None or 0 means no limit. Nested blocks keep the earlier deadline."""
    previous_at, previous_seconds = _DEADLINE.at, _DEADLINE.seconds
    if seconds:
        at = (time.monotonic() if start is None else start) + seconds
        if previous_at is None or at < previous_at:
            _DEADLINE.at, _DEADLINE.seconds = at, seconds
    try:
        yield
    finally:
        _DEADLINE.at, _DEADLINE.seconds = previous_at, previous_seconds


def fits_on_the_loop(data_bytes: int, access_list_entries: int) -> bool:
    """Whether a call this size may be tried on the event loop at all."""
    return data_bytes <= MAX_INLINE_DATA and access_list_entries <= MAX_INLINE_ACCESS_LIST


@contextlib.contextmanager
def on_the_loop(budget_s: float = INLINE_BUDGET_S) -> Iterator[None]:
    """Calls run inside the block must finish within ``budget_s``, with no gas charge
    above :data:`MAX_INLINE_CHARGE` and no precompile, or raise :class:`LeaveTheLoop`:
    so that a cheap call can be answered on the event loop without the cost of handing
    it to a thread, and anything else leaves the loop within about the budget."""
    previous = _DEADLINE.inline_until
    _DEADLINE.inline_until = time.monotonic() + budget_s
    try:
        yield
    finally:
        _DEADLINE.inline_until = previous


def check_deadline(charge: int = 0) -> None:
    """Raise :class:`CallTimeout` if this thread's deadline has passed, or
    :class:`LeaveTheLoop` if a call on the event loop used up its budget or is about to
    pay a gas ``charge`` over :data:`MAX_INLINE_CHARGE`: what every gas charge of a
    simulation checks (and long work outside the EVM, with no charge)."""
    state = _DEADLINE
    at, inline_until = state.at, state.inline_until
    if at is None and inline_until is None:
        return
    now = time.monotonic()
    if at is not None and now > at:
        raise CallTimeout(state.seconds)
    if inline_until is not None and (now > inline_until or charge > MAX_INLINE_CHARGE):
        raise LeaveTheLoop("too long for the event loop")


def with_deadline(computation_class: type[ComputationAPI]) -> type[ComputationAPI]:
    """A subclass of ``computation_class`` whose every gas charge checks the deadline."""

    def consume_gas(self: BaseComputation, amount: int, reason: str) -> None:
        check_deadline(amount)
        self._gas_meter.consume_gas(amount, reason)

    base = cast(type[BaseComputation], computation_class)
    precompiles = frozenset(base.get_precompiles())

    def apply_computation(
        cls: type[BaseComputation],
        state: StateAPI,
        message: MessageAPI,
        transaction_context: TransactionContextAPI,
        parent_computation: ComputationAPI | None = None,
    ) -> ComputationAPI:
        apply = super(deadline_class, cls).apply_computation  # bound to cls: child computations stay ours
        if message.code_address in precompiles:
            if _DEADLINE.inline_until is not None:
                raise LeaveTheLoop("precompile: not on the event loop")
            if message.code_address in GIL_PRECOMPILES and message.gas > GIL_PRECOMPILE_FREE_GAS:
                # one at a time (threads checking the share together would all pass it)
                if not _GIL_PRECOMPILE_RUNNING.acquire(blocking=False):
                    raise PrecompileBusy()
                try:
                    started = time.monotonic()
                    if not GIL_PRECOMPILE_SHARE.allows(started, 0.0):
                        raise PrecompileBusy()
                    try:
                        return apply(state, message, transaction_context, parent_computation)  # type: ignore[call-arg]
                    finally:
                        GIL_PRECOMPILE_SHARE.spend(time.monotonic() - started)
                finally:
                    _GIL_PRECOMPILE_RUNNING.release()
        # py-evm's BaseComputation takes the parent; its ComputationAPI stub does not say so
        return apply(state, message, transaction_context, parent_computation)  # type: ignore[call-arg]

    def extend_memory(self: BaseComputation, start_position: int, size: int) -> None:
        if size and _DEADLINE.inline_until is not None and start_position + size > MAX_INLINE_MEMORY:
            raise LeaveTheLoop("memory too large for the event loop")
        base.extend_memory(self, start_position, size)

    deadline_class: type[BaseComputation] = type(f"Deadline{computation_class.__name__}", (computation_class,), {
        "consume_gas": consume_gas, "extend_memory": extend_memory, "apply_computation": classmethod(apply_computation),
    })
    return deadline_class


VM = TypeVar("VM", bound=VirtualMachineAPI)


def vm_with_deadline(vm_class: type[VM]) -> type[VM]:
    """``vm_class`` whose states run computations that honour the deadline (simulations only)."""
    state_class = vm_class.get_state_class()
    computation_class = with_deadline(state_class.computation_class)
    return vm_class.configure(
        __name__=f"Simulation{vm_class.__name__}",
        _state_class=state_class.configure(__name__=f"Simulation{state_class.__name__}", computation_class=computation_class),
    )

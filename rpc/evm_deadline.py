"""A wall-clock limit for simulated EVM calls (geth's ``--rpc.evmtimeout``).

py-evm is pure Python: a thread running a call cannot be interrupted from outside, so
the limit is checked from inside. Every opcode charges gas through
``Computation.consume_gas`` before it runs (so do memory expansion and calls); the
simulation's computation class checks the calling thread's deadline there and raises
:class:`CallTimeout`. An infinite loop therefore stops within one opcode of its
deadline, however much gas it was given.

:class:`CallTimeout` is not a py-evm ``VMError``: py-evm does not turn it into a failed
computation but lets it unwind the whole call, and the simulation reverts its state to
the snapshot it took before the call. Block import and block building use the chain's
own VM class, which has no such check: only simulations can time out.
"""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator, TypeVar

from eth.abc import ComputationAPI, VirtualMachineAPI
from eth.vm.computation import BaseComputation
from rpc.errors import RpcLayerError


class CallTimeout(RpcLayerError):
    """A simulated call ran past its wall-clock limit; ``seconds`` is that limit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"execution aborted (timeout = {seconds:g}s)")


class _Deadline(threading.local):
    #: time.monotonic() value after which the running call is stopped; None: no limit.
    at: float | None = None
    seconds: float = 0.0


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


def check_deadline() -> None:
    """Raise :class:`CallTimeout` if this thread's deadline has passed."""
    at = _DEADLINE.at
    if at is not None and time.monotonic() > at:
        raise CallTimeout(_DEADLINE.seconds)


def with_deadline(computation_class: type[ComputationAPI]) -> type[ComputationAPI]:
    """A subclass of ``computation_class`` whose every gas charge checks the deadline."""

    def consume_gas(self: BaseComputation, amount: int, reason: str) -> None:
        at = _DEADLINE.at
        if at is not None and time.monotonic() > at:
            raise CallTimeout(_DEADLINE.seconds)
        self._gas_meter.consume_gas(amount, reason)

    return type(f"Deadline{computation_class.__name__}", (computation_class,), {"consume_gas": consume_gas})


VM = TypeVar("VM", bound=VirtualMachineAPI)


def vm_with_deadline(vm_class: type[VM]) -> type[VM]:
    """``vm_class`` whose states run computations that honour the deadline (simulations only)."""
    state_class = vm_class.get_state_class()
    computation_class = with_deadline(state_class.computation_class)
    return vm_class.configure(
        __name__=f"Simulation{vm_class.__name__}",
        _state_class=state_class.configure(__name__=f"Simulation{state_class.__name__}", computation_class=computation_class),
    )

"""The method registry: one table of every JSON-RPC method and how to parse its params.

A method module builds a :class:`Registry` and decorates its handlers::

    eth = Registry()

    @eth.method("eth_getBalance", Param("address", parse_address), Param("block", parse_block_id, default="latest"))
    async def get_balance(ctx: CallContext, address: bytes, block: BlockId) -> str: ...

``create_app`` merges the namespaces' registries (``eth``, ``net``, ``web3``; later
``pouw`` from ``rpc/pouw_methods.py``). Handlers marked ``blocking=True`` are plain
functions run in the thread executor, so CPU-heavy work never runs on the event loop.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

from rpc.errors import InvalidParams
from rpc.jsontypes import Json

Handler = TypeVar("Handler", bound=Callable[..., object])

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One positional parameter: its name (for error messages), parser and default.

    A parameter with a default is optional: absent or ``null`` gives the default.
    """

    name: str
    parse: Callable[[Json], object]
    default: object = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Method:
    """A registered method: its handler, params, and where it runs."""

    name: str
    handler: Callable[..., object]
    """``handler(ctx, *params)``: a coroutine function, or a plain one when ``blocking``."""
    params: tuple[Param, ...]
    #: Run in the thread executor (a plain function) rather than on the loop (a coroutine).
    blocking: bool = False
    #: Needs a connection that can carry notifications (WebSocket): eth_subscribe.
    needs_connection: bool = False
    #: Runs EVM code (eth_call, ...): in the EVM executor, under the wall-clock limit.
    evm: bool = False

    @property
    def namespace(self) -> str:
        """``eth`` for ``eth_call``: what ``--rpc-api`` selects."""
        return self.name.split("_", 1)[0]

    def parse_params(self, raw: Json) -> list[object]:
        """Check and convert the request's ``params``; raise InvalidParams naming the param."""
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise InvalidParams("non-array args")
        if len(raw) > len(self.params):
            raise InvalidParams(f"too many arguments, want at most {len(self.params)}")
        values: list[object] = []
        for index, param in enumerate(self.params):
            value = raw[index] if index < len(raw) else None
            if value is None:
                if param.required:
                    raise InvalidParams(f"missing value for required argument {index} ({param.name})")
                values.append(param.default)
                continue
            try:
                values.append(param.parse(value))
            except InvalidParams as exc:
                raise InvalidParams(f"invalid argument {index} ({param.name}): {exc.message}") from None
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                raise InvalidParams(f"invalid argument {index} ({param.name}): {exc}") from None
        return values


@dataclass
class Registry:
    """A name -> :class:`Method` table, filled by the ``method`` decorator."""

    methods: dict[str, Method] = field(default_factory=dict)

    def method(
        self, name: str, *params: Param, blocking: bool = False, needs_connection: bool = False, evm: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as JSON-RPC method ``name`` (``evm``: a plain
        function that runs EVM code, in the EVM executor under the wall-clock limit)."""

        def register(handler: Handler) -> Handler:
            if name in self.methods:
                raise ValueError(f"method {name} registered twice")
            # the type checker accepts any callable here (a class too): what runs must be
            # a function, and a coroutine function unless it runs in an executor
            if not inspect.isfunction(handler):
                raise TypeError(f"method {name}: the handler must be a function, got {handler!r}")
            if not (blocking or evm) and not inspect.iscoroutinefunction(handler):
                raise TypeError(f"method {name}: a handler on the event loop must be a coroutine function")
            self.methods[name] = Method(name, handler, params, blocking or evm, needs_connection, evm)
            return handler

        return register

    def only(self, namespaces: "Iterable[str]") -> "Registry":
        """The methods of these namespaces only (``--rpc-api``)."""
        wanted = set(namespaces)
        return Registry({name: m for name, m in self.methods.items() if m.namespace in wanted})

    def merge(self, *others: "Registry") -> "Registry":
        """A registry with this one's methods and the others' (names must not clash)."""
        merged = Registry(dict(self.methods))
        for other in others:
            for name, method in other.methods.items():
                if name in merged.methods:
                    raise ValueError(f"method {name} registered twice")
                merged.methods[name] = method
        return merged

    def get(self, name: str) -> Method | None:
        return self.methods.get(name)


async def await_handler(handler: Callable[..., object], *args: object) -> object:
    """The answer of a handler that runs on the event loop (a coroutine function, as
    :meth:`Registry.method` checks)."""
    pending = handler(*args)
    if not inspect.isawaitable(pending):
        raise TypeError(f"{handler!r} is not a coroutine function")
    return await pending

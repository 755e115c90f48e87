"""The one place that runs requests and turns every outcome into a JSON-RPC answer.

``Dispatcher.handle_text`` takes a raw body (HTTP POST or WebSocket message) and returns
the response text, or None when nothing is to be sent (only notifications). Whatever a
handler raises, the client gets a well-formed error and the server keeps serving:
:class:`RpcError` as it is, anything else as -32603 (logged with its traceback here).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import safejson
from safejson import JsonTooDeep

from rpc.context import CallContext
from rpc.errors import (
    InternalError,
    InvalidRequest,
    MethodNotFound,
    NotificationsUnsupported,
    ParseError,
    ResponseTooLarge,
    RpcError,
)
from rpc.jsontypes import Json, JsonObject
from rpc.registry import Registry, await_handler

log = logging.getLogger("rpc")

Response = dict[str, object]
"""A response object; its ``result`` is what the handler answered (JSON-encodable)."""


def _reject_constant(name: str) -> Json:
    raise ValueError(f"invalid JSON literal {name}")


def decode_json(text: str | bytes, max_depth: int = 64) -> Json:
    """Strict JSON decoding; raises ParseError for anything that is not plain JSON.

    Nesting is checked first (``safejson``): CPython's C decoder recurses per level and a
    body of ``[[[[...`` a few MB deep can exhaust the C stack (a segfault, not an exception).
    """
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return safejson.loads(text, max_depth=max_depth, parse_constant=_reject_constant)
    except JsonTooDeep:
        raise ParseError(f"parse error: JSON nested deeper than {max_depth} levels") from None
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ParseError(f"parse error: {str(exc)[:200]}") from None


def encode_json(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


def error_response(error: RpcError, request_id: Json = None) -> Response:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


def _shape_error(request: Json) -> Response | None:
    """The answer to a batch member or body that is not a request object with a valid id."""
    if not isinstance(request, dict):
        return error_response(InvalidRequest("invalid request: not an object"))
    if not _valid_id(request.get("id")):
        return error_response(InvalidRequest("invalid request: bad id"))
    return None


def _too_large_answer(request: Json) -> Response | None:
    """-32003 for a batch member past the size limit (None for a notification; a member
    that is not a request object gets the answer it gets anyway)."""
    shape = _shape_error(request)
    if shape is not None or not isinstance(request, dict):
        return shape
    if "id" not in request:
        return None
    return error_response(ResponseTooLarge(), request.get("id"))


def _valid_id(value: Json) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


class Dispatcher:
    """Runs single requests and batches against a registry."""

    #: Requests of a batch run at once; the answer's size is checked between such groups.
    BATCH_GROUP = 32

    def __init__(
        self, registry: Registry, max_batch: int, max_json_depth: int = 64,
        max_batch_response_bytes: int = 25_000_000,
    ) -> None:
        self.registry = registry
        self.max_batch = max_batch
        self.max_json_depth = max_json_depth
        self.max_batch_response_bytes = max_batch_response_bytes

    async def handle_text(self, text: str | bytes, ctx: CallContext) -> str | None:
        """Answer a raw body: response JSON text, or None if nothing is owed."""
        try:
            payload = decode_json(text, self.max_json_depth)
        except ParseError as exc:
            return encode_json(error_response(exc))
        if isinstance(payload, list):
            return await self._batch_text(payload, ctx)
        answer = await self.handle_request(payload, ctx)
        return None if answer is None else encode_json(answer)

    async def _batch_text(self, batch: list[Json], ctx: CallContext) -> str | None:
        """A batch's answer, bounded in size: requests run in groups, and once the answers
        would pass ``max_batch_response_bytes`` the rest are answered -32003 without
        running (geth's rule), so a small batch cannot make the node build gigabytes."""
        if not batch:
            return encode_json(error_response(InvalidRequest("empty batch")))
        if len(batch) > self.max_batch:
            return encode_json(error_response(InvalidRequest(f"batch too large (at most {self.max_batch} requests)")))
        parts: list[str] = []
        size = 0
        full = False
        for start in range(0, len(batch), self.BATCH_GROUP):
            group = batch[start : start + self.BATCH_GROUP]
            if full:
                parts.extend(encode_json(a) for a in map(_too_large_answer, group) if a is not None)
                continue
            answers = await asyncio.gather(*(self.handle_request(item, ctx) for item in group))
            for item, answer in zip(group, answers):
                if answer is None:
                    continue
                text = encode_json(answer)
                if full or size + len(text) > self.max_batch_response_bytes:
                    full = True
                    too_large = _too_large_answer(item)
                    if too_large is None:
                        continue
                    text = encode_json(too_large)
                else:
                    size += len(text) + 1
                parts.append(text)
        return "[" + ",".join(parts) + "]" if parts else None

    async def handle_request(self, request: Json, ctx: CallContext) -> Response | None:
        """Answer one request object; None for a notification (no ``id``)."""
        shape = _shape_error(request)
        if shape is not None or not isinstance(request, dict):
            return shape
        request_id = request.get("id")
        is_notification = "id" not in request
        try:
            result = await self._run(request, ctx)
        except RpcError as exc:
            if is_notification:
                return None
            return error_response(exc, request_id)
        except Exception:  # noqa: BLE001 - the one place every failure becomes an answer
            log.exception("internal error in %r", request.get("method"))
            if is_notification:
                return None
            return error_response(InternalError("internal error"), request_id)
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _run(self, request: JsonObject, ctx: CallContext) -> object:
        if request.get("jsonrpc") != "2.0":
            raise InvalidRequest("invalid request: jsonrpc must be \"2.0\"")
        name = request.get("method")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("invalid request: method must be a non-empty string")
        method = self.registry.get(name)
        if method is None:
            raise MethodNotFound(name[:100])
        if method.needs_connection and ctx.connection is None:
            raise NotificationsUnsupported()
        args = method.parse_params(request.get("params"))
        if method.evm:
            return await ctx.services.run_evm(method.handler, ctx, *args)
        if method.blocking:
            return await ctx.services.run_blocking(method.handler, ctx, *args)
        return await await_handler(method.handler, ctx, *args)


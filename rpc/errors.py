"""Errors of the rpc package, each one a JSON-RPC error object.

Every error a method may raise on purpose derives from :class:`RpcError` and carries its
JSON-RPC ``code``, ``message`` and optional ``data``. The dispatcher (``rpc/dispatch.py``)
is the one place that turns exceptions into error objects: an :class:`RpcError` is sent
as it is, anything else becomes -32603 (internal error) and is logged, never sent as a
traceback.

Codes follow JSON-RPC 2.0 and, for Ethereum-specific failures, what geth answers:
-32000 for rejected transactions (with geth's messages) and 3 for reverts.
"""
from __future__ import annotations

from common.errors import PouwNodeError
from rpc.jsontypes import Json


class RpcLayerError(PouwNodeError):
    """Root of every error raised by the rpc package: the JSON-RPC errors below, the
    backend's (rpc/backend.py), the job view's (rpc/pouw_view.py), uploads'
    (rpc/uploads.py) and the call time limit's (rpc/evm_deadline.py)."""


class RpcError(RpcLayerError):
    """Root of every error the rpc package answers with (a JSON-RPC error object)."""

    code: int = -32603
    default_message: str = "internal error"

    def __init__(self, message: str | None = None, data: Json = None) -> None:
        self.message = message if message is not None else self.default_message
        self.data = data
        super().__init__(self.message)

    def to_json(self) -> dict[str, Json]:
        """The JSON-RPC ``error`` member for this error."""
        error: dict[str, Json] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(RpcError):
    """The body is not valid JSON."""

    code = -32700
    default_message = "parse error"


class InvalidRequest(RpcError):
    """The JSON is not a valid request object (or the batch is empty or too large)."""

    code = -32600
    default_message = "invalid request"


class MethodNotFound(RpcError):
    """No method of that name (geth's message)."""

    code = -32601

    def __init__(self, method: str) -> None:
        super().__init__(f"the method {method} does not exist/is not available")


class NotificationsUnsupported(RpcError):
    """eth_subscribe over a transport without notifications (plain HTTP), as geth says."""

    code = -32601
    default_message = "notifications not supported"


class InvalidParams(RpcError):
    """A parameter is missing, extra, or of the wrong shape; the message names it."""

    code = -32602
    default_message = "invalid params"


class InternalError(RpcError):
    """A bug or an unexpected failure inside a method."""

    code = -32603


class ServerError(RpcError):
    """geth's generic -32000 error: rejected transactions, missing state, and the like."""

    code = -32000
    default_message = "server error"


class ResourceNotFound(RpcError):
    """A block, filter or state the request names is not there (-32001, EIP-1474)."""

    code = -32001
    default_message = "resource not found"


class ResponseTooLarge(RpcError):
    """A batch's answer passed its size limit; this request was not run (-32003, geth's)."""

    code = -32003
    default_message = "response too large"


class LimitExceeded(RpcError):
    """A configured limit (log range, filters, subscriptions, results) was hit (-32005)."""

    code = -32005
    default_message = "limit exceeded"


class ExecutionReverted(RpcError):
    """An ``eth_call``/``eth_estimateGas`` reverted: code 3, ``data`` = the revert bytes.

    The message is geth's: "execution reverted" followed by ": <reason>" when the revert
    data is an ABI-encoded ``Error(string)``.
    """

    code = 3

    def __init__(self, revert_data: bytes) -> None:
        reason = decode_revert_reason(revert_data)
        message = "execution reverted" if reason is None else f"execution reverted: {reason}"
        super().__init__(message, data="0x" + revert_data.hex())
        self.revert_data = revert_data


ERROR_SELECTOR = bytes.fromhex("08c379a0")  # keccak("Error(string)")[:4]
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # keccak("Panic(uint256)")[:4]


def decode_revert_reason(data: bytes) -> str | None:
    """The reason of an ABI ``Error(string)`` or ``Panic(uint256)``, else None."""
    if len(data) >= 4 + 64 and data[:4] == ERROR_SELECTOR:
        body = data[4:]
        offset = int.from_bytes(body[0:32], "big")
        if offset + 32 > len(body):
            return None
        length = int.from_bytes(body[offset : offset + 32], "big")
        raw = body[offset + 32 : offset + 32 + length]
        if len(raw) != length:
            return None
        return raw.decode("utf-8", errors="replace")
    if len(data) == 4 + 32 and data[:4] == PANIC_SELECTOR:
        return f"panic: 0x{int.from_bytes(data[4:], 'big'):02x}"
    return None

"""The wire format: one WebSocket text frame per message, ``TYPE SP JSON-OBJECT``.

The type comes first so that its size limit is checked before any JSON is parsed; the
object holds the fields, byte strings as ``0x`` hex, integers as JSON numbers for small
bounded values and as ``0x`` hex quantities for total work (unbounded). Nothing here
can execute code: no pickle, no eval, JSON only, every field checked by type and size.

Messages (docs/p2p.md gives each field and why it exists):

========== ========= ================================================================
type       kind      purpose
========== ========= ================================================================
hello      handshake protocol version, chain id, genesis, head and total work
disconnect notice    why the sender closes the connection
new_block  notice    a new head: hash, number, total work (small; fetched on demand)
txs        notice    raw signed transactions (gossip)
get_blocks request   blocks by hash, with work payloads (announced blocks, parents)
get_chain  request   canonical blocks after the first known hash of a locator (sync)
get_blob   request   a chunk of a content-addressed blob (datasets, checkpoints)
blocks     response  answer to get_blocks / get_chain
blob       response  answer to get_blob
========== ========= ================================================================
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import safejson
from p2p.errors import MalformedMessage, OversizedMessage

KIB = 1024
MIB = 1024 * KIB

MAX_HASHES = 64
"""Most hashes in a get_blocks or a locator."""
MAX_BATCH = 128
"""Most blocks a get_chain may ask for."""
MAX_TXS = 64
"""Most transactions in one txs message."""
BLOB_CHUNK = 1 * MIB
"""Largest chunk of a blob in one blob response."""
MAX_JSON_DEPTH = 8
"""Deepest nesting of a message body (the deepest real one, ``blocks``, is 3). Checked
before parsing: a frame of ``[[[[...`` would otherwise overflow the C stack."""

PENALTY_MALFORMED = 40
PENALTY_OVERSIZED = 40
PENALTY_UNSOLICITED = 40


@dataclass(frozen=True)
class MessageType:
    name: str
    kind: str
    """"handshake", "notice", "request" or "response"."""
    max_bytes: Optional[int]
    """Frame size limit; None: the connection's limit (``P2PConfig.max_message_bytes``)."""


TYPES: dict[str, MessageType] = {
    t.name: t
    for t in (
        MessageType("hello", "handshake", 4 * KIB),
        MessageType("disconnect", "notice", 1 * KIB),
        MessageType("new_block", "notice", 1 * KIB),
        MessageType("txs", "notice", 512 * KIB),
        MessageType("get_blocks", "request", 8 * KIB),
        MessageType("get_chain", "request", 8 * KIB),
        MessageType("get_blob", "request", 1 * KIB),
        MessageType("blocks", "response", None),
        MessageType("blob", "response", 2 * BLOB_CHUNK + 4 * KIB),
    )
}


@dataclass(frozen=True)
class Message:
    type: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return TYPES[self.type].kind


def encode(type_: str, **body: Any) -> str:
    """The frame for a message; ``body`` values must already be JSON types (use ``hx``)."""
    if type_ not in TYPES:
        raise ValueError(f"unknown message type {type_!r}")
    return f"{type_} {json.dumps(body, separators=(',', ':'))}"


def decode(frame: str, max_bytes: int) -> Message:
    """Parse a frame: type, its size limit, then JSON (an object). Fields are checked by
    the handler with the parsers below."""
    type_, sep, rest = frame.partition(" ")
    kind = TYPES.get(type_)
    if not sep or kind is None:
        raise MalformedMessage("unknown message type", penalty=PENALTY_MALFORMED, got=type_[:32])
    limit = min(max_bytes, kind.max_bytes or max_bytes)
    if len(frame) > limit:
        raise OversizedMessage(
            f"{type_} message too large", penalty=PENALTY_OVERSIZED, expected=f"<= {limit}", got=len(frame)
        )
    try:
        body = safejson.loads(rest, max_depth=MAX_JSON_DEPTH)
    except safejson.JsonTooDeep:
        raise MalformedMessage(
            f"{type_}: body nested deeper than {MAX_JSON_DEPTH} levels", penalty=PENALTY_MALFORMED
        ) from None
    except (ValueError, RecursionError):
        raise MalformedMessage(f"{type_}: body is not JSON", penalty=PENALTY_MALFORMED) from None
    if not isinstance(body, dict):
        raise MalformedMessage(f"{type_}: body must be an object", penalty=PENALTY_MALFORMED)
    return Message(type_, body)


# --- encoding helpers ----------------------------------------------------------------


def hx(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def qty(value: int) -> str:
    return hex(int(value))


# --- field parsers: each raises MalformedMessage naming the field -----------------------


def _bad(name: str, what: str) -> MalformedMessage:
    return MalformedMessage(f"field {name!r}: {what}", penalty=PENALTY_MALFORMED)


def field_bytes(body: dict[str, Any], name: str, *, size: Optional[int] = None, max_size: Optional[int] = None) -> bytes:
    value = body.get(name)
    return parse_hex(value, name, size=size, max_size=max_size)


def parse_hex(value: Any, name: str, *, size: Optional[int] = None, max_size: Optional[int] = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise _bad(name, "expected 0x-prefixed hex")
    if max_size is not None and len(value) > 2 + 2 * max_size:
        raise _bad(name, f"longer than {max_size} bytes")
    try:
        data = bytes.fromhex(value[2:])
    except ValueError:
        raise _bad(name, "not hex") from None
    if size is not None and len(data) != size:
        raise _bad(name, f"expected {size} bytes, got {len(data)}")
    return data


def field_hash(body: dict[str, Any], name: str) -> bytes:
    return field_bytes(body, name, size=32)


def field_int(body: dict[str, Any], name: str, *, low: int = 0, high: int = 2**63) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(name, f"expected an integer in [{low}, {high}]")
    return value


def field_qty(body: dict[str, Any], name: str, *, bits: int = 256) -> int:
    value = body.get(name)
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 2 + bits // 4:
        raise _bad(name, "expected a 0x hex quantity")
    try:
        return int(value, 16)
    except ValueError:
        raise _bad(name, "not a hex quantity") from None


def field_str(body: dict[str, Any], name: str, *, max_len: int = 256) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > max_len:
        raise _bad(name, f"expected a string of at most {max_len} characters")
    return value


def field_list(body: dict[str, Any], name: str, *, max_len: int) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list) or len(value) > max_len:
        raise _bad(name, f"expected a list of at most {max_len} items")
    return value


def field_hashes(body: dict[str, Any], name: str, *, max_len: int = MAX_HASHES) -> list[bytes]:
    return [parse_hex(v, name, size=32) for v in field_list(body, name, max_len=max_len)]


def field_request_id(body: dict[str, Any]) -> int:
    return field_int(body, "id", high=2**53)


def parse_block_entries(body: dict[str, Any], *, max_len: int, max_block: int, max_payload: int) -> list[tuple[bytes, Optional[bytes]]]:
    """The ``blocks`` field of a response: ``[[block_rlp_hex, payload_hex|null], ...]``."""
    entries = []
    for item in field_list(body, "blocks", max_len=max_len):
        if not isinstance(item, list) or len(item) != 2:
            raise _bad("blocks", "each entry must be [block, payload|null]")
        block = parse_hex(item[0], "blocks", max_size=max_block)
        payload = None if item[1] is None else parse_hex(item[1], "blocks.payload", max_size=max_payload)
        entries.append((block, payload))
    return entries

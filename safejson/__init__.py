"""JSON from untrusted sources, bounded in size and nesting depth *before* it is parsed.

Why this exists: CPython's C JSON decoder recurses once per ``[`` or ``{`` and relies on
the interpreter's recursion limit to stop. py_ecc (imported through py-evm) raises that
limit to 100,000, so a peer's frame of ``[[[[...`` a few hundred KB deep overflows the C
stack and kills the process with SIGSEGV before any ``RecursionError`` is raised. The
only safe order is: check the size, count the nesting with a linear scan that recurses
nowhere, and only then call ``json.loads``.

Every place that parses JSON from outside the process (p2p frames, JSON-RPC bodies, job
specs carried by transactions, dataset metadata, replies of other nodes) goes through
:func:`loads`. This module is in the lowest layer of the project: it imports nothing of
ours but the common error root.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

import numpy as np

from common.errors import PouwNodeError

__all__ = ["JsonLimitError", "JsonTooDeep", "JsonTooLarge", "loads", "nesting_depth"]


class JsonLimitError(PouwNodeError, ValueError):
    """JSON refused before parsing because it is over a limit. A ``ValueError``, like
    ``json.JSONDecodeError``, so callers that handle bad JSON handle this too; the limit
    and the value found are ``expected`` and ``got``."""


class JsonTooDeep(JsonLimitError):
    """Nested deeper than the caller allows."""


class JsonTooLarge(JsonLimitError):
    """Longer than the caller allows."""


_DROP = bytes(b for b in range(256) if b not in b'[]{}"')
"""Every byte but brackets and quotes (deleted before counting)."""


_CHUNK = 1 << 20


def nesting_depth(text: str | bytes, stop_above: Optional[int] = None) -> int:
    """Deepest bracket nesting of ``text`` outside string literals, in linear time with
    a handful of C-speed passes (no recursion, no per-character Python loop, so a 16 MiB
    frame of any shape costs well under a second).

    Escapes are removed first (``\\\\`` then ``\\"``, left to right, as a JSON scanner
    reads them), so every remaining quote delimits a string; brackets after an odd number
    of quotes are inside a string and do not count. Exact for valid JSON; for invalid
    JSON the count may be off, but only for text the parser refuses anyway. With
    ``stop_above``, returns as soon as the depth passes it (a value above it).
    """
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if b"[" not in raw and b"{" not in raw:
        return 0
    kept = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DROP)
    codes = np.frombuffer(kept, dtype=np.uint8)
    deepest = depth = 0
    in_string = False
    # In chunks: an attack of all openers stops at the first, and the buffers stay small.
    # int32 throughout: texts are far below 2**31 bytes.
    for start in range(0, codes.size, _CHUNK):
        part = codes[start : start + _CHUNK]
        steps = (part == ord("[")).view(np.int8) + (part == ord("{")).view(np.int8)
        steps -= (part == ord("]")).view(np.int8) + (part == ord("}")).view(np.int8)
        quotes = part == ord('"')
        if quotes.any() or in_string:
            parity = np.cumsum(quotes, dtype=np.int32) + int(in_string)
            steps[(parity & 1).astype(bool)] = 0  # after an odd number of quotes: inside a string
            in_string = bool(parity[-1] & 1)
        running = steps.cumsum(dtype=np.int32)
        running += depth
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
        if stop_above is not None and deepest > stop_above:
            break
    return deepest


def loads(
    data: str | bytes | bytearray | memoryview,
    *,
    max_depth: int,
    max_bytes: Optional[int] = None,
    parse_constant: Optional[Callable[[str], Any]] = None,
) -> Any:
    """``json.loads`` that first refuses input longer than ``max_bytes`` (characters
    for ``str``) or nested deeper than ``max_depth``.

    Bytes are decoded as ``json.loads`` would (UTF-8, or UTF-16/32 by its detection), so
    that what parses here is exactly what parsed before the bound. Raises
    :class:`JsonTooLarge`, :class:`JsonTooDeep` or ``json.JSONDecodeError`` /
    ``UnicodeDecodeError`` (all ``ValueError``).
    """
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"JSON text must be str or bytes, not {type(data).__name__}")
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonTooLarge(f"JSON text longer than {max_bytes} bytes", expected=f"<= {max_bytes}", got=len(data))
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    else:
        text = data
    # Cheap pre-check: a text with fewer opening brackets than the limit cannot exceed it.
    if text.count("[") + text.count("{") > max_depth:
        if nesting_depth(text, stop_above=max_depth) > max_depth:
            raise JsonTooDeep(
                f"JSON nested deeper than {max_depth} levels", expected=f"<= {max_depth}", got=f"> {max_depth}"
            )
    if parse_constant is None:
        return json.loads(text)
    return json.loads(text, parse_constant=parse_constant)

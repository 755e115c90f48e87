"""How the chain reads a posted job spec, written once (the registry, the RPC and the
market read it from here)."""
from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from consensus.params import MAX_SPEC_BYTES
from pouw.errors import PouwError
from pouw.spec import JobSpec, Limits, loads_spec_json


class SpecTooLong(ValueError):
    """A posted spec's JSON text, or its canonical form, is over MAX_SPEC_BYTES."""


def read_spec(raw: "bytes | str | Mapping[str, Any]", limits: Limits) -> JobSpec:
    """A posted job spec as the chain reads it: JSON text (bytes as ``postJob`` carries
    it, or str) of at most MAX_SPEC_BYTES, nesting bounded before it is parsed, or an
    already parsed object; then the catalogue's rules and the chain's ``limits``; and its
    canonical form within MAX_SPEC_BYTES (it is stored in the registry).

    Raises ``SpecTooLong``, ``ValueError`` for text that is not JSON, or
    ``pouw.errors.SpecError`` (naming the field) for a spec the rules refuse (a JSON value
    that is not an object included).
    """
    if isinstance(raw, (bytes, bytearray, str)):
        if len(raw) > MAX_SPEC_BYTES:
            raise SpecTooLong(f"spec text longer than {MAX_SPEC_BYTES} bytes")
        raw = loads_spec_json(raw)
    spec = JobSpec.from_dict(dict(raw) if isinstance(raw, Mapping) else raw, limits)
    if len(spec.canonical_bytes()) > MAX_SPEC_BYTES:
        raise SpecTooLong(f"canonical form over {MAX_SPEC_BYTES} bytes")
    return spec


@functools.lru_cache(maxsize=4096)
def stored_spec(spec_bytes: bytes, limits: Limits) -> JobSpec | None:
    """The spec the registry stored (canonical bytes), read under ``limits``; None if it
    is not usable there (a chain may tighten nothing after genesis, but a job's bytes are
    read by every node under its own genesis). Cached per (bytes, limits): two chains in
    one process never see each other's verdicts."""
    try:
        return read_spec(spec_bytes, limits)
    except (PouwError, ValueError, TypeError):  # a spec the rules refuse, or not JSON: not usable
        return None


__all__ = ["SpecTooLong", "read_spec", "stored_spec"]

"""Canonical serialisation of model states and their keccak256 commitment (docs/protocol.md §5).

Byte layout (all integers little-endian)::

    magic    4 bytes  b"PWST"
    version  u16      1
    count    u16      number of tensors
    count times, in the family's canonical order:
      name_len u8, name (ASCII, name_len bytes)
      dtype    u8      1 = int32, 2 = int64
      ndim     u8
      dims     ndim x u32
      data     prod(dims) x itemsize bytes, row-major (C order), little-endian

``state_hash = keccak256(serialised bytes)``. Deserialisation checks the whole layout
against the spec (names, order, dtypes, shapes, total length) and refuses int32 values
outside ``[-(2**30 - 1), 2**30 - 1]``, the range the update rule keeps parameters in
(and that its overflow-freedom relies on); every failure is a ``StateError``.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

import numpy as np
import torch
from eth_utils import keccak
from torch import Tensor

from pouw.errors import PouwError, StateError

if TYPE_CHECKING:
    from pouw.families import TensorLayout
    from pouw.spec import JobSpec

__all__ = [
    "State",
    "MAGIC",
    "VERSION",
    "serialize_state",
    "deserialize_state",
    "state_hash",
    "encoded_size",
    "encode_tensors",
]

MAGIC: Final = b"PWST"
VERSION: Final = 1
_DTYPE_CODES: Final = {torch.int32: 1, torch.int64: 2}
_CODE_DTYPES: Final = {1: torch.int32, 2: torch.int64}
_NP_DTYPES: Final[dict[torch.dtype, np.dtype]] = {torch.int32: np.dtype("<i4"), torch.int64: np.dtype("<i8")}
PARAM_MAX: Final = 2**30 - 1  # = pouw.arith.PARAM_MAX (not imported: keeps this module torch-arith free)

State = dict[str, Tensor]
"""Integer tensors of one model state (same alias as pouw.families.State)."""


def encoded_size(layout: "TensorLayout") -> int:
    """Exact length of a serialised state with this layout."""
    size = 8
    for name, dtype, shape in layout:
        numel = 1
        for d in shape:
            numel *= d
        size += 1 + len(name.encode("ascii")) + 2 + 4 * len(shape) + numel * _NP_DTYPES[dtype].itemsize
    return size


def encode_tensors(items: list[tuple[str, Tensor]]) -> bytes:
    """The canonical bytes of named tensors in the given order (no spec checks)."""
    parts = [MAGIC, struct.pack("<HH", VERSION, len(items))]
    for name, t in items:
        if t.dtype not in _DTYPE_CODES:
            raise StateError(f"tensor {name!r} has a non-integer dtype", expected="int32 or int64", got=str(t.dtype))
        raw = name.encode("ascii")
        parts.append(struct.pack("<B", len(raw)) + raw)
        parts.append(struct.pack("<BB", _DTYPE_CODES[t.dtype], t.dim()))
        parts.append(struct.pack(f"<{t.dim()}I", *t.shape))
        parts.append(t.detach().cpu().contiguous().numpy().astype(_NP_DTYPES[t.dtype], copy=False).tobytes())
    return b"".join(parts)


def _family_layout(spec: "JobSpec") -> "TensorLayout":
    from pouw.families import get_family

    return get_family(spec.family).layout(spec)


def serialize_state(spec: "JobSpec", state: State) -> bytes:
    """Canonical bytes of ``state``, checked against the spec's layout (StateError if not)."""
    layout = _family_layout(spec)
    if set(state) != {name for name, _, _ in layout}:
        raise StateError("state tensors do not match the spec", expected=[n for n, _, _ in layout], got=sorted(state))
    items = []
    for name, dtype, shape in layout:
        t = state[name]
        if t.dtype != dtype or tuple(t.shape) != shape:
            raise StateError(
                f"tensor {name!r} has the wrong dtype or shape",
                expected=(str(dtype), shape),
                got=(str(t.dtype), tuple(t.shape)),
            )
        items.append((name, t))
    return encode_tensors(items)


def deserialize_state(spec: "JobSpec", data: bytes) -> State:
    """Parse canonical bytes into CPU tensors; StateError for anything that is not exactly right."""
    try:
        return _deserialize(spec, bytes(data))
    except PouwError:
        raise
    except Exception as exc:  # a parser bug must still surface as a refused state, not a crash
        raise StateError(f"malformed state: {exc}") from None


def _deserialize(spec: "JobSpec", data: bytes) -> State:
    layout = _family_layout(spec)
    if len(data) != encoded_size(layout):
        raise StateError("state has the wrong length", expected=encoded_size(layout), got=len(data))
    if data[:4] != MAGIC:
        raise StateError("bad magic", expected=MAGIC, got=data[:4])
    version, count = struct.unpack_from("<HH", data, 4)
    if version != VERSION:
        raise StateError("unsupported state version", expected=VERSION, got=version)
    if count != len(layout):
        raise StateError("wrong number of tensors", expected=len(layout), got=count)
    pos = 8
    out: State = {}
    for name, dtype, shape in layout:
        raw_name = name.encode("ascii")
        (name_len,) = struct.unpack_from("<B", data, pos)
        got_name = data[pos + 1 : pos + 1 + name_len]
        if got_name != raw_name:
            raise StateError("unexpected tensor name", expected=name, got=got_name)
        pos += 1 + name_len
        code, ndim = struct.unpack_from("<BB", data, pos)
        pos += 2
        if _CODE_DTYPES.get(code) != dtype:
            raise StateError(f"tensor {name!r} has the wrong dtype code", expected=_DTYPE_CODES[dtype], got=code)
        if ndim != len(shape):
            raise StateError(f"tensor {name!r} has the wrong rank", expected=len(shape), got=ndim)
        dims = struct.unpack_from(f"<{ndim}I", data, pos)
        pos += 4 * ndim
        if tuple(dims) != shape:
            raise StateError(f"tensor {name!r} has the wrong shape", expected=shape, got=tuple(dims))
        npdt = _NP_DTYPES[dtype]
        numel = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(data, dtype=npdt, count=numel, offset=pos).astype(npdt.newbyteorder("="))
        pos += numel * npdt.itemsize
        if dtype == torch.int32 and numel and max(int(arr.max()), -int(arr.min())) > PARAM_MAX:
            raise StateError(
                f"tensor {name!r} holds a value outside the parameter range",
                expected=f"|v| <= {PARAM_MAX}",
                got=max(int(arr.max()), -int(arr.min())),
            )
        out[name] = torch.from_numpy(arr.reshape(shape).copy())
    if pos != len(data):
        raise StateError("trailing bytes after the last tensor", expected=pos, got=len(data))
    return out


def state_hash(data_or_state: "bytes | State", spec: "JobSpec | None" = None) -> bytes:
    """keccak256 of the canonical bytes.

    Pass bytes, or a state dict: with ``spec`` it is serialised in the spec's canonical
    order (and checked); without, in the dict's own order (which init_state and step
    produce canonically).
    """
    if isinstance(data_or_state, (bytes, bytearray, memoryview)):
        return keccak(bytes(data_or_state))
    if spec is not None:
        return keccak(serialize_state(spec, data_or_state))
    return keccak(encode_tensors(list(data_or_state.items())))

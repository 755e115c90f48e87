"""Portable, specified pseudo-random numbers for the recomputed path.

Everything a validator must reproduce (weight initialisation, batch indices) draws from
this module, never from torch's or numpy's generators: those differ between versions,
devices and thread counts, and are not written down anywhere a validator can check.

The generator is keccak256 in counter mode.

* **Word stream.** For a 32-byte (or any length) ``key``, block ``b`` (``b >= 0``) is
  ``keccak256(key || uint64_be(b))``; it holds four 64-bit words. Word ``c`` of the
  stream is bytes ``[8*(c % 4), 8*(c % 4) + 8)`` of block ``c // 4`` read as a
  big-endian unsigned integer. ``prng_u64(key, c)`` returns word ``c``.
* **Key derivation.** ``derive_key(key, label) = keccak256(key || label)``. Distinct
  uses of one seed take distinct labels, so their streams never overlap.
* **Unbiased reduction to [0, n).** Words are consumed in stream order; a word ``w``
  is *accepted* when ``w < 2**64 - (2**64 mod n)`` and then yields ``w mod n``;
  otherwise it is rejected and the next word is tried. The accepted range is an exact
  multiple of ``n``, so every value in ``[0, n)`` is equally likely. (For any ``n`` a
  dataset can have, the rejection probability is below ``n / 2**64``.)
* **Batch indices.** The indices of training step ``i`` come from the stream keyed by
  ``derive_key(seed, b"pouw/batch" || uint64_be(i))``: the batch is the first
  ``batch_size`` accepted draws in ``[0, n)``, in order, **with replacement** (each
  index is an independent uniform draw, so a batch may repeat an example; this is plain
  i.i.d. SGD sampling and needs no bookkeeping across steps).
"""
from __future__ import annotations

from typing import Final

import numpy as np
from Crypto.Hash import keccak as _keccak_mod

try:  # pycryptodome's C keccak through ctypes, driven directly: one state, reset per block
    import ctypes

    from Crypto.Hash.keccak import _raw_keccak_lib  # type: ignore[attr-defined]
    from Crypto.Util import _raw_api

    _FAST_KECCAK = _raw_api.backend == "ctypes"
except ImportError:  # pragma: no cover - other pycryptodome layouts: the public API below
    _FAST_KECCAK = False

__all__ = [
    "keccak256",
    "derive_key",
    "prng_u64",
    "prng_words",
    "prng_bytes",
    "uniform_below",
    "batch_indices",
    "batch_indices_array",
    "uniform_below_array",
    "BATCH_LABEL",
]

WORDS_PER_BLOCK: Final = 4
U64_RANGE: Final = 1 << 64
BATCH_LABEL: Final = b"pouw/batch"


def keccak256(data: bytes) -> bytes:
    """keccak256 (Ethereum's, not NIST SHA3-256) of ``data``."""
    return _keccak_mod.new(data=data, digest_bits=256).digest()


_WORD: Final = np.dtype(">u8")


def _u64be(value: int) -> bytes:
    if not 0 <= value < U64_RANGE:
        raise ValueError(f"counter out of uint64 range: {value}")
    return value.to_bytes(8, "big")


def derive_key(key: bytes, label: bytes) -> bytes:
    """A sub-key for one use of ``key``: ``keccak256(key || label)`` (32 bytes)."""
    return keccak256(bytes(key) + bytes(label))


def prng_u64(key: bytes, counter: int) -> int:
    """Word ``counter`` of the keccak counter-mode stream keyed by ``key``.

    ``keccak256(key || uint64_be(counter // 4))`` gives four big-endian words; this
    returns word ``counter % 4`` of them. Consecutive counters share a hash, so bulk
    callers should use :func:`prng_words`, which hashes each block once.
    """
    block = keccak256(bytes(key) + _u64be(counter // WORDS_PER_BLOCK))
    offset = 8 * (counter % WORDS_PER_BLOCK)
    return int.from_bytes(block[offset : offset + 8], "big")


def _stream_blocks(key: bytes, first: int, last: int) -> bytes:
    """Blocks ``first .. last`` of the stream, concatenated: ``keccak256(key || uint64_be(b))``.

    Same bytes as hashing each block with :func:`keccak256`; where pycryptodome uses its
    ctypes backend, one keccak state is absorbed, squeezed straight into the output
    buffer and reset per block (a third of the per-hash overhead of the public API).
    """
    if first < 0 or last >= U64_RANGE:
        raise ValueError(f"counter out of uint64 range: {first}..{last}")
    n = last - first + 1
    if not _FAST_KECCAK or n < 3:
        return b"".join(keccak256(key + _u64be(b)) for b in range(first, last + 1))
    state = _raw_api.VoidPointer()
    if _raw_keccak_lib.keccak_init(state.address_of(), _raw_api.c_size_t(64), _raw_api.c_ubyte(24)):  # type: ignore[attr-defined]
        raise ValueError("keccak_init failed")  # capacity 64 bytes (keccak256), 24 rounds
    handle = _raw_api.SmartPointer(state.get(), _raw_keccak_lib.keccak_destroy)
    h = handle.get()
    out = ctypes.create_string_buffer(32 * n)
    size_in, size_out = _raw_api.c_size_t(len(key) + 8), _raw_api.c_size_t(32)
    pad = _raw_api.c_ubyte(0x01)  # type: ignore[attr-defined]  # keccak padding (not SHA-3's 0x06)
    absorb, digest, reset = _raw_keccak_lib.keccak_absorb, _raw_keccak_lib.keccak_digest, _raw_keccak_lib.keccak_reset
    for j in range(n):
        if (
            absorb(h, key + (first + j).to_bytes(8, "big"), size_in)
            or digest(h, ctypes.byref(out, 32 * j), size_out, pad)
            or reset(h)
        ):
            raise ValueError("keccak failed")
    return out.raw


def prng_words(key: bytes, start: int, count: int) -> np.ndarray:
    """Words ``start .. start+count-1`` of the stream as a numpy ``uint64`` array.

    Same values as ``[prng_u64(key, c) for c in range(start, start + count)]``,
    one hash per four words.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return np.zeros(0, dtype=np.uint64)
    key = bytes(key)
    first = start // WORDS_PER_BLOCK
    last = (start + count - 1) // WORDS_PER_BLOCK
    if first < 0:
        raise ValueError(f"counter out of uint64 range: {first}")
    words = np.frombuffer(_stream_blocks(key, first, last), dtype=">u8").astype(np.uint64)
    skip = start - first * WORDS_PER_BLOCK
    return words[skip : skip + count]


def prng_bytes(key: bytes, nbytes: int) -> bytes:
    """The first ``nbytes`` bytes of the stream: blocks ``0, 1, ...`` concatenated.

    Word ``c`` of the stream is bytes ``[8c, 8c + 8)`` of this string.
    """
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    key = bytes(key)
    blocks = -(-nbytes // 32)
    return _stream_blocks(key, 0, blocks - 1)[:nbytes] if blocks else b""


def _accept_limit(n: int) -> int:
    return U64_RANGE - (U64_RANGE % n)


def uniform_below(key: bytes, n: int, count: int, start: int = 0) -> list[int]:
    """The first ``count`` accepted draws in ``[0, n)`` of the stream, from word ``start``.

    Rejection sampling as described in the module docstring: unbiased for every ``n``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    limit = _accept_limit(n)
    out: list[int] = []
    cursor = start
    while len(out) < count:
        need = count - len(out)
        words = prng_words(key, cursor, need)
        cursor += need
        if limit == U64_RANGE:  # n is a power of two: nothing is ever rejected
            accepted = words
        else:
            accepted = words[words < np.uint64(limit)]
        out.extend((accepted % np.uint64(n)).tolist())
    return out


def uniform_below_array(key: bytes, n: int, count: int) -> np.ndarray:
    """``uniform_below(key, n, count)`` as a numpy int64 array (for ``n <= 2**63``)."""
    if not 0 < n <= 1 << 63:
        raise ValueError(f"n must be in [1, 2**63], got {n}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    limit = _accept_limit(n)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    # words 0 .. count-1 are the first count words of blocks 0 .. (count-1) // 4
    words = np.frombuffer(_stream_blocks(bytes(key), 0, (count - 1) // WORDS_PER_BLOCK), dtype=_WORD)[:count]
    if limit != U64_RANGE and int(words.max()) >= limit:
        return np.array(uniform_below(key, n, count), dtype=np.int64)  # a rejection (p < n / 2**64)
    return (words % np.uint64(n)).astype(np.int64)


def batch_indices(seed: bytes, step: int, batch_size: int, n: int) -> list[int]:
    """Training-example indices of step ``step``: ``batch_size`` draws from ``[0, n)``.

    Keyed by ``derive_key(seed, b"pouw/batch" || uint64_be(step))``; with replacement;
    order matters (it is the row order of the batch).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    step_key = derive_key(seed, BATCH_LABEL + _u64be(step))
    return uniform_below(step_key, n, batch_size)


def batch_indices_array(seed: bytes, step: int, batch_size: int, n: int) -> np.ndarray:
    """``batch_indices(seed, step, batch_size, n)`` as a numpy int64 array."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    step_key = derive_key(seed, BATCH_LABEL + _u64be(step))
    return uniform_below_array(step_key, n, batch_size)

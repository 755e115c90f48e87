"""Commitments of a trajectory: the seal seed, the accumulator, tickets and challenges.

H is keccak256. All inputs are fixed-width byte strings, concatenated without
separators or length prefixes (fixed widths make the encoding unambiguous):

==================  =========  ===========================================================
value               width      encoding
==================  =========  ===========================================================
``template_hash``   32 bytes   hash of the header fields fixed before the work
``coinbase``        20 bytes   the miner's address
``job_id``          32 bytes   bytes32 as is; an ``int`` job id as 32-byte big-endian
``h_i``             32 bytes   ``state_hash`` of the state after step ``i``
``a_i``             32 bytes   accumulator after step ``i``
==================  =========  ===========================================================

* ``seal_seed = H(template_hash || coinbase || job_id || h_0)``
* ``a_0 = H(seal_seed || h_0)``; ``a_i = H(a_{i-1} || h_i)`` for ``i >= 1``
* ticket value ``T_i = int_be(H(a_i))``, an integer in ``[0, 2**256)``
* step ``i`` wins when ``T_i <= 2**256 * w / D`` (real division), checked exactly as
  ``T_i * D <= w * 2**256`` in integers: no rounding, so the boundary value itself wins.
* challenges: see :func:`challenge_indices`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from pouw.prng import U64_RANGE, derive_key, keccak256, prng_u64

__all__ = [
    "H",
    "CHALLENGE_LABEL",
    "seal_seed",
    "initial_accumulator",
    "next_accumulator",
    "accumulator_chain",
    "ticket_value",
    "ticket_target",
    "is_winning_ticket",
    "challenge_indices",
]

CHALLENGE_LABEL: Final = b"challenge"
TWO_256: Final = 1 << 256


def H(*parts: bytes) -> bytes:
    """keccak256 of the concatenation of ``parts``."""
    return keccak256(b"".join(bytes(p) for p in parts))


def _bytes_n(name: str, value: bytes, width: int) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != width:
        got = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ValueError(f"{name} must be {width} bytes, got {got}")
    return bytes(value)


def _job_id_bytes(job_id: bytes | int) -> bytes:
    if isinstance(job_id, int):
        if not 0 <= job_id < TWO_256:
            raise ValueError(f"job_id out of uint256 range: {job_id}")
        return job_id.to_bytes(32, "big")
    return _bytes_n("job_id", job_id, 32)


def seal_seed(template_hash: bytes, coinbase: bytes, job_id: bytes | int, h0: bytes) -> bytes:
    """The seed of one sealing attempt: ``H(template_hash || coinbase || job_id || h_0)``.

    Binds the trajectory to the block template (parent, transactions...), to the
    miner's address and to the job checkpoint, so work cannot be stockpiled across
    blocks, stolen by another coinbase or reused for a sibling block.
    """
    return H(
        _bytes_n("template_hash", template_hash, 32),
        _bytes_n("coinbase", coinbase, 20),
        _job_id_bytes(job_id),
        _bytes_n("h0", h0, 32),
    )


def initial_accumulator(seed: bytes, h0: bytes) -> bytes:
    """``a_0 = H(seal_seed || h_0)``."""
    return H(_bytes_n("seed", seed, 32), _bytes_n("h0", h0, 32))


def next_accumulator(a_prev: bytes, h_i: bytes) -> bytes:
    """``a_i = H(a_{i-1} || h_i)``: commits to every state hash so far, in order."""
    return H(_bytes_n("a_prev", a_prev, 32), _bytes_n("h_i", h_i, 32))


def accumulator_chain(seed: bytes, h0: bytes, step_hashes: Iterable[bytes]) -> list[bytes]:
    """``[a_0, a_1, ..., a_t]`` for the listed ``h_1 .. h_t`` (what a validator recomputes)."""
    acc = [initial_accumulator(seed, h0)]
    for h in step_hashes:
        acc.append(next_accumulator(acc[-1], h))
    return acc


def ticket_value(a_i: bytes) -> int:
    """``int_be(H(a_i))``: the lottery draw of step ``i``."""
    return int.from_bytes(H(_bytes_n("a_i", a_i, 32)), "big")


def ticket_target(work_units: int, difficulty: int) -> int:
    """``floor(2**256 * w / D)``: the largest winning ticket value (for display and logs)."""
    _check_work(work_units, difficulty)
    return (TWO_256 * work_units) // difficulty


def _check_work(work_units: int, difficulty: int) -> None:
    if work_units < 0:
        raise ValueError(f"work_units must be >= 0, got {work_units}")
    if difficulty <= 0:
        raise ValueError(f"difficulty must be > 0, got {difficulty}")


def is_winning_ticket(a_i: bytes, work_units: int, difficulty: int) -> bool:
    """Whether step ``i`` seals the block: ``H(a_i) <= 2**256 * w / D``.

    Evaluated as ``H(a_i) * D <= w * 2**256`` so no division rounds; equality wins.
    The chance of winning per step is about ``w / D``, so a block costs ``D`` work
    units on average whatever the job's step size.
    """
    _check_work(work_units, difficulty)
    return ticket_value(a_i) * difficulty <= work_units * TWO_256


def _uniform_stream(key: bytes, n: int) -> Iterator[int]:
    """Accepted draws in ``[0, n)`` from the keccak stream of ``key``, in order."""
    limit = U64_RANGE - (U64_RANGE % n)
    counter = 0
    while True:
        w = prng_u64(key, counter)
        counter += 1
        if w < limit:
            yield w % n


def challenge_indices(a_t: bytes, t: int, k: int) -> list[int]:
    """The ``k`` earlier steps a validator recomputes besides the ticket step ``t``.

    Drawn from the stream keyed by ``H(a_t || "challenge")`` (see :mod:`pouw.prng`):
    successive unbiased draws ``d`` in ``[0, t-1)`` give step ``d + 1``; a step already
    drawn is skipped, until ``k`` distinct steps are chosen (**without replacement**).
    If ``t - 1 <= k`` every step ``1 .. t-1`` is challenged. Step ``t`` is never in the
    list: it is always recomputed anyway. Returned in ascending order.

    Keyed by ``a_t`` and not by the block hash, so a miner cannot re-roll the
    challenges by changing the timestamp or extra data: a new draw costs a real step.
    """
    _bytes_n("a_t", a_t, 32)
    if t < 1:
        raise ValueError(f"ticket step t must be >= 1, got {t}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    candidates = t - 1
    if k == 0:
        return []
    if candidates <= k:
        return list(range(1, t))
    chosen: set[int] = set()
    for d in _uniform_stream(derive_key(a_t, CHALLENGE_LABEL), candidates):
        chosen.add(d + 1)
        if len(chosen) == k:
            break
    return sorted(chosen)

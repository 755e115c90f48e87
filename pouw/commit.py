"""Commitments of a trajectory: seal seed, segments, accumulator, tickets and challenges.

docs/protocol.md §10 (encodings) and §14 (the seal). H is keccak256; state commitments
``c`` are BLAKE3 state hashes (:mod:`pouw.state`). All inputs are fixed-width byte
strings concatenated without separators:

==================  =========  ===========================================================
value               width      encoding
==================  =========  ===========================================================
``template_hash``   32 bytes   hash of the header fields fixed before the work
``coinbase``        20 bytes   the miner's address
``job_id``          32 bytes   bytes32 as is; an ``int`` job id as 32-byte big-endian
``h_0``             32 bytes   the job's checkpoint (state hash of ``s_0``)
``m``               4 bytes    segment length, big-endian
``c_j``             32 bytes   state hash of the state at point ``j``
``A_j``             32 bytes   accumulator
==================  =========  ===========================================================

**Segments.** A trajectory runs steps 1, 2, ... from ``s_0``. Its *points* are the
multiples of ``m`` and, when the job's remaining budget ``r`` ends inside the block,
``r``; point ``p_j`` closes segment ``j`` (steps ``p_{j-1}+1 .. p_j``, ``p_0 = 0``,
length ``l_j = p_j - p_{j-1} <= m``). The miner commits to the state at every point.

* ``seal_seed = H(template_hash || coinbase || job_id || h_0 || m)``
* ``A_0 = seal_seed``; ``A_j = H(A_{j-1} || c_j)`` with ``c_j = state_hash(s_{p_j})``
* the batches of the steps of segment ``j`` are drawn from ``A_{max(j-2, 0)}`` (two
  points back: any change to a listed commitment or a carried state changes the batches
  of every later segment but one, and the state hash of a point overlaps the next
  segment's training);
* point ``j >= 2`` is a lottery draw of weight ``l_j * w``: it wins when
  ``int_be(H(A_j)) * D <= l_j * w * 2**256`` (the first point never wins: a block has
  at least two segments);
* the validator recomputes the *anchored* segments ``1``, ``n-2``, ``n-1``, ``n`` (and
  the segment that ends at the budget point) and ``k`` challenged segments drawn from
  ``H(A_n || "challenge")`` among the others.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

from pouw.prng import U64_RANGE, derive_key, keccak256, prng_u64

__all__ = [
    "H",
    "CHALLENGE_LABEL",
    "MIN_POINTS",
    "VALIDATION_SHARE",
    "seal_seed",
    "next_accumulator",
    "accumulator_chain",
    "batch_accumulator_index",
    "next_point",
    "trajectory_points",
    "is_valid_end",
    "ticket_value",
    "ticket_target",
    "is_winning_ticket",
    "anchored_segments",
    "challenge_segments",
    "required_segments",
    "max_segment_steps",
    "is_ticket_point",
]

CHALLENGE_LABEL: Final = b"challenge"
TWO_256: Final = 1 << 256
MAX_SEGMENT_STEPS: Final = 1 << 16
VALIDATION_SHARE: Final = 64
"""A block's recomputed steps are at most 1/64 of its expected work in work units:
``max_segment_steps`` bounds the segment length ``m`` accordingly. 1/64 rather than 1/50
leaves room, within 2%, for what a validator pays besides the steps (decoding each
carried state, hashing each segment's end)."""
MAX_SEGMENT_WORK: Final = 2 * 10**11
"""A segment holds at most this many work units (0.2 s of the reference CPU), whatever the
difficulty: a fraud proof recomputes one segment on chain, at one gas per 10^4 work
units, so any segment's proof fits in 20 M gas plus the registry's fixed charges
(docs/protocol.md §21)."""
MAX_ANCHORS: Final = 5
"""Segments recomputed besides the challenges: 1, n-2, n-1, n and the budget segment."""
MIN_POINTS: Final = 2
"""A block's trajectory has at least this many points: point 1 is never a winning ticket
(so no draw can reuse the batch-independent work of a stored start state)."""


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


def _check_m(m: int) -> int:
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= MAX_SEGMENT_STEPS:
        raise ValueError(f"segment length m must be an integer in 1..{MAX_SEGMENT_STEPS}, got {m!r}")
    return m


def seal_seed(template_hash: bytes, coinbase: bytes, job_id: bytes | int, h0: bytes, m: int) -> bytes:
    """The seed of one sealing attempt: ``H(template_hash || coinbase || job_id || h_0 || m)``.

    Binds the trajectory to the block template (parent, transactions...), the miner's
    address, the job checkpoint and the segment length, so work cannot be stockpiled
    across blocks, stolen by another coinbase, reused for a sibling block or re-cut into
    other segments.
    """
    return H(
        _bytes_n("template_hash", template_hash, 32),
        _bytes_n("coinbase", coinbase, 20),
        _job_id_bytes(job_id),
        _bytes_n("h0", h0, 32),
        _check_m(m).to_bytes(4, "big"),
    )


def next_accumulator(a_prev: bytes, c_j: bytes) -> bytes:
    """``A_j = H(A_{j-1} || c_j)``: commits to every point's state hash so far, in order."""
    return H(_bytes_n("a_prev", a_prev, 32), _bytes_n("c_j", c_j, 32))


def accumulator_chain(seed: bytes, commitments: Iterable[bytes]) -> list[bytes]:
    """``[A_0 = seal_seed, A_1, ..., A_n]`` for the listed ``c_1 .. c_n`` (what a validator recomputes)."""
    acc = [_bytes_n("seed", seed, 32)]
    for c in commitments:
        acc.append(next_accumulator(acc[-1], c))
    return acc


def batch_accumulator_index(j: int) -> int:
    """The index of the accumulator whose value keys the batches of segment ``j`` (>= 1):
    ``max(j - 2, 0)``."""
    if j < 1:
        raise ValueError(f"segment index must be >= 1, got {j}")
    return max(j - 2, 0)


def _check_budget(budget: int | None) -> None:
    if budget is not None and (not isinstance(budget, int) or budget < 1):
        raise ValueError(f"budget point must be None or an integer >= 1, got {budget!r}")


def next_point(p: int, m: int, budget: int | None) -> int:
    """The first point after step ``p``: the next multiple of ``m``, or the budget point
    ``r`` if it comes first (``budget`` None: the job has no budget inside this block)."""
    _check_m(m)
    _check_budget(budget)
    nxt = (p // m + 1) * m
    if budget is not None and p < budget < nxt:
        return budget
    return nxt


def trajectory_points(t: int, m: int, budget: int | None) -> list[int]:
    """``[p_1, ..., p_n]``, the points up to and including ``t`` (ValueError if ``t`` is
    not a point: a block ends at a point)."""
    if not is_valid_end(t, m, budget):
        raise ValueError(f"t = {t} is not a point for m = {m}, budget point {budget}")
    out: list[int] = []
    p = 0
    while p < t:
        p = next_point(p, m, budget)
        out.append(p)
    return out


def is_valid_end(t: int, m: int, budget: int | None) -> bool:
    """Whether a trajectory may end (its block seal) at step ``t``: ``t`` is a point."""
    _check_m(m)
    _check_budget(budget)
    return isinstance(t, int) and t >= 1 and (t % m == 0 or t == budget)


def ticket_value(a_j: bytes) -> int:
    """``int_be(H(A_j))``: the lottery draw of point ``j``."""
    return int.from_bytes(H(_bytes_n("a_j", a_j, 32)), "big")


def ticket_target(weight: int, difficulty: int) -> int:
    """``floor(2**256 * weight / D)``: the largest winning ticket value (for display and logs)."""
    _check_work(weight, difficulty)
    return (TWO_256 * weight) // difficulty


def _check_work(weight: int, difficulty: int) -> None:
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")
    if difficulty <= 0:
        raise ValueError(f"difficulty must be > 0, got {difficulty}")


def is_winning_ticket(a_j: bytes, weight: int, difficulty: int) -> bool:
    """Whether point ``j`` seals the block: ``H(A_j) * D <= weight * 2**256``.

    ``weight = l_j * w`` (segment length times the job's work units per step), so each
    point wins with probability about ``weight / D`` and a block costs ``D`` work units
    on average whatever the job and the segment length. No division: equality wins.
    """
    _check_work(weight, difficulty)
    return ticket_value(a_j) * difficulty <= weight * TWO_256


def _uniform_stream(key: bytes, n: int) -> Iterator[int]:
    """Accepted draws in ``[0, n)`` from the keccak stream of ``key``, in order."""
    limit = U64_RANGE - (U64_RANGE % n)
    counter = 0
    while True:
        w = prng_u64(key, counter)
        counter += 1
        if w < limit:
            yield w % n


def anchored_segments(n: int, budget_segment: int | None = None) -> list[int]:
    """Segments every validator recomputes: the first (it starts at the job's stored
    checkpoint), the last three (the ticket segment and the two before it, so that every
    re-roll of the ticket needs at least a full fresh segment of training) and the one that
    ends at the budget point (the job's new checkpoint), ascending."""
    if n < 1:
        raise ValueError(f"segment count must be >= 1, got {n}")
    out = {1} | {j for j in (n - 2, n - 1, n) if j >= 1}
    if budget_segment is not None:
        if not 1 <= budget_segment <= n:
            raise ValueError(f"budget segment {budget_segment} not in 1..{n}")
        out.add(budget_segment)
    return sorted(out)


def challenge_segments(a_n: bytes, n: int, k: int, budget_segment: int | None = None) -> list[int]:
    """The ``k`` segments a validator recomputes besides the anchored ones.

    Candidates are the segments that are not anchored, in ascending order
    ``C = [c_0, c_1, ...]``; successive unbiased draws ``d`` in ``[0, |C|)`` from the
    stream keyed by ``H(A_n || "challenge")`` (see :mod:`pouw.prng`) pick ``C[d]``; a
    segment already drawn is skipped, until ``k`` distinct ones are chosen (**without
    replacement**). All candidates if there are at most ``k``. Returned ascending.

    Keyed by ``A_n``, never by the block hash: a new draw costs a new winning point.
    """
    _bytes_n("a_n", a_n, 32)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    anchors = set(anchored_segments(n, budget_segment))
    candidates = [j for j in range(1, n + 1) if j not in anchors]
    if k == 0 or not candidates:
        return []
    if len(candidates) <= k:
        return candidates
    chosen: set[int] = set()
    for d in _uniform_stream(derive_key(a_n, CHALLENGE_LABEL), len(candidates)):
        chosen.add(candidates[d])
        if len(chosen) == k:
            break
    return sorted(chosen)


def required_segments(a_n: bytes, n: int, k: int, budget_segment: int | None = None) -> list[int]:
    """Every segment a validator recomputes: anchored and challenged, ascending."""
    return sorted(set(anchored_segments(n, budget_segment)) | set(challenge_segments(a_n, n, k, budget_segment)))


def is_ticket_point(j: int) -> bool:
    """Whether point ``j`` takes part in the lottery (every point but the first)."""
    return j >= MIN_POINTS


def max_segment_steps(difficulty: int, work_units: int, k: int) -> int:
    """The longest segment a block may use:
    ``max(1, min(65536, D // (64 * (k + 5) * w), MAX_SEGMENT_WORK // w))``, so that
    recomputing its at most ``k + 5`` segments stays within 2% of the block's expected
    work ``D``, and a fraud proof of any one segment fits in a block (never less than
    one step per segment)."""
    _check_work(work_units, difficulty)
    if work_units == 0:
        return 1
    return max(1, min(MAX_SEGMENT_STEPS, difficulty // (VALIDATION_SHARE * (k + MAX_ANCHORS) * work_units),
                      MAX_SEGMENT_WORK // work_units))

"""The block's work payload: what a validator needs to check the trajectory.

RLP list, stored by the node under ``schema.work_payload(block_hash)`` and served with
the block (docs/protocol.md §14)::

    [version = 2,
     m,                               # segment length (also in the seal seed)
     [c_1, ..., c_n],                 # state hash at every point, 32 bytes each
     [[j, s_{p_{j-1}}], ...]]         # start state of every recomputed segment j >= 2,
                                      # ascending (segment 1 starts at the stored checkpoint)

The header commits to the payload: the commitments through ``A_n`` (work_accumulator),
the carried states through the listed ``c_{j-1}``. The job's new checkpoint state is not
carried: every validator recomputes the segment that ends at it. Size is bounded before
decoding by ``ConsensusConfig.max_payload_bytes()``. A later version may carry several
trajectories per block (shares); version 2 carries one.
"""
from __future__ import annotations

from dataclasses import dataclass

import rlp
from rlp.sedes import CountableList, List, big_endian_int, binary

from consensus.errors import MalformedPayload

PAYLOAD_VERSION = 2

_hash32 = rlp.sedes.Binary.fixed_length(32)
_SEDES = List([
    big_endian_int,
    big_endian_int,
    CountableList(_hash32),
    CountableList(List([big_endian_int, binary])),
])


@dataclass(frozen=True)
class WorkPayload:
    m: int
    """Segment length."""
    commitments: tuple[bytes, ...]
    """c_1 .. c_n: the state hash at each point."""
    carried: tuple[tuple[int, bytes], ...]
    """(j, serialised s_{p_{j-1}}) for each recomputed segment j >= 2, ascending."""

    def encode(self) -> bytes:
        return rlp.encode(
            [PAYLOAD_VERSION, self.m, list(self.commitments), [[j, s] for j, s in self.carried]],
            sedes=_SEDES,
        )

    @classmethod
    def decode(cls, data: bytes) -> "WorkPayload":
        try:
            version, m, commitments, carried = rlp.decode(bytes(data), sedes=_SEDES)
        except (rlp.DecodingError, rlp.DeserializationError, TypeError, ValueError) as exc:
            raise MalformedPayload(f"work payload does not decode: {exc}") from None
        if version != PAYLOAD_VERSION:
            raise MalformedPayload("unknown payload version", expected=PAYLOAD_VERSION, got=version)
        return cls(int(m), tuple(commitments), tuple((int(j), bytes(s)) for j, s in carried))

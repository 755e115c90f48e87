"""The block's work payload: what a validator needs to check the trajectory.

RLP list, stored by the node under ``schema.work_payload(block_hash)`` and served with
the block::

    [version = 1,
     [h_1, ..., h_t],                 # 32 bytes each; h_t = header.final_state
     [[i, s_{i-1}], ...],             # i in {t} U challenge_indices(a_t, t, k), ascending
     s_t]                             # the job's new checkpoint state

The header commits to the payload: the step hashes through a_t (work_accumulator), the
carried states through the listed h_i. Size is bounded before decoding by
``ConsensusConfig.max_payload_bytes()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import rlp
from rlp.sedes import CountableList, List, big_endian_int, binary

from consensus.errors import MalformedPayload

PAYLOAD_VERSION = 1

_hash32 = rlp.sedes.Binary.fixed_length(32)
_SEDES = List([
    big_endian_int,
    CountableList(_hash32),
    CountableList(List([big_endian_int, binary])),
    binary,
])


@dataclass(frozen=True)
class WorkPayload:
    step_hashes: tuple[bytes, ...]
    """h_1 .. h_t."""
    carried: tuple[tuple[int, bytes], ...]
    """(i, serialised s_{i-1}) for the ticket step and each challenged step, ascending."""
    final_state: bytes
    """Serialised s_t."""

    def encode(self) -> bytes:
        return rlp.encode(
            [PAYLOAD_VERSION, list(self.step_hashes), [[i, s] for i, s in self.carried], self.final_state],
            sedes=_SEDES,
        )

    @classmethod
    def decode(cls, data: bytes) -> "WorkPayload":
        try:
            version, hashes, carried, final = rlp.decode(bytes(data), sedes=_SEDES)
        except (rlp.DecodingError, rlp.DeserializationError, TypeError, ValueError) as exc:
            raise MalformedPayload(f"work payload does not decode: {exc}") from None
        if version != PAYLOAD_VERSION:
            raise MalformedPayload("unknown payload version", expected=PAYLOAD_VERSION, got=version)
        return cls(tuple(hashes), tuple((int(i), bytes(s)) for i, s in carried), bytes(final))

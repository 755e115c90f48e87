"""Chain segments: block locators, serving blocks to peers, reading block entries.

Sync (the download side lives in ``P2PService._sync_from``) works like Bitcoin's
``getblocks``: the syncing node sends a *locator*, hashes of its chain from the tip back
to genesis at doubling distances (plus the tip of the branch it is downloading, first),
and the serving peer answers with its canonical blocks after the first locator hash it
holds on its canonical chain. One round trip finds the common ancestor, whatever the
fork depth; a sync cut off at any point resumes from the locator of what was imported.

Every function here reads the database and may be slow on a big chain: the service runs
them in a thread executor, never on the event loop.
"""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Optional

import rlp
from eth.exceptions import BlockNotFound, HeaderNotFound
from eth_hash.auto import keccak

from p2p.messages import MAX_HASHES

DENSE_LOCATOR = 10
"""Hashes at distance 1 before the steps start doubling."""


def build_locator(chain: Any, tip: Optional[bytes] = None) -> list[bytes]:
    """``tip`` (if given), then canonical hashes from the head back, doubling the step
    after ``DENSE_LOCATOR``, always ending with the genesis hash."""
    hashes: list[bytes] = [] if tip is None else [bytes(tip)]
    number = chain.head().block_number
    step = 1
    while number > 0 and len(hashes) < MAX_HASHES - 1:
        hashes.append(bytes(chain.get_canonical_hash(number)))
        if len(hashes) >= DENSE_LOCATOR:
            step *= 2
        number -= step
    hashes.append(bytes(chain.genesis_hash))
    return hashes


def is_canonical(chain: Any, block_hash: bytes) -> Optional[int]:
    """The block's number if it is on our canonical chain, else None."""
    try:
        header = chain.get_header_by_hash(block_hash)
        if bytes(chain.get_canonical_hash(header.block_number)) == bytes(block_hash):
            return int(header.block_number)
    except (HeaderNotFound, BlockNotFound, KeyError):
        pass
    return None


def fork_point(chain: Any, locator: list[bytes]) -> int:
    """Number of the first locator hash on our canonical chain (0: only the genesis)."""
    for block_hash in locator:
        number = is_canonical(chain, block_hash)
        if number is not None:
            return number
    return 0


def block_entry(chain: Any, block_hash: bytes) -> Optional[tuple[bytes, Optional[bytes]]]:
    """``(block RLP, work payload or None)``, or None if we do not have the block."""
    try:
        block = chain.get_block_by_hash(block_hash)
    except (HeaderNotFound, BlockNotFound, KeyError):
        return None
    return rlp.encode(block), chain.get_payload(block_hash)


def read_segment(chain: Any, locator: list[bytes], max_blocks: int, budget: int) -> list[tuple[bytes, Optional[bytes]]]:
    """Our canonical blocks after the locator's fork point: at most ``max_blocks``, and
    stopping once ``budget`` raw bytes are reached (at least one block is sent)."""
    start = fork_point(chain, locator) + 1
    head = chain.head().block_number
    entries: list[tuple[bytes, Optional[bytes]]] = []
    size = 0
    for number in range(start, min(head, start + max_blocks - 1) + 1):
        try:
            entry = block_entry(chain, chain.get_canonical_hash(number))
        except (HeaderNotFound, KeyError):  # a reorg shortened the chain meanwhile
            break
        if entry is None:
            break
        entries.append(entry)
        size += len(entry[0]) + len(entry[1] or b"")
        if size >= budget:
            break
    return entries


def header_hash_of(block_rlp: bytes) -> bytes:
    """The hash of a block from its RLP, decoding only the outer list (no validation:
    import does that). ValueError if the bytes are not a block-shaped list."""
    try:
        items = rlp.decode(block_rlp, strict=True)
    except rlp.exceptions.DecodingError as exc:
        raise ValueError(f"not RLP: {exc}") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], list):
        raise ValueError("a block must be a list whose first item is the header")
    return keccak(rlp.encode(items[0]))


@dataclass(frozen=True)
class SyncProgress:
    """How far behind the best peer this node is: our head when we fell behind, our head
    now, and the best peer's (what ``eth_syncing`` reports)."""

    starting_block: int
    current_block: int
    highest_block: int

"""Sync: downloading a heavier chain from a peer, and serving ours.

It works like Bitcoin's ``getblocks``: the syncing node sends a *locator*, hashes of its
chain from the tip back to genesis at doubling distances (plus the tip of the branch it
is downloading, first), and the serving peer answers with its canonical blocks after the
first locator hash it holds on its canonical chain. One round trip finds the common
ancestor, whatever the fork depth; a sync cut off at any point resumes from the locator
of what was imported.

The functions read the database and may be slow on a big chain: :class:`Syncer` runs
them on the read pool, never on the event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Optional

import rlp
from eth.exceptions import BlockNotFound, HeaderNotFound
from eth_hash.auto import keccak
from eth_typing import Hash32

from chain.chain import Chain
from chain.errors import UnknownParent
from p2p import messages as m
from p2p.config import P2PConfig
from p2p.errors import PeerUnavailable, ProtocolViolation, SyncAborted, SyncYielded
from p2p.importer import ImportFn
from p2p.interfaces import ReadPool, SyncStats, has_block, head_info
from p2p.messages import MAX_HASHES
from p2p.peer import Peer
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_BAD_RESPONSE, PENALTY_INVALID_BLOCK, PENALTY_LYING_HEAD

log = logging.getLogger("p2p")

Entry = tuple[bytes, Optional[bytes]]
"""A block on the wire: ``(block RLP, work payload or None)``."""

DENSE_LOCATOR = 10
"""Hashes at distance 1 before the steps start doubling."""


def build_locator(chain: Chain, tip: Optional[bytes] = None) -> list[bytes]:
    """``tip`` (if given), then canonical hashes from the head back, doubling the step
    after ``DENSE_LOCATOR``, always ending with the genesis hash."""
    hashes: list[bytes] = [] if tip is None else [bytes(tip)]
    number = int(chain.head().block_number)
    step = 1
    while number > 0 and len(hashes) < MAX_HASHES - 1:
        hashes.append(bytes(chain.get_canonical_hash(number)))
        if len(hashes) >= DENSE_LOCATOR:
            step *= 2
        number -= step
    hashes.append(bytes(chain.genesis_hash))
    return hashes


def is_canonical(chain: Chain, block_hash: bytes) -> Optional[int]:
    """The block's number if it is on our canonical chain, else None."""
    try:
        header = chain.get_header_by_hash(Hash32(block_hash))
        if bytes(chain.get_canonical_hash(header.block_number)) == bytes(block_hash):
            return int(header.block_number)
    except (HeaderNotFound, BlockNotFound, KeyError):
        pass
    return None


def fork_point(chain: Chain, locator: list[bytes]) -> int:
    """Number of the first locator hash on our canonical chain (0: only the genesis)."""
    for block_hash in locator:
        number = is_canonical(chain, block_hash)
        if number is not None:
            return number
    return 0


def block_entry(chain: Chain, block_hash: bytes) -> Optional[Entry]:
    """``(block RLP, work payload or None)``, or None if we do not have the block."""
    try:
        block = chain.get_block_by_hash(Hash32(block_hash))
    except (HeaderNotFound, BlockNotFound, KeyError):
        return None
    return rlp.encode(block), chain.get_payload(Hash32(block_hash))


def read_segment(chain: Chain, locator: list[bytes], max_blocks: int, budget: int) -> list[Entry]:
    """Our canonical blocks after the locator's fork point: at most ``max_blocks``, and
    stopping once ``budget`` raw bytes are reached (at least one block is sent)."""
    start = fork_point(chain, locator) + 1
    head = chain.head().block_number
    entries: list[Entry] = []
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


def entries_by_hash(chain: Chain, hashes: list[bytes], budget: int) -> list[Entry]:
    """The blocks named (those we have), stopping once ``budget`` raw bytes are reached."""
    entries = []
    size = 0
    for block_hash in hashes:
        entry = block_entry(chain, block_hash)
        if entry is None:
            continue
        entries.append(entry)
        size += len(entry[0]) + len(entry[1] or b"")
        if size >= budget:
            break
    return entries


def encode_entries(entries: list[Entry]) -> list[list[Optional[str]]]:
    return [[m.hx(block), None if payload is None else m.hx(payload)] for block, payload in entries]


def parse_entries(chain: Chain, reply: m.Message, max_len: int) -> list[Entry]:
    """The blocks of a ``blocks`` reply, each block and payload within our chain's limits
    (checked before anything is decoded)."""
    return m.parse_block_entries(
        reply.body, max_len=max_len, max_block=chain.genesis.max_block_bytes,
        max_payload=chain.engine.max_payload_bytes(),
    )


@dataclass(frozen=True)
class SyncProgress:
    """How far behind the best peer this node is: our head when we fell behind, our head
    now, and the best peer's (what ``eth_syncing`` reports)."""

    starting_block: int
    current_block: int
    highest_block: int


class Syncer:
    """Downloads the chain of a peer that claims more work than ours (one peer at a time,
    the heaviest first), and serves ``get_blocks`` / ``get_chain`` from ours."""

    def __init__(
        self, chain: Chain, config: P2PConfig, peers: PeerSet, reads: ReadPool, stats: SyncStats,
        *, import_block: ImportFn,
    ) -> None:
        self.chain = chain
        self.batch = config.sync_batch
        self.recheck_s = config.sync_recheck_s
        self.slow_s = config.request_timeout_s / 2
        """A segment waited for longer than this is slow: the round yields to another
        heavier peer if there is one."""
        self.budget = config.response_budget_bytes
        self.peers = peers
        self.reads = reads
        self.stats = stats
        self._import_block = import_block
        self._wanted = asyncio.Event()
        self._running = False
        self._task: Optional[asyncio.Task[None]] = None
        self._sync_start: Optional[int] = None
        """Our head when we last fell behind (``eth_syncing``'s starting block)."""
        self._failed: dict[bytes, float] = {}
        """Connected peers whose last round failed, by node id: when that round ended
        (a peer's entry goes when its round succeeds or it disconnects)."""

    def start(self) -> None:
        self._running = True
        self._task = asyncio.create_task(self._loop(), name="p2p-sync")

    def cancel(self) -> list[asyncio.Task[None]]:
        """Start no more rounds; cancel the loop (returned, for the caller to await)."""
        self._running = False
        tasks = [] if self._task is None else [self._task]
        for task in tasks:
            task.cancel()
        return tasks

    def want(self) -> None:
        """Ask for a sync round (a heavier peer connected or announced a block we cannot
        place); rounds run until no connected peer claims more work than we hold."""
        self._wanted.set()

    def best_peer(self) -> Optional[Peer]:
        """The peer to sync from: the one claiming the most work above ours, unless some
        round failed. Then, first, the heaviest peer whose round has not failed and that
        was connected when the latest failed round ended; else the heavier peer whose
        round failed longest ago. So peers claiming the most and never serving (several
        at once, or one under identity after identity) cost one round each before every
        other peer connected by then is tried, and a peer connecting later waits at most
        one more failed round."""
        ours = head_info(self.chain).total_work
        connected = {p.node_id for p in self.peers}
        self._failed = {node_id: ended for node_id, ended in self._failed.items() if node_id in connected}
        if not self._failed:
            return self.peers.heaviest(ours)
        latest = max(self._failed.values())
        untried = self.peers.heaviest(ours, lambda p: p.node_id not in self._failed and p.connected_at <= latest)
        if untried is not None:
            return untried
        retry = self.peers.claiming_more(ours, lambda p: p.node_id in self._failed)
        if retry:
            return min(retry, key=lambda p: self._failed[p.node_id])
        return self.peers.heaviest(ours)

    def status(self) -> Optional[SyncProgress]:
        """Behind the best peer: where we are and where it is (``eth_syncing``)."""
        head = head_info(self.chain)
        best = max(self.peers, key=lambda p: p.total_work, default=None)
        if best is None or best.total_work <= head.total_work or best.head_number <= head.number:
            self._sync_start = None
            return None
        if self._sync_start is None:
            self._sync_start = head.number
        return SyncProgress(self._sync_start, head.number, best.head_number)

    # --- downloading ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            # Woken by want(), and every recheck_s regardless: a heavier head we heard
            # of whose fetch failed (peer timed out, import aborted) is not left behind.
            try:
                await asyncio.wait_for(self._wanted.wait(), self.recheck_s)
            except asyncio.TimeoutError:
                pass
            self._wanted.clear()
            while self._running:
                peer = self.best_peer()
                if peer is None:
                    break
                await self._round(peer)

    async def _round(self, peer: Peer) -> None:
        """One sync from ``peer``; whatever goes wrong ends the round, never the loop."""
        started = time.monotonic()
        self.stats.syncing = True
        failed = True
        try:
            await self.sync_from(peer)
            failed = False
        except SyncYielded as exc:
            log.info("sync from %s paused: %s", peer.name, exc)
        except (SyncAborted, PeerUnavailable) as exc:
            log.info("sync from %s stopped: %s", peer.name, exc)
        except ProtocolViolation as exc:
            await peer.violation(exc)
        except Exception:  # noqa: BLE001 - the sync loop must survive
            log.exception("sync from %s failed", peer.name)
        finally:
            if failed:
                self._failed[peer.node_id] = time.monotonic()
            else:
                self._failed.pop(peer.node_id, None)
            self.stats.syncing = False
            self.stats.last_sync_seconds = time.monotonic() - started
        if failed and not peer.closed.is_set() and self.best_peer() is peer:
            await asyncio.sleep(1.0)  # the same peer is the only one to try again

    async def sync_from(self, peer: Peer) -> None:
        """Download and import the peer's heavier chain, segment by segment.

        The next segment is requested before the current one is imported, so download
        and validation overlap. Ends when our chain holds as much work as the peer says
        its has; a peer that claims more work than it can show is penalised."""
        log.info("syncing from %s: its head #%d (work %d), ours #%d",
                 peer.name, peer.head_number, peer.total_work, self.chain.head().block_number)
        request = asyncio.ensure_future(self._request_segment(peer, None))
        try:
            while True:
                waiting = time.monotonic()
                reply = await request
                slow = time.monotonic() - waiting > self.slow_s
                entries = parse_entries(self.chain, reply, max_len=m.MAX_BATCH)
                if "total_work" in reply.body:
                    peer.total_work = max(peer.total_work, m.field_qty(reply.body, "total_work"))
                hashes = [header_hash_of(block_rlp) for block_rlp, _ in entries]
                if not self._lacking(hashes):
                    # nothing we lack: stale (pipelined before gossip brought the same
                    # blocks), or a peer holding the round with blocks we hold
                    entries, hashes = await self._ask_afresh(peer)
                    if not entries:
                        return
                request = asyncio.ensure_future(self._request_segment(peer, hashes[-1]))  # pipelined
                await self._import_segment(peer, entries, hashes)
                ours = head_info(self.chain).total_work
                if peer.total_work <= ours:
                    return
                if slow and self.peers.heaviest(ours, lambda p: p is not peer) is not None:
                    raise SyncYielded(f"a segment took over {self.slow_s:g} s; another peer claims more work")
        except ValueError as exc:
            raise ProtocolViolation(f"bad block bytes in sync: {exc}", penalty=PENALTY_INVALID_BLOCK) from None
        finally:
            if not request.done():
                request.cancel()
            await asyncio.gather(request, return_exceptions=True)

    async def _ask_afresh(self, peer: Peer) -> tuple[list[Entry], list[bytes]]:
        """A reply with no block we lack may be stale: it was requested (pipelined)
        before the previous segment was imported, gossip may have brought its blocks
        meanwhile, and the peer may have announced a new block since. Ask once more,
        from our head, and judge by the work that reply states: a peer that claims more
        work than ours and serves no block we lack is penalised (answering with nothing
        and answering with blocks we hold are the same lie). Returns the fresh entries
        and their hashes, or nothing when the peer claims no more than ours."""
        fresh = await self._request_segment(peer, None)
        entries = parse_entries(self.chain, fresh, max_len=m.MAX_BATCH)
        hashes = [header_hash_of(block_rlp) for block_rlp, _ in entries]
        if not self._lacking(hashes):
            claimed = m.field_qty(fresh.body, "total_work") if "total_work" in fresh.body else peer.total_work
            ours = head_info(self.chain).total_work
            if claimed > ours:
                await peer.violation(ProtocolViolation(
                    "claims more total work than it serves", penalty=PENALTY_LYING_HEAD, expected=claimed, got=ours,
                ))
                raise SyncAborted("the peer claims more total work than it serves")
            return [], []
        return entries, hashes

    def _lacking(self, hashes: list[bytes]) -> bool:
        """Whether a segment with these block hashes holds a block we do not."""
        return any(not has_block(self.chain, block_hash) for block_hash in hashes)

    async def _import_segment(self, peer: Peer, entries: list[Entry], hashes: list[bytes]) -> None:
        for (block_rlp, payload), block_hash in zip(entries, hashes):
            if has_block(self.chain, block_hash):
                continue
            try:
                await self._import_block(peer, block_rlp, payload)
            except UnknownParent:
                raise ProtocolViolation("sync segment does not connect", penalty=PENALTY_BAD_RESPONSE) from None
            self.stats.blocks_imported += 1
        self.stats.batches += 1

    async def _request_segment(self, peer: Peer, tip: Optional[bytes]) -> m.Message:
        locator = await self.reads.run(build_locator, self.chain, tip)
        return await peer.request("get_chain", ("blocks",), locator=[m.hx(h) for h in locator], max=self.batch)

    # --- serving ----------------------------------------------------------------------------

    async def serve_blocks(self, request_id: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``get_blocks``: the blocks named, those we have, within the response budget."""
        hashes = m.field_hashes(body, "hashes")
        entries = await self.reads.run(entries_by_hash, self.chain, hashes, self.budget)
        return "blocks", {"id": request_id, "blocks": encode_entries(entries)}

    async def serve_chain(self, request_id: int, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """``get_chain``: our canonical blocks after the locator's fork point, and our head."""
        locator = m.field_hashes(body, "locator")
        count = m.field_int(body, "max", low=1, high=m.MAX_BATCH)
        entries = await self.reads.run(read_segment, self.chain, locator, count, self.budget)
        head = head_info(self.chain)
        return "blocks", {
            "id": request_id, "blocks": encode_entries(entries),
            "head": m.hx(head.hash), "number": head.number, "total_work": m.qty(head.total_work),
        }

"""Gossip: our new heads and transactions go to the peers that lack them; theirs come in.

Out: a new head (mined here, or moved by blocks from peers, both reported by the node's
event hub) is announced as ``new_block`` (hash, number, total work) to each peer not
known to have it; pool transactions are pushed in ``txs`` batches to the peers that have
not seen them. Both are coalesced for ``gossip_delay_s``, so a burst costs one message
per peer. What a peer is known to have lives in its bounded seen-sets
(``Peer.known_blocks``, ``Peer.known_txs``: the most recent hashes only, so a peer
cannot grow them without bound), filled by what we send it and by what it sends us.

In: a block announced with more work than our head, that we lack, is queued and fetched
with ``get_blocks`` (a full queue or an unknown parent asks for a sync instead). Gossiped
transactions are decoded and handed to the pool on a read thread; a peer pays
``PENALTY_BAD_TX`` for each that does not even decode.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, Iterator, Optional

import rlp
from eth.abc import SignedTransactionAPI
from eth_hash.auto import keccak

from chain.chain import Chain
from chain.errors import UnknownParent
from chain.transactions import decode_raw_transaction
from chain.txpool import BlobNotHere
from p2p import messages as m
from p2p.config import P2PConfig
from p2p.errors import PeerUnavailable, ProtocolViolation, SyncAborted
from p2p.importer import ImportFn
from p2p.interfaces import HeadInfo, ReadPool, has_block, head_info
from p2p.peer import BoundedSet, Peer
from p2p.peerset import PeerSet
from p2p.scoring import PENALTY_BAD_RESPONSE, PENALTY_BAD_TX, PENALTY_INVALID_BLOCK
from p2p.sync import header_hash_of, parse_entries

log = logging.getLogger("p2p")

TX_BATCH_CHARS = 400 * 1024
"""Hex characters of transactions per ``txs`` message before a new one starts (well
inside the message type's size limit)."""

GREET_TXS = 1024
"""Pending transactions sent to a peer when it connects, at most."""
TX_BLOB_FETCHES = 4
"""Blobs fetched for one ``txs`` message's transactions, at most."""
TX_BLOB_RETRY_S = 5.0
"""A blob for transactions that no peer served is asked for again after this long, not
before: a peer cannot make us fetch the same blob over and over; and not never: a peer
that names a blob before anyone holds it (a cheater gossiping a proof of its own block
ahead of the auditors) cannot make us drop the proofs that come with it later."""
TX_BLOB_ATTEMPTS = 60
"""Fetches of one blob for waiting transactions before they are dropped (5 minutes)."""
TX_BLOBS_WAITING = 64
"""Blobs with transactions waiting for them, at most (the oldest is dropped)."""
TX_PER_BLOB_WAITING = 8
"""Transactions kept waiting for one blob, at most."""
TX_BLOBS_REMEMBERED = 4096
"""Blobs whose fetches for transactions are remembered (when, how often): far more than
wait, so that a peer naming many blobs cannot make us forget that one failed."""


@dataclass
class BlobTry:
    """How fetching one blob for transactions went."""

    attempts: int = 0
    failed_at: float = float("-inf")
    fetching: bool = False


ANNOUNCED_QUEUE = 1024
"""Announced blocks waiting to be fetched; beyond that a sync round catches up."""


class Gossip:
    """Announcements and transactions, both ways (see the module docstring)."""

    def __init__(
        self,
        chain: Chain,
        config: P2PConfig,
        peers: PeerSet,
        reads: ReadPool,
        *,
        import_block: ImportFn,
        submit_tx: Callable[[bytes], object],
        want_sync: Callable[[], None],
        fetch_blob: Optional[Callable[[bytes], Awaitable[bytes]]] = None,
    ) -> None:
        """``import_block`` imports a fetched block; ``submit_tx(raw)`` hands a gossiped
        transaction to the pool (raising on rejection); ``want_sync()`` asks the syncer
        for a round; ``fetch_blob(hash)`` fetches a blob a transaction reads (a fraud
        proof's start state) that the pool refused it for lacking (None: not fetched)."""
        self.chain = chain
        self.delay_s = config.gossip_delay_s
        self.peers = peers
        self.reads = reads
        self._import_block = import_block
        self._submit_tx = submit_tx
        self._want_sync = want_sync
        self._fetch_blob = fetch_blob
        self._blob_waits: OrderedDict[bytes, list[bytes]] = OrderedDict()
        """Blobs transactions wait for, and those transactions."""
        self._blob_tries: OrderedDict[bytes, BlobTry] = OrderedDict()
        """Blobs fetched (or tried) for transactions: attempts, last failure."""
        self._running = False
        self._pending_head: Optional[bytes] = None
        self._pending_txs: list[SignedTransactionAPI] = []
        self._flush_handle: Optional[asyncio.TimerHandle] = None
        self._announced: asyncio.Queue[tuple[Peer, bytes]] = asyncio.Queue(ANNOUNCED_QUEUE)
        self._fetcher: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._running = True
        self._fetcher = asyncio.create_task(self._fetch_announced(), name="p2p-fetch")

    def cancel(self) -> list[asyncio.Task[None]]:
        """Send nothing more; cancel the fetcher (returned, for the caller to await)."""
        self._running = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        tasks = [] if self._fetcher is None else [self._fetcher]
        for task in tasks:
            task.cancel()
        return tasks

    # --- ours -> peers ----------------------------------------------------------------------

    def local_head(self, block_hash: bytes) -> None:
        """Our head moved (to ``block_hash``, or past it by now): the next flush announces
        the chain's head as it is then."""
        self._pending_head = bytes(block_hash)
        self._schedule_flush()

    def local_tx(self, tx: SignedTransactionAPI) -> None:
        """The pool accepted ``tx``: push it to the peers that have not seen it."""
        self._pending_txs.append(tx)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and self._running:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.delay_s, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Send what accumulated since the last flush."""
        head_hash, self._pending_head = self._pending_head, None
        txs, self._pending_txs = self._pending_txs, []
        if head_hash is not None:
            await self._announce_head()
        if txs:
            await self._push_txs(txs)

    async def _announce_head(self) -> None:
        """Announce the chain's head as it is now, not the hash the event named: events
        of two heads may arrive out of order (a block a sync imported, published from its
        round, after a block mined meanwhile), and the older must not hide the newer.
        Each peer hears of a head once (``known_blocks``)."""
        head = head_info(self.chain)
        for peer in self.peers:
            await _announce_to(peer, head)

    def greet(self, peer: Peer) -> None:
        """A new peer gets our head if it moved since the hello we sent it (a block
        mined during the handshake is announced to the peers connected at that moment
        only), and our pool's pending transactions (at most ``GREET_TXS``), as geth sends
        its pool to a new peer: a transaction submitted while we had no peer (an
        auditor's fraud proof, a dApp's job) still reaches the miners."""
        if self._running:
            asyncio.ensure_future(self._greet(peer))

    async def _greet(self, peer: Peer) -> None:
        await _announce_to(peer, head_info(self.chain))
        await self._send_pool(peer)

    async def _send_pool(self, peer: Peer) -> None:
        pool = self.chain.txpool
        if pool is None:
            return
        try:
            txs = await self.reads.run(lambda: list(itertools.islice(pool.pending(), GREET_TXS)))
        except RuntimeError:  # executor shut down
            return
        raws = [(bytes(tx.hash), raw_transaction(tx)) for tx in txs]
        for batch in tx_batches(peer.known_txs, raws):
            await _send_quietly(peer, "txs", txs=batch)

    async def _push_txs(self, txs: list[SignedTransactionAPI]) -> None:
        raws = [(bytes(tx.hash), raw_transaction(tx)) for tx in txs]
        for peer in self.peers:
            for batch in tx_batches(peer.known_txs, raws):
                await _send_quietly(peer, "txs", txs=batch)

    # --- peers -> us ------------------------------------------------------------------------

    def on_new_block(self, peer: Peer, body: dict[str, Any]) -> None:
        """A ``new_block`` notice: note what the peer has; queue the block if we want it."""
        block_hash = m.field_hash(body, "hash")
        number = m.field_int(body, "number")
        total_work = m.field_qty(body, "total_work")
        peer.known_blocks.add(block_hash)
        if total_work > peer.total_work:
            peer.head, peer.head_number, peer.total_work = block_hash, number, total_work
        if total_work > head_info(self.chain).total_work and not has_block(self.chain, block_hash):
            try:
                self._announced.put_nowait((peer, block_hash))
            except asyncio.QueueFull:
                self._want_sync()

    def on_txs(self, peer: Peer, body: dict[str, Any]) -> None:
        """A ``txs`` notice: the peer has seen these; add them to the pool off the loop."""
        max_size = self.chain.genesis.max_transaction_bytes
        raws = [m.parse_hex(v, "txs", max_size=max_size) for v in m.field_list(body, "txs", max_len=m.MAX_TXS)]
        for raw in raws:
            peer.known_txs.add(keccak(raw))
        asyncio.ensure_future(self._add_txs(peer, raws))

    async def _add_txs(self, peer: Peer, raws: list[bytes]) -> None:
        try:
            bad, waiting = await self.reads.run(self._add_all, peer.name, raws)
        except RuntimeError:  # executor shut down
            return
        if bad:
            await self.peers.penalise(peer, PENALTY_BAD_TX * bad, f"{bad} undecodable transactions")
        if waiting and self._fetch_blob is not None:
            await self._fetch_and_retry(peer, waiting[:TX_BLOB_FETCHES])

    async def _fetch_and_retry(self, peer: Peer, waiting: list[tuple[bytes, bytes]]) -> None:
        """Park each transaction with the blob it waits for, and fetch the blobs not
        tried within ``TX_BLOB_RETRY_S``; a blob that arrives releases every transaction
        waiting for it to the pool, one that does not is tried again later."""
        for raw, blob_hash in waiting:
            self._park(blob_hash, raw)
        for blob_hash in dict.fromkeys(h for _, h in waiting):
            await self._try_blob(blob_hash, peer.name)

    def _park(self, blob_hash: bytes, raw: bytes) -> None:
        raws = self._blob_waits.get(blob_hash)
        if raws is None:
            raws = self._blob_waits[blob_hash] = []
            while len(self._blob_waits) > TX_BLOBS_WAITING:
                self._blob_waits.popitem(last=False)
        if raw not in raws and len(raws) < TX_PER_BLOB_WAITING:
            raws.append(raw)

    async def _try_blob(self, blob_hash: bytes, source: str) -> None:
        assert self._fetch_blob is not None
        if blob_hash not in self._blob_waits:
            return
        tried = self._blob_tries.get(blob_hash)
        if tried is None:
            tried = self._blob_tries[blob_hash] = BlobTry()
            while len(self._blob_tries) > TX_BLOBS_REMEMBERED:
                self._blob_tries.popitem(last=False)
        if tried.fetching or time.monotonic() - tried.failed_at < TX_BLOB_RETRY_S:
            return
        tried.fetching = True
        try:
            await self._fetch_blob(blob_hash)
        except Exception as exc:  # noqa: BLE001 - BlobUnavailable and kin: the transactions wait
            tried.fetching = False
            tried.failed_at, tried.attempts = time.monotonic(), tried.attempts + 1
            log.debug("blob %s for txs from %s not fetched (attempt %d): %s", m.hx(blob_hash), source,
                      tried.attempts, exc)
            if tried.attempts >= TX_BLOB_ATTEMPTS:
                self._blob_waits.pop(blob_hash, None)
            elif self._running:
                asyncio.get_running_loop().call_later(
                    TX_BLOB_RETRY_S, lambda: asyncio.ensure_future(self._try_blob(blob_hash, "a retry")))
            return
        self._blob_tries.pop(blob_hash, None)
        raws = self._blob_waits.pop(blob_hash, [])
        try:
            await self.reads.run(self._add_all, source, raws)
        except RuntimeError:  # executor shut down
            return

    def _add_all(self, peer_name: str, raws: list[bytes]) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Hand each transaction to the pool (on a read thread): the number that do not
        decode at all (what the peer pays for: a rejection by the pool is normal), and
        those refused for a blob this node lacks, with its hash."""
        bad = 0
        waiting: list[tuple[bytes, bytes]] = []
        for raw in raws:
            try:
                decode_raw_transaction(raw, max_size=self.chain.genesis.max_transaction_bytes)
            except Exception:  # noqa: BLE001 - typed InvalidTransaction or rlp errors
                bad += 1
                continue
            try:
                self._submit_tx(raw)
            except Exception as exc:  # noqa: BLE001 - rejections (known, nonce) are normal in gossip
                refusal = getattr(exc, "refusal", exc)
                if isinstance(refusal, BlobNotHere) and refusal.blob_hash:
                    waiting.append((raw, refusal.blob_hash))
                else:
                    log.debug("tx from %s not added: %s", peer_name, exc)
        return bad, waiting

    async def _fetch_announced(self) -> None:
        """Fetch announced blocks we lack; an unknown parent starts a sync."""
        while True:
            peer, block_hash = await self._announced.get()
            if peer.closed.is_set() or has_block(self.chain, block_hash):
                continue
            try:
                await self._fetch_one(peer, block_hash)
            except UnknownParent:
                self._want_sync()
            except ProtocolViolation as exc:
                await peer.violation(exc)
            except ValueError as exc:
                await peer.violation(ProtocolViolation(f"bad block bytes: {exc}", penalty=PENALTY_INVALID_BLOCK))
            except PeerUnavailable:
                self._want_sync()  # gone or timed out: the sync round asks the heaviest peer
            except SyncAborted:
                pass
            except Exception:  # noqa: BLE001 - keep fetching
                log.exception("fetching announced block failed")

    async def _fetch_one(self, peer: Peer, block_hash: bytes) -> None:
        reply = await peer.request("get_blocks", ("blocks",), hashes=[m.hx(block_hash)])
        entries = parse_entries(self.chain, reply, max_len=1)
        if not entries:
            # Reorged away on the peer, or never there: a sync round settles which (a
            # peer that cannot back its claimed work is penalised).
            self._want_sync()
            return
        block_rlp, payload = entries[0]
        if header_hash_of(block_rlp) != block_hash:
            raise ProtocolViolation("get_blocks answered with another block", penalty=PENALTY_BAD_RESPONSE)
        await self._import_block(peer, block_rlp, payload)


def tx_batches(known: BoundedSet, raws: Iterable[tuple[bytes, bytes]]) -> Iterator[list[str]]:
    """``txs`` message bodies for one peer: the ``(hash, raw)`` transactions not in its
    seen-set ``known`` (each added as it is taken), at most ``MAX_TXS`` and about
    ``TX_BATCH_CHARS`` hex characters a batch."""
    batch: list[str] = []
    size = 0
    for tx_hash, raw in raws:
        if tx_hash in known:
            continue
        known.add(tx_hash)
        if batch and (len(batch) >= m.MAX_TXS or size + 2 * len(raw) > TX_BATCH_CHARS):
            yield batch
            batch, size = [], 0
        batch.append(m.hx(raw))
        size += 2 * len(raw)
    if batch:
        yield batch


def raw_transaction(tx: SignedTransactionAPI) -> bytes:
    """The bytes a peer decodes (typed transactions' envelope, legacy ones' RLP)."""
    return bytes(tx.encode()) if hasattr(tx, "encode") else rlp.encode(tx)


async def _announce_to(peer: Peer, head: HeadInfo) -> None:
    """``new_block`` for ``head`` to ``peer``, unless it is known to have it."""
    if head.hash not in peer.known_blocks:
        peer.known_blocks.add(head.hash)
        await _send_quietly(peer, "new_block", hash=m.hx(head.hash), number=head.number,
                            total_work=m.qty(head.total_work))


async def _send_quietly(peer: Peer, type_: str, **body: object) -> None:
    """Gossip is best effort: a peer gone meanwhile is the reader's business."""
    try:
        await peer.send(type_, **body)
    except PeerUnavailable:
        pass

"""Importing the blocks peers send, on one import thread, each failure sorted by kind so
that only a peer that sent an invalid block pays for it:

- invalid (``chain.errors.InvalidBlock``): the peer is banned, ``SyncAborted`` raised;
- a timestamp ahead of our clock: it may become valid, so no penalty (``SyncAborted``);
- an unknown parent: propagates (the caller syncs the ancestors);
- verification needs a blob we lack (``WorkBlobMissing`` names it by its ``blob_hash``):
  the blob is fetched from peers and the import tried again (a block may need its
  checkpoint state and then its dataset);
- any other transient failure (a verifier out of memory): no penalty (``SyncAborted``).

An import that moves our head is published (coalesced: a sync moves the head once per
block) and the ``on_new_head`` listeners are called.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, NoReturn, Optional

from chain.chain import Chain, ImportResult
from chain.errors import ChainError, InvalidBlock, InvalidTimestamp, UnknownParent, WorkBlobMissing
from p2p import messages as m
from p2p.errors import P2PError, SyncAborted
from p2p.interfaces import SyncStats, call_listeners
from p2p.peer import Peer

log = logging.getLogger("p2p")

ImportFn = Callable[[Peer, bytes, Optional[bytes]], Awaitable[ImportResult]]
"""``import_from(peer, block_rlp, payload)``: how gossip and sync hand a block over."""

FetchBlob = Callable[[bytes], Awaitable[bytes]]
"""Fetch a blob by hash (from our store, else from peers) and store it."""

MISSING_BLOB_RETRIES = 3
"""Imports retried after fetching a missing blob: a block may need its checkpoint state,
then its dataset; more than that is not a missing-blob problem."""


class BlockImporter:
    """Imports blocks from peers into ``chain`` (see the module docstring)."""

    def __init__(
        self,
        chain: Chain,
        stats: SyncStats,
        *,
        ban: Callable[[Peer, str], Awaitable[None]],
        fetch_blob: Optional[FetchBlob],
        publish_head: Callable[[bytes], None],
        coalesce_s: float,
    ) -> None:
        """``ban(peer, reason)`` for a peer that sent an invalid block; ``fetch_blob``
        None when the node keeps no blobs; ``publish_head(hash)`` tells the node of a
        new head, at most once per ``coalesce_s``."""
        self.chain = chain
        self.stats = stats
        self._ban = ban
        self._fetch_blob = fetch_blob
        self._publish_head = publish_head
        self._coalesce_s = coalesce_s
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="p2p-import")
        self._publish_handle: Optional[asyncio.TimerHandle] = None
        self._head_to_publish: Optional[bytes] = None
        self.on_new_head: list[Callable[[bytes], None]] = []
        """Called (on the event loop) with the new head's hash after each import from a
        peer that moved our head, e.g. ``Miner.notify_new_head`` to abandon stale work."""

    async def import_from(self, peer: Peer, block_rlp: bytes, payload: Optional[bytes]) -> ImportResult:
        """Import a block ``peer`` sent. UnknownParent propagates (the caller fetches
        ancestors); an invalid block bans the peer and raises SyncAborted, and so does a
        transient failure (without a penalty)."""
        try:
            result = await self._import(block_rlp, payload)
        except UnknownParent:
            raise
        except InvalidTimestamp as exc:
            if isinstance(exc.got, int) and exc.got > time.time():
                # Too far in the future for our clock: may become valid; not a lie.
                log.info("block from %s is ahead of our clock: %s", peer.name, exc)
                raise SyncAborted(str(exc)) from None
            await self._invalid(peer, exc)
        except InvalidBlock as exc:
            await self._invalid(peer, exc)
        except ChainError as exc:  # WorkVerificationUnavailable and other transient errors
            retried = await self._retry_with_missing_blob(peer, exc, block_rlp, payload)
            if retried is None:
                log.warning("block from %s not imported (transient): %s", peer.name, exc)
                raise SyncAborted(str(exc)) from None
            result = retried
        peer.known_blocks.add(bytes(result.imported.hash))
        if result.new_canonical:
            head = bytes(result.new_canonical[-1])
            self._head_moved(head)
            call_listeners(self.on_new_head, head, "on_new_head")
        return result

    async def _import(self, block_rlp: bytes, payload: Optional[bytes]) -> ImportResult:
        # ``self.chain.import_block`` is looked up on each call: the node may wrap it
        # (node.imports.ImportLog times it). The chain's own write lock serialises.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.chain.import_block, block_rlp, payload)

    async def _retry_with_missing_blob(
        self, peer: Peer, exc: ChainError, block_rlp: bytes, payload: Optional[bytes]
    ) -> Optional[ImportResult]:
        """Verification needs a blob we lack (``WorkBlobMissing`` names it): fetch it from
        peers, then import once more. None if that is not the trouble, or it fails."""
        for _ in range(MISSING_BLOB_RETRIES):
            if self._fetch_blob is None or not isinstance(exc, WorkBlobMissing):
                return None
            try:
                await self._fetch_blob(exc.blob_hash)
            except P2PError as fetch_error:
                log.info("blob %s for a block from %s: %s", m.hx(exc.blob_hash), peer.name, fetch_error)
                return None
            try:
                return await self._import(block_rlp, payload)
            except InvalidBlock as again:
                await self._invalid(peer, again)
            except ChainError as still:
                exc = still
        return None

    async def _invalid(self, peer: Peer, exc: InvalidBlock) -> NoReturn:
        self.stats.invalid_blocks += 1
        log.warning("invalid block from %s: %s: %s", peer.name, type(exc).__name__, exc)
        await self._ban(peer, f"invalid block: {type(exc).__name__}: {exc}")
        raise SyncAborted(str(exc))

    # --- publishing new heads -------------------------------------------------------------

    def _head_moved(self, head_hash: bytes) -> None:
        """Tell the node (RPC subscribers, and through the hub, our own announcer) about
        a new head, coalescing bursts (a sync moves the head once per block)."""
        self._head_to_publish = head_hash
        if self._publish_handle is None:
            loop = asyncio.get_running_loop()
            self._publish_handle = loop.call_later(self._coalesce_s, self._publish_now)

    def _publish_now(self) -> None:
        self._publish_handle = None
        head, self._head_to_publish = self._head_to_publish, None
        if head is not None:
            self._publish_head(head)

    # --- stopping -------------------------------------------------------------------------

    def cancel(self) -> None:
        """Publish nothing more (the service is stopping)."""
        if self._publish_handle is not None:
            self._publish_handle.cancel()

    async def shutdown(self) -> None:
        """Wait for an import in progress, then release the import thread."""
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)

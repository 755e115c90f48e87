"""The connected peers, and what they have cost us: scores and bans by identity and by
address (the bookkeeping itself lives in ``scoring.py``).

Gossip, sync and blob fetch read the set (who is connected, who is best for what);
penalties and bans go through :meth:`PeerSet.penalise` and :meth:`PeerSet.ban`, which
also close the connections a ban covers.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator, Optional

from p2p.config import P2PConfig
from p2p.peer import Peer
from p2p.scoring import PENALTY_INVALID_BLOCK, AddressStrikes, PeerBook

log = logging.getLogger("p2p")


class PeerSet:
    """Connected peers by node id, with the book of scores and the address strikes."""

    def __init__(self, config: P2PConfig) -> None:
        self.ban_seconds = config.ban_seconds
        self.peers: dict[bytes, Peer] = {}
        """Connected peers by node id (one connection per node id)."""
        self.book = PeerBook(config.ban_score, config.ban_seconds)
        self.addresses = AddressStrikes(
            config.address_strikes, config.address_window_s, config.ban_seconds,
            exempt={p.host for p in config.static_peers},
        )
        """Invalid blocks per remote IP, whatever node id (scoring.py); static peers exempt."""

    # --- membership -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.peers)

    def __iter__(self) -> Iterator[Peer]:
        """A snapshot: the set may change while the caller awaits between peers."""
        return iter(list(self.peers.values()))

    def get(self, node_id: bytes) -> Optional[Peer]:
        return self.peers.get(node_id)

    def add(self, peer: Peer) -> None:
        self.peers[peer.node_id] = peer

    def remove(self, peer: Peer) -> bool:
        """Forget ``peer`` if it is the connection registered under its node id (a
        replaced duplicate is not); True if it was."""
        if self.peers.get(peer.node_id) is peer:
            del self.peers[peer.node_id]
            return True
        return False

    def banned(self, peer: Peer) -> Optional[str]:
        """Why the peer may not connect (its identity or its address is banned), or None."""
        return self.book.banned(peer.keys) or self.addresses.banned(peer.remote_host)

    # --- choosing -------------------------------------------------------------------------

    def score(self, peer: Peer) -> int:
        return self.book.score(peer.keys[0])

    def by_score(self) -> list[Peer]:
        """Best score first: whom to ask for data that any peer may hold (blobs)."""
        return sorted(self.peers.values(), key=lambda p: -self.score(p))

    def claiming_more(self, more_than: int, eligible: Callable[[Peer], bool] = lambda p: True) -> list[Peer]:
        """The ``eligible`` open connections whose chains claim more work than ``more_than``."""
        return [p for p in self.peers.values() if p.total_work > more_than and not p.closed.is_set() and eligible(p)]

    def heaviest(self, more_than: int, eligible: Callable[[Peer], bool] = lambda p: True) -> Optional[Peer]:
        """The open connection whose chain claims the most work, if above ``more_than``,
        among the ``eligible`` ones."""
        return max(self.claiming_more(more_than, eligible), key=lambda p: p.total_work, default=None)

    # --- costs ----------------------------------------------------------------------------

    async def penalise(self, peer: Peer, penalty: int, reason: str) -> None:
        """Take ``penalty`` from the peer's score; ban and disconnect at the threshold.
        Invalid data (a penalty of an invalid block or more) also strikes its address."""
        if self.book.penalise(peer.keys, penalty, reason):
            log.warning("peer %s banned for %.0f s: %s", peer.name, self.ban_seconds, reason)
            await peer.close(f"banned: {reason}")
        if penalty >= PENALTY_INVALID_BLOCK:
            await self._strike_address(peer, reason)

    async def ban(self, peer: Peer, reason: str) -> None:
        """Ban the peer's identity (an invalid block), and strike its address."""
        self.book.ban(peer.keys, reason)
        log.warning("peer %s banned for %.0f s: %s", peer.name, self.ban_seconds, reason)
        await peer.close(f"banned: {reason}")
        await self._strike_address(peer, reason)

    async def _strike_address(self, peer: Peer, reason: str) -> None:
        """Count an expensive offence against the peer's IP address; when that bans the
        address, every connection from it goes (a new node id does not shed the ban)."""
        length = self.addresses.strike(peer.remote_host, reason)
        if length is None:
            return
        log.warning("address %s banned for %.0f s: %s", peer.remote_host, length, self.addresses.banned(peer.remote_host))
        for other in self:
            if other.remote_host == peer.remote_host:
                await other.close(f"banned: {self.addresses.banned(peer.remote_host)}")

"""Configuration of the p2p service and the protocol's fixed constants."""
from __future__ import annotations

from dataclasses import dataclass, field

PROTOCOL_VERSION = 1
"""Bumped on any incompatible change of docs/p2p.md; peers of another version are refused."""

CLIENT_NAME = "pouw-node/0.1"
WS_PATH = "/p2p"


@dataclass(frozen=True)
class PeerAddress:
    """A static peer: where to dial it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> "PeerAddress":
        """``host:port`` (``[v6]:port`` accepted); ValueError with a clear message."""
        host, sep, port = text.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"peer address must be host:port, got {text!r}")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True)
class P2PConfig:
    """What the service listens on, whom it dials, and its limits.

    Defaults bind to loopback: a node is only reachable from other machines when
    ``listen_host`` is set explicitly.
    """

    listen_host: str = "127.0.0.1"
    listen_port: int = 30303
    """0 picks a free port (tests); the bound port is then ``P2PService.port``."""
    listen: bool = True
    static_peers: tuple[PeerAddress, ...] = ()
    max_peers: int = 25

    # Limits on what a peer may send.
    max_message_bytes: int = 16 * 1024 * 1024
    """Largest frame accepted at all (aiohttp's ``max_msg_size``, checked before decoding)."""
    response_budget_bytes: int = 4 * 1024 * 1024
    """Raw bytes of blocks (and payloads) we put in one response before stopping."""
    messages_per_second: float = 200.0
    message_burst: int = 1000
    requests_per_second: float = 50.0
    request_burst: int = 200
    max_pending_requests: int = 32
    """Requests from one peer queued for serving; more is abuse."""

    # Scores and bans.
    ban_seconds: float = 600.0
    ban_score: int = -100
    address_strikes: int = 3
    """Invalid blocks (or corrupt blobs) from one IP address, under any node ids, within
    ``address_window_s`` that ban the address itself (p2p/scoring.py AddressStrikes)."""
    address_window_s: float = 3600.0

    # Timing.
    handshake_timeout_s: float = 5.0
    request_timeout_s: float = 20.0
    heartbeat_s: float = 15.0
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0

    # Sync.
    sync_batch: int = 64
    """Blocks asked for per request (the server may send fewer)."""
    sync_recheck_s: float = 5.0
    """Without a request for a sync round, whether a peer claims more work than ours is
    checked this often (a round starts if one does)."""
    gossip_delay_s: float = 0.05
    """Head announcements and transactions are coalesced for this long."""

    # Blob prefetch: the datasets and checkpoint states of open jobs, fetched from peers
    # after new heads so that this node can mine those jobs (consensus/miner.py mines
    # only jobs whose blobs it has).
    prefetch: bool = True
    prefetch_delay_s: float = 1.0
    """A round starts this long after a new head (later heads in between: one round)."""
    prefetch_max_jobs: int = 64
    """The newest posted jobs looked at per round."""
    prefetch_max_blobs: int = 4
    """Blobs asked for per round at most (the next head's round goes on)."""
    prefetch_retry_s: float = 120.0
    """A blob no peer served is not asked for again before this."""

    extra: dict[str, str] = field(default_factory=dict)

"""Node-to-node protocol: JSON messages over aiohttp WebSockets.

Map of the package (reading order):

- ``config.py``: :class:`P2PConfig` (addresses, static peers, limits) and the constants;
- ``messages.py``: the wire format, one size limit per message type checked before
  decoding, and strict field parsers (docs/p2p.md is the specification);
- ``scoring.py``: per-peer rate limits, scores and bans;
- ``peer.py``: one connection: handshake, request/response, the reader loop;
- ``sync.py``: block locators, serving chain segments, downloading and importing them;
- ``service.py``: :class:`P2PService`, the entry point the node starts and stops;
- ``cli.py``: ``--p2p-addr/--p2p-port/--peers`` and the helpers that wire the service
  into ``pouw-node run``.
"""
from p2p.config import P2PConfig, PROTOCOL_VERSION
from p2p.service import P2PService

__all__ = ["P2PConfig", "P2PService", "PROTOCOL_VERSION"]

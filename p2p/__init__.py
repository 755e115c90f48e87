"""Node-to-node protocol: JSON messages over aiohttp WebSockets.

Map of the package (reading order):

- ``config.py``: :class:`P2PConfig` (addresses, static peers, limits) and the constants;
- ``messages.py``: the wire format, one size limit per message type checked before
  decoding, and strict field parsers (docs/p2p.md is the specification);
- ``scoring.py``: per-peer rate limits, scores and bans (the bookkeeping);
- ``interfaces.py``: what p2p needs from the node (``NodeBackend``) and what its parts
  share (head info, counters, the read pool);
- ``peer.py``: one connection: handshake, request/response, the reader loop;
- ``peerset.py``: the connected peers; penalties and bans, closing what they cover;
- ``importer.py``: importing peers' blocks, failures sorted into invalid and transient,
  a missing blob fetched by its hash;
- ``sync.py``: block locators, serving chain segments, downloading heavier chains;
- ``gossip.py``: head announcements and transactions, both ways, with per-peer seen-sets;
- ``blobs.py``: blob fetch and serving, prefetch of open jobs' datasets and checkpoints;
- ``service.py``: :class:`P2PService`, the entry point the node starts and stops:
  listening, dialing, admission, and routing between the parts above.

The command-line wiring into ``pouw-node run`` is ``node/p2p.py``.
"""
from p2p.config import P2PConfig, PROTOCOL_VERSION
from p2p.service import P2PService

__all__ = ["P2PConfig", "P2PService", "PROTOCOL_VERSION"]

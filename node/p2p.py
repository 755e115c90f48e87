"""Command-line wiring of the p2p service for ``pouw-node run`` (docs/p2p.md, "Wiring"):

    from node.p2p import add_p2p_arguments, start_p2p_from_args
    add_p2p_arguments(run_parser)                       # node/cli.py build_parser()
    p2p = await start_p2p_from_args(args, node)          # node/cli.py _run_until_signal
    ... await p2p.stop()                                 # after the stop event
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from p2p.config import P2PConfig, PeerAddress
from p2p.service import P2PService

BLOBS_DIRNAME = "blobs"


def _peer_list(text: str) -> tuple[PeerAddress, ...]:
    try:
        return tuple(PeerAddress.parse(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], got {text}")
    return value


def add_p2p_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--p2p-addr``, ``--p2p-port``, ``--peers``, ``--no-p2p``, ``--max-peers``
    (skipping any the parser already has)."""
    have = {opt for action in parser._actions for opt in action.option_strings}
    group = parser.add_argument_group("peer-to-peer")

    def add(flag: str, **kw: Any) -> None:
        if flag not in have:
            group.add_argument(flag, **kw)

    add("--p2p-addr", default="127.0.0.1", help="p2p listen address (default 127.0.0.1: this machine only)")
    add("--p2p-port", type=_port, default=30303, help="p2p listen port (default 30303; 0 = any free port)")
    add("--peers", type=_peer_list, default=(), metavar="HOST:PORT,...",
        help="static peers, dialed at start and redialed with backoff")
    add("--no-p2p", action="store_true", help="do not start the p2p service")
    add("--max-peers", type=int, default=25, help="most connected peers (default 25)")


def config_from_args(args: argparse.Namespace) -> P2PConfig:
    return P2PConfig(
        listen_host=args.p2p_addr,
        listen_port=args.p2p_port,
        static_peers=tuple(args.peers),
        max_peers=getattr(args, "max_peers", 25),
    )


def blobstore_for(node: Any) -> Any:
    """The node's blob store: consensus's LevelDB store over the chain's database (where
    the pouw engine looks for datasets and checkpoints) when it exists, else a directory
    store under DATADIR/blobs (same content-addressed protocol)."""
    try:
        from consensus.blobs import LevelDBBlobStore
    except ImportError:
        from pouw.blobstore import DirectoryBlobStore

        return DirectoryBlobStore(Path(node.datadir.path) / BLOBS_DIRNAME)
    return LevelDBBlobStore(node.chain.db)


async def start_p2p_from_args(args: argparse.Namespace, node: Any, blobstore: Any = None) -> Optional[P2PService]:
    """Start the service for a :class:`node.node.Node` (None with ``--no-p2p``). The
    caller stops it with ``await service.stop()`` before the datadir is closed."""
    if getattr(args, "no_p2p", False):
        return None
    if blobstore is None:
        blobstore = getattr(node, "blobstore", None) or blobstore_for(node)
    service = P2PService(node.backend, config_from_args(args), blobstore)
    await service.start()
    node.p2p = service
    return service

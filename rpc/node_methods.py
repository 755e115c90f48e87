"""The geth namespaces that tools reach for first: ``txpool_`` and ``admin_`` (read-only).

``txpool_status``, ``txpool_content``, ``txpool_contentFrom`` and ``txpool_inspect`` read
the pool as geth shows it (pending: executable now; queued: behind a nonce gap).
``admin_nodeInfo`` and ``admin_peers`` describe this node and its p2p connections in
geth's shape; the protocol entry is ``pouw`` (our p2p is not devp2p, so ``enode`` is a
``pouw://`` URL, not an enode). No ``admin_`` method changes anything (no addPeer, no
start/stop of endpoints), and the namespace is off unless ``--rpc-api`` names it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, TypedDict, TypeVar

from eth.abc import SignedTransactionAPI
from eth_utils import to_checksum_address

from chain.txpool import TxPool

from rpc import encoding
from rpc.context import CallContext
from rpc.hexcodec import data, parse_address, quantity
from rpc.registry import Param, Registry

if TYPE_CHECKING:
    from rpc.sources import PeerSource

Rendered = TypeVar("Rendered")

node = Registry()


def _pool(ctx: CallContext) -> TxPool | None:
    pool = getattr(ctx.backend, "pool", None)
    return pool if isinstance(pool, TxPool) else None


@node.method("txpool_status", blocking=True)
def txpool_status(ctx: CallContext) -> dict[str, str]:
    pool = _pool(ctx)
    if pool is None:
        return {"pending": quantity(0), "queued": quantity(0)}
    stats = pool.stats()
    return {"pending": quantity(stats.pending), "queued": quantity(stats.queued)}


def _content(
    pool: TxPool | None, render: Callable[[SignedTransactionAPI], Rendered], sender: bytes | None = None
) -> dict[str, dict[str, dict[str, Rendered]]]:
    content = pool.content() if pool is not None else {"pending": {}, "queued": {}}
    return {
        kind: {
            to_checksum_address(address): {str(nonce): render(tx) for nonce, tx in sorted(txs.items())}
            for address, txs in by_sender.items()
            if sender is None or address == sender
        }
        for kind, by_sender in content.items()
    }


@node.method("txpool_content", blocking=True)
def txpool_content(ctx: CallContext) -> dict[str, dict[str, dict[str, encoding.TransactionJson]]]:
    """{pending|queued: {sender: {nonce: transaction}}}, like geth (senders checksummed,
    nonces as decimal strings)."""
    return _content(_pool(ctx), encoding.transaction_json)


@node.method("txpool_contentFrom", Param("address", parse_address), blocking=True)
def txpool_content_from(ctx: CallContext, address: bytes) -> dict[str, dict[str, encoding.TransactionJson]]:
    """txpool_content of one sender: {pending|queued: {nonce: transaction}}."""
    full = _content(_pool(ctx), encoding.transaction_json, address)
    return {kind: next(iter(by_sender.values()), {}) for kind, by_sender in full.items()}


def _summary(tx: SignedTransactionAPI) -> str:
    to = to_checksum_address(tx.to) if tx.to else "contract creation"
    price = tx.gas_price if encoding.transaction_type(tx) in (0, 1) else tx.max_fee_per_gas
    return f"{to}: {tx.value} wei + {tx.gas} gas × {price} wei"


@node.method("txpool_inspect", blocking=True)
def txpool_inspect(ctx: CallContext) -> dict[str, dict[str, dict[str, str]]]:
    """txpool_content with each transaction as geth's one-line summary."""
    return _content(_pool(ctx), _summary)


# -- admin --------------------------------------------------------------------------


def _p2p(ctx: CallContext) -> "PeerSource | None":
    return ctx.backend.peers


class ProtocolJson(TypedDict):
    network: int
    difficulty: int
    genesis: str | None
    head: str
    number: int


class PortsJson(TypedDict):
    discovery: int
    listener: int


class AdminNodeInfoJson(TypedDict):
    id: str
    name: str
    enode: str
    ip: str
    listenAddr: str
    ports: PortsJson
    protocols: dict[str, ProtocolJson]


@node.method("admin_nodeInfo", blocking=True)
def admin_node_info(ctx: CallContext) -> AdminNodeInfoJson:
    backend = ctx.backend
    head = backend.head_header()
    genesis = backend.header_by_number(0)
    protocol: ProtocolJson = {
        "network": backend.chain_id,
        "difficulty": backend.total_difficulty(head.hash) or 0,
        "genesis": data(genesis.hash) if genesis is not None else None,
        "head": data(head.hash),
        "number": head.block_number,
    }
    p2p = _p2p(ctx)
    if p2p is None:
        return {
            "id": "", "name": backend.client_version, "enode": "", "ip": "", "listenAddr": "",
            "ports": {"discovery": 0, "listener": 0}, "protocols": {"pouw": protocol},
        }
    me = p2p.node_summary()
    port = me["port"]
    if not isinstance(port, int):
        raise TypeError(f"p2p node summary: port {port!r} is not an integer")
    host, node_id = str(me["listen_host"]), str(me["id"])
    return {
        "id": node_id,
        "name": backend.client_version,
        "enode": f"pouw://{node_id}@{host}:{port}",
        "ip": host,
        "listenAddr": f"{host}:{port}",
        "ports": {"discovery": 0, "listener": port},  # static peers only: no discovery
        "protocols": {"pouw": protocol},
    }


@node.method("admin_peers", blocking=True)
def admin_peers(ctx: CallContext) -> list[dict[str, object]]:
    p2p = _p2p(ctx)
    if p2p is None:
        return []
    me = p2p.node_summary()
    peers: list[dict[str, object]] = []
    for peer in p2p.peer_summaries():
        listen = peer["listen_port"]
        peers.append({
            "id": peer["id"],
            "name": peer["client"],
            "caps": ["pouw/1"],
            "network": {
                "localAddress": f"{me['listen_host']}:{me['port']}",
                "remoteAddress": f"{peer['remote_host']}:{listen}" if listen else peer["remote_host"],
                "inbound": not peer["outbound"],
                "trusted": False,
                "static": bool(peer["outbound"]),
            },
            "protocols": {"pouw": {
                "head": peer["head"],
                "number": peer["number"],
                "difficulty": peer["total_work"],
                "score": peer["score"],
            }},
        })
    return peers

"""JSON-RPC 2.0 server (aiohttp) over HTTP and WebSocket: eth_, net_, web3_ namespaces.

Entry points: :func:`create_app`, :func:`serve`, :func:`running_server`, :class:`RpcConfig`;
the node binds its chain with :class:`rpc.backend.ChainBackend` and announces new heads
and pool transactions through ``backend.events`` (:class:`rpc.events.EventHub`).
"""
from rpc.config import RpcConfig
from rpc.server import create_app, running_server, serve

__all__ = ["RpcConfig", "create_app", "running_server", "serve"]

"""Fixtures: in-process nodes started on free loopback ports, stopped after the test."""
from __future__ import annotations

from typing import AsyncIterator, Callable

import pytest_asyncio

from tests.p2p.helpers import FakePeer, TestNode


@pytest_asyncio.fixture
async def make_node() -> AsyncIterator[Callable[..., TestNode]]:
    """``make_node(name, path=None)``: a node, not started; stopped and closed at the end."""
    nodes: list[TestNode] = []

    def make(name: str, **kw: object) -> TestNode:
        node = TestNode(name, **kw)  # type: ignore[arg-type]
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.stop()
        node.close()


@pytest_asyncio.fixture
async def fake_peers() -> AsyncIterator[list[FakePeer]]:
    """A list the test appends its FakePeers to; they are closed at the end."""
    peers: list[FakePeer] = []
    yield peers
    for peer in peers:
        await peer.close()

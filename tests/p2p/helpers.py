"""P2P test helpers: the kit's in-process node (``devnet/kit/p2pnode.py``) with P2P
settings overridable by keyword, and a hand-driven raw WebSocket peer for abuse tests."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from typing import Any, Iterable, Optional, Self

import aiohttp
import rlp
from aiohttp import WSMsgType

from devnet.kit import p2pnode
from devnet.kit.p2pnode import converged, fast_p2p_config, wait_for
from p2p import messages as m
from p2p.config import PROTOCOL_VERSION, WS_PATH, P2PConfig, PeerAddress
from p2p.peer import Hello

__all__ = ["FakePeer", "TestNode", "block_rlp", "converged", "wait_for"]


class TestNode(p2pnode.TestNode):
    """The kit's node; :meth:`start` also takes P2P settings by keyword, over the
    kit's fast ones (``start([a], sync_batch=16)``)."""

    __test__ = False

    async def start(self, peers: Iterable["p2pnode.TestNode | PeerAddress"] = (), config: Optional[P2PConfig] = None,
                    **overrides: Any) -> Self:
        if overrides:
            config = dataclasses.replace(config if config is not None else fast_p2p_config(), **overrides)
        return await super().start(peers, config)


def block_rlp(block: Any) -> bytes:
    return rlp.encode(block)


# --- a hand-driven peer (raw WebSocket) for abuse tests --------------------------------


class FakePeer:
    """A raw WebSocket client that speaks (or breaks) the protocol on purpose."""

    def __init__(self, node: TestNode) -> None:
        self.node = node
        self.session: Optional[aiohttp.ClientSession] = None
        self.ws: Any = None
        self.node_id = os.urandom(16)
        self.their_hello: Optional[Hello] = None

    def hello(self, **overrides: Any) -> Hello:
        chain = self.node.chain
        head = chain.head()
        fields = dict(
            protocol=PROTOCOL_VERSION, chain_id=chain.genesis.chain_id, genesis=bytes(chain.genesis_hash),
            head=bytes(head.hash), number=int(head.block_number), total_work=int(chain.score(head.hash)),
            node_id=self.node_id, listen_port=0, client="fake",
        )
        fields.update(overrides)
        return Hello(**fields)

    async def connect(self, *, handshake: bool = True, max_msg_size: int = 64 * 1024 * 1024, **hello: Any) -> "FakePeer":
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(f"ws://127.0.0.1:{self.node.p2p.port}{WS_PATH}", max_msg_size=max_msg_size)
        if handshake:
            await self.ws.send_str(self.hello(**hello).encode())
            msg = await self.ws.receive(timeout=5)
            assert msg.type == WSMsgType.TEXT, msg
            decoded = m.decode(msg.data, 1 << 20)
            if decoded.type == "hello":
                self.their_hello = Hello.parse(decoded.body)
        return self

    async def send(self, frame: str) -> None:
        await self.ws.send_str(frame)

    async def receive(self, timeout: float = 10.0) -> Optional[m.Message]:
        """Next message; None once the connection is closed."""
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != WSMsgType.TEXT:
            return None
        return m.decode(msg.data, 64 * 1024 * 1024)

    async def receive_next(self, type_: str, timeout: float = 10.0) -> m.Message:
        """The next message of ``type_``, skipping gossip (a ``new_block`` the node may
        announce to a new peer at any moment)."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.receive(timeout=max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"closed while waiting for {type_}"
            if msg.type == type_:
                return msg
            assert msg.type in ("new_block", "txs"), f"expected {type_}, got {msg.type}"

    async def closed_reason(self, timeout: float = 10.0) -> str:
        """Read until the node closes the connection; the reason it gave."""
        reason = ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.ws.receive(timeout=deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("disconnect "):
                    reason = m.decode(msg.data, 1 << 20).body.get("reason", "")
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return reason or "closed"
        raise AssertionError("the node did not close the connection")

    async def close(self) -> None:
        if self.ws is not None:
            try:  # the node may have dropped us: do not wait long for its closing frame
                await asyncio.wait_for(self.ws.close(), 2.0)
            except asyncio.TimeoutError:
                pass
        if self.session is not None:
            await self.session.close()


def pouw_test_node(make_node: Any, name: str, genesis: Any) -> "TestNode":
    """A node of ``make_node`` on a pouw ``genesis``: the pouw engine, blobs beside the chain."""
    from consensus.blobs import LevelDBBlobStore
    from consensus.engine import PouwEngine

    node: TestNode = make_node(name, genesis=genesis, seal_engine=PouwEngine, blobs=LevelDBBlobStore)
    return node


async def mine_and_announce(node: "TestNode", coinbase: bytes, transactions: Iterable[Any] = ()) -> Any:
    """One honest pouw block on the node's head (trained in a thread, under its write
    lock), imported and announced to its peers."""
    from devnet.kit.mining import mine_block

    def locked() -> Any:
        with node.chain.write_lock:
            return mine_block(node.chain, coinbase, list(transactions))

    mined = await asyncio.to_thread(locked)
    node.backend.notify_new_head(mined.block.hash)
    return mined


async def network_with_a_substituted_block(
    make_node: Any, genesis: Any, names: tuple[str, str, str], *, seed: int = 31,
) -> tuple[list["TestNode"], Any]:
    """Three pouw nodes, the last two peered with the first (the miner): job 1 posted and
    trained once honestly, then a block whose segment 3 is substituted
    (tests/consensus/fraud_helpers.py) mined on the miner and accepted by all three.
    Returns the nodes and the substituted block."""
    from devnet.kit.accounts import ALICE, MINER
    from devnet.kit.genesis import tiny_spec
    from tests.consensus.fraud_helpers import substitute_block
    from tests.consensus.helpers import post_job_tx

    miner = await pouw_test_node(make_node, names[0], genesis).start()
    others = [await pouw_test_node(make_node, name, genesis).start([miner]) for name in names[1:]]
    nodes = [miner, *others]
    await wait_for(lambda: len(miner.p2p.peers) == 2, what="peers")
    await mine_and_announce(miner, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=10**9, escrow=10**18)])
    await mine_and_announce(miner, MINER)

    def cheat() -> Any:
        with miner.chain.write_lock:
            sub = substitute_block(miner.chain, b"\xcc" * 20, segment=3, job_id=1, seed=seed)
            miner.chain.import_block(sub.block, sub.payload)
            return sub

    sub = await asyncio.to_thread(cheat)
    miner.backend.notify_new_head(sub.block.hash)
    await converged(nodes, timeout=60)
    return nodes, sub

"""A peer that sends invalid blocks cannot shed its penalty with a new node id (issue 10):
against real ``pouw-node run`` processes, a hostile client on 127.0.0.2 sends an invalid
block (a valid block with its state root tampered), reconnects under a fresh node id each
time, and after three invalid blocks its address is refused before the handshake, while
an honest producer on 127.0.0.1 (the victim's static peer) keeps the victim syncing."""
from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiohttp
import pytest
import rlp
from aiohttp import WSMsgType
from eth.db.atomic import AtomicDB

from chain.chain import Chain
from node.node import read_genesis
from chain.sealing import NoProofEngine
from p2p import messages as m
from p2p.config import PROTOCOL_VERSION, WS_PATH
from p2p.peer import Hello
from tests.chain.helpers import MINER, with_header
from tests.p2p.node_process import NodeProcess, wait_until

HOSTILE_ADDRESS = "127.0.0.2"


def _loopback_alias_usable() -> bool:
    try:
        with socket.socket() as s:
            s.bind((HOSTILE_ADDRESS, 0))
        return True
    except OSError:
        return False


def invalid_blocks(count: int) -> list[bytes]:
    """Children of the dev genesis whose state root is wrong: every check before
    execution passes, so each one costs the victim an execution before it is refused."""
    genesis = read_genesis("dev").config
    chain = Chain.open(AtomicDB(), genesis, seal_engine=NoProofEngine)
    blocks = []
    for i in range(count):
        block, _ = chain.build_block(MINER, timestamp=genesis.timestamp + 5, extra_data=bytes([i]))
        blocks.append(rlp.encode(with_header(block, state_root=bytes([i + 1]) * 32)))
    return blocks


async def attack_once(port: int, chain_id: int, genesis_hash: bytes, block: bytes) -> str:
    """Connect from 127.0.0.2 under a fresh node id, claim a heavier chain, answer the
    victim's sync request with ``block``; what the victim did: "refused 403", or the
    reason it closed the connection with."""
    connector = aiohttp.TCPConnector(local_addr=(HOSTILE_ADDRESS, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_msg_size=64 << 20)
        except aiohttp.WSServerHandshakeError as exc:
            return f"refused {exc.status}"
        hello = Hello(protocol=PROTOCOL_VERSION, chain_id=chain_id, genesis=genesis_hash, head=os.urandom(32),
                      number=10**6, total_work=10**40, node_id=os.urandom(16), listen_port=0, client="hostile")
        await ws.send_str(hello.encode())
        reason = "closed"
        try:
            while True:
                msg = await ws.receive(timeout=30)
                if msg.type != WSMsgType.TEXT:
                    if reason == "closed" and msg.type == WSMsgType.CLOSE and msg.extra:
                        reason = str(msg.extra)  # the close frame repeats the reason (truncated)
                    break
                decoded = m.decode(msg.data, 64 << 20)
                if decoded.type in ("get_chain", "get_blocks"):
                    await ws.send_str(m.encode("blocks", id=decoded.body["id"], blocks=[[m.hx(block), None]]))
                elif decoded.type == "disconnect":
                    reason = str(decoded.body.get("reason", ""))
        except asyncio.TimeoutError:
            reason = "timeout"
        finally:
            await ws.close()
        return reason


@pytest.mark.skipif(not _loopback_alias_usable(), reason="needs a second loopback address (127.0.0.2)")
def test_attack_invalid_blocks_under_fresh_node_ids_get_the_address_banned(tmp_path: Path) -> None:
    honest = NodeProcess(tmp_path / "honest", "--dev-period", "1")
    victim = None
    try:
        assert honest.p2p_port is not None
        victim = NodeProcess(tmp_path / "victim", "--peers", f"127.0.0.1:{honest.p2p_port}")
        wait_until(lambda: victim.block_number() >= 2, 60, "the victim to sync from the honest producer")
        chain_id = int(victim.rpc("eth_chainId"), 16)
        genesis_hash = bytes.fromhex(victim.rpc("eth_getBlockByNumber", "0x0", False)["hash"][2:])
        assert victim.p2p_port is not None

        # Each attempt under a new node id, until the address is refused, then two more.
        outcomes: list[str] = []
        for block in invalid_blocks(8):
            outcomes.append(asyncio.run(attack_once(victim.p2p_port, chain_id, genesis_hash, block)))
            if outcomes[-2:] == ["refused 403"] * 2:
                break
        # Three invalid blocks cost the victim an execution each, under three identities
        # (its log is the record: a client may see the close before the disconnect text)...
        validated = victim.grep(rf"invalid block from {HOSTILE_ADDRESS}:-/[0-9a-f]{{8}}: InvalidStateRoot")
        assert len({line.split("/")[1][:8] for line in validated}) == len(validated) == 3, (outcomes, validated)
        assert all(reason != "refused 403" for reason in outcomes[:3]), outcomes
        # ...then the address itself is banned: later identities never get a handshake.
        assert outcomes[3:] == ["refused 403"] * 2, outcomes
        assert victim.grep(rf"address {HOSTILE_ADDRESS} banned for 600 s"), victim.log()

        # The honest producer (127.0.0.1, a static peer) was never cut off: the victim
        # keeps following its head.
        start = victim.block_number()
        wait_until(lambda: victim.block_number() >= start + 3, 30, "the victim to keep syncing")
        wait_until(lambda: abs(honest.block_number() - victim.block_number()) <= 1, 30, "heads to agree")
        assert int(victim.rpc("net_peerCount"), 16) == 1
        assert victim.alive() and honest.alive()
    finally:
        if victim is not None:
            assert victim.stop() == 0, victim.log()
        assert honest.stop() == 0, honest.log()

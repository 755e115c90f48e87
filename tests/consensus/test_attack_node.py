"""The heavy-block attack against a real ``pouw-node run`` process.

A peer grinds a ticket with keccaks only (no training) for a block that carries a
gas-burning contract creation, announces it, and serves it when asked, again and again,
each time under a fresh node id. Before the fix the victim executed the block's
transactions before checking the work: 13 to 25 s of CPU per delivery, with the pool
lock held. Now the work is checked first, so each delivery costs the victim
milliseconds, far below what executing the block costs (measured here, in the same run,
by the forger building its own template).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import aiohttp
import pytest
import rlp
from aiohttp import WSMsgType

from chain.chain import Seal
from consensus.engine import backend_for
from consensus.jobs import initial_state_bytes, load_dataset
from genesis.format import parse_genesis
from p2p import messages as m
from p2p.config import PROTOCOL_VERSION, WS_PATH
from p2p.peer import Hello
from pouw.spec import JobSpec
from tests.chain.helpers import ALICE, BOB, MINER, sign_tx, transfer
from tests.consensus.helpers import STANDING_ID, open_pouw_chain, pouw_genesis_dict, tiny_spec, tiny_work_units
from tests.consensus.sim import simulate

ROOT = Path(__file__).resolve().parents[2]
LOOP_FOREVER = bytes.fromhex("5b600056")  # JUMPDEST PUSH1 0 JUMP: burns all the gas it is given
DELIVERIES = 4


class Node:
    """``pouw-node run`` on a fresh datadir with p2p on a free port, not mining."""

    def __init__(self, tmp: Path, genesis: dict[str, Any]) -> None:
        self.tmp, self.lines = tmp, []
        (tmp / "genesis.json").write_text(json.dumps(genesis))
        init = subprocess.run([sys.executable, "-m", "node.cli", "init", "--datadir", str(tmp / "d"), "--genesis",
                               str(tmp / "genesis.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert init.returncode == 0, init.stderr
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--datadir", str(tmp / "d"), "--rpc-port", "0", "--p2p-port", "0"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.rpc_url: Optional[str] = None
        self.p2p_port: Optional[int] = None
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if (u := re.search(r"JSON-RPC listening on (http://\S+)", line)) is not None:
                    self.rpc_url = u.group(1)
                if (p := re.search(r"p2p listening on ws://[\d.]+:(\d+)", line)) is not None:
                    self.p2p_port = int(p.group(1))
                if self.rpc_url and self.p2p_port:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(90)
        assert self.rpc_url and self.p2p_port, "\n".join(self.lines[-40:])

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def rpc(session: aiohttp.ClientSession, url: str, method: str, *params: Any) -> Any:
    async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}) as r:
        return (await r.json())


async def deliver(port: int, chain: Any, block: Any, payload: bytes) -> str:
    """One delivery from a fresh node id: hello, announce, serve get_blocks; returns how it ended."""
    genesis = chain.genesis
    head = chain.get_header_by_hash(chain.genesis_hash)
    hello = Hello(protocol=PROTOCOL_VERSION, chain_id=genesis.chain_id, genesis=bytes(chain.genesis_hash),
                  head=bytes(head.hash), number=0, total_work=int(chain.score(head.hash)),
                  node_id=os.urandom(16), listen_port=0, client="forger")
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_msg_size=64 << 20)
        except aiohttp.ClientError as exc:
            return f"refused at connect: {exc}"
        await ws.send_str(hello.encode())
        await ws.send_str(m.encode("new_block", hash=m.hx(block.hash), number=block.number,
                                   total_work=m.qty(int(chain.score(head.hash)) + block.header.difficulty)))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            if msg.type != WSMsgType.TEXT:
                return "closed"
            decoded = m.decode(msg.data, 64 << 20)
            if decoded.type == "get_blocks":
                await ws.send_str(m.encode("blocks", id=decoded.body["id"],
                                           blocks=[[m.hx(rlp.encode(block)), m.hx(payload)]]))
            elif decoded.type == "get_chain":
                await ws.send_str(m.encode("blocks", id=decoded.body["id"], blocks=[], head=m.hx(block.hash),
                                           number=block.number, total_work=m.qty(block.header.difficulty)))
            elif decoded.type == "disconnect":
                return "disconnected: " + str(decoded.body.get("reason", ""))
        return "timeout"


@pytest.mark.slow
def test_attack_heavy_forged_block_costs_the_node_milliseconds(tmp_path: Path) -> None:
    raw = pouw_genesis_dict(expected_steps=400, k=2)
    genesis = parse_genesis(json.loads(json.dumps(raw)))
    forger_chain = open_pouw_chain(genesis)
    burn = sign_tx(ALICE, 0, None, data=LOOP_FOREVER, gas=8_000_000, tip=0)
    t0 = time.process_time()
    template = forger_chain.build_template(MINER, timestamp=genesis.timestamp + 5, transactions=[burn])
    execute_s = time.process_time() - t0  # what executing this block costs (the forger's own build)
    spec = JobSpec.from_dict(tiny_spec())
    tr = simulate(spec, load_dataset(spec, None, 1 << 30), backend_for("cpu"),
                  initial_state_bytes(STANDING_ID, spec), k=2, difficulty=template.header.difficulty,
                  work_units=tiny_work_units(), fake_ticket=True, template_hash=template.template_hash,
                  coinbase=MINER, job_id=STANDING_ID)
    c = tr.claim
    block = forger_chain.seal_block(template, Seal(STANDING_ID.to_bytes(32, "big"), c.h0, c.step_count,
                                                   c.final_state, c.work_accumulator))
    payload = tr.payload.encode()

    node = Node(tmp_path, raw)
    try:
        async def attack() -> tuple[list[str], float, list[float]]:
            outcomes, send_latency = [], []
            # the first delivery also pays the node's one-time start of the work engine (torch)
            outcomes.append(await deliver(node.p2p_port, forger_chain, block, payload))
            before = node.cpu_seconds()
            async with aiohttp.ClientSession() as session:
                for i in range(DELIVERIES):
                    outcomes.append(await deliver(node.p2p_port, forger_chain, block, payload))
                    # a user's transaction right after each delivery is accepted at once
                    tx = transfer(BOB, i, b"\x07" * 20)
                    raw_tx = "0x" + (tx.encode() if hasattr(tx, "encode") else rlp.encode(tx)).hex()
                    t = time.monotonic()
                    reply = await rpc(session, node.rpc_url, "eth_sendRawTransaction", raw_tx)
                    send_latency.append(time.monotonic() - t)
                    assert "result" in reply, reply
                head = await rpc(session, node.rpc_url, "eth_blockNumber")
                assert head["result"] == "0x0", "the forged block must not be imported"
            return outcomes, node.cpu_seconds() - before, send_latency

        outcomes, cpu, latency = asyncio.run(attack())
    finally:
        node.stop()
    log = "\n".join(node.lines)
    refusals = len(re.findall(r"TicketSegmentMismatch|ticket segment|recomputes to another state", log))
    print(f"\nheavy forged block: executing it costs {execute_s:.2f} s of CPU (forger's build); the victim spent "
          f"{cpu:.2f} s of CPU on {DELIVERIES} more deliveries (each from a fresh node id); "
          f"eth_sendRawTransaction latency max {max(latency) * 1e3:.0f} ms; first outcome: {outcomes[0][:120]}")
    assert refusals >= 1, log[-3000:]
    assert all(o.startswith("disconnected") or o.startswith("refused") for o in outcomes), outcomes
    assert cpu < 0.1 * DELIVERIES * execute_s, (cpu, execute_s)  # executing would cost DELIVERIES x execute_s
    assert max(latency) < 1.0

"""Fuzz a real ``pouw-node run`` over p2p: at least 10,000 generated and mutated frames.

Frames of every kind the wire allows and many it does not: deep nesting (the frame that
once segfaulted a node), oversized and truncated frames, wrong JSON types, huge numbers,
bad hex, unknown types, binary frames, unsolicited responses, a second hello, and sync
answers carrying valid-looking blocks with wrong work (tampered accumulator, ticket step,
final state, payload) or wrong execution. Sessions reconnect under a fresh node id as the
node closes them. Throughout: the node must not crash, every frame it sends must be
well formed, its JSON-RPC must keep answering, and an honest peer must keep getting
blocks. The fuzz client connects from 127.0.0.1, which the node is told is a static
peer's address, so its address is never banned as a whole (docs/p2p.md) and the fuzz
keeps reaching the code behind the handshake.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import aiohttp
import pytest
import rlp
from aiohttp import WSMsgType

from p2p import messages as m
from p2p.config import PROTOCOL_VERSION, WS_PATH
from p2p.peer import Hello
from tests.p2p.node_process import NodeProcess

N_FRAMES = 10_000
WORKERS = 6
SEED = 20261202

pytestmark = pytest.mark.slow


@dataclass
class Corpus:
    """What the fuzz starts from: the node's chain identity and blocks, valid and broken."""

    chain_id: int
    genesis: bytes
    known: list[tuple[bytes, bytes]]
    """(block RLP, payload) of blocks the node has."""
    child: tuple[bytes, bytes]
    """A valid block on the node's head that the node does not have."""
    broken: list[tuple[str, Optional[str]]]
    """Block entries (hex RLP, hex payload or None) that are invalid in one way each."""
    broken_hashes: list[bytes]
    """The header hash of each broken entry (random where the bytes do not decode)."""
    tx: bytes
    head_number: int
    head_work: int


def _broken_entries(child_block: Any, payload: bytes, rng: random.Random) -> list[tuple[str, Optional[str]]]:
    from tests.chain.helpers import with_header

    header = child_block.header

    def variant(**changes: Any) -> tuple[str, Optional[bytes]]:
        return m.hx(rlp.encode(with_header(child_block, **changes))), payload

    entries = [
        variant(work_accumulator=os.urandom(32)),             # the ticket does not win / does not chain
        variant(final_state=os.urandom(32)),                  # wrong checkpoint
        variant(step_count=header.step_count + 1),            # a step the payload does not carry
        variant(step_count=10**9),                            # out of range
        variant(start_checkpoint=os.urandom(32)),             # not the job's checkpoint
        variant(job_id=(12345).to_bytes(32, "big")),          # no such job
        variant(state_root=os.urandom(32)),                   # wrong execution
        variant(difficulty=header.difficulty + 1),            # wrong retarget
        variant(difficulty=2**300),                           # out of range
        variant(timestamp=header.timestamp + 10**6),          # far in the future
        variant(gas_used=header.gas_limit + 1),
        (m.hx(rlp.encode(child_block)), None),                # no payload
        (m.hx(rlp.encode(child_block)), payload[: len(payload) // 2]),
        (m.hx(rlp.encode(child_block)), payload[:-1] + bytes([payload[-1] ^ 1])),
        (m.hx(rlp.encode(child_block)), os.urandom(len(payload))),
        (m.hx(rlp.encode(child_block)), b""),
        (m.hx(rlp.encode(child_block)[:-3]), payload),        # truncated RLP
        (m.hx(os.urandom(300)), None),
        (m.hx(b"\xc0"), None),
    ]
    raw = bytearray(rlp.encode(child_block))
    for _ in range(8):  # random bit flips in the block bytes
        flipped = bytearray(raw)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        entries.append((m.hx(bytes(flipped)), payload))
    return [(block_hex, None if p is None else m.hx(p)) for block_hex, p in entries]


def _hash_or_random(block_hex: str) -> bytes:
    from p2p.sync import header_hash_of

    try:
        return bytes(header_hash_of(bytes.fromhex(block_hex[2:])))
    except (ValueError, TypeError):
        return os.urandom(32)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A pouw node with three mined blocks, and the corpus built from that chain."""
    from node.node import init_datadir, open_datadir, read_genesis
    from tests.chain.helpers import DEV_KEYS, MINER, transfer
    from tests.consensus.helpers import mine_block, pouw_genesis_dict

    root = tmp_path_factory.mktemp("p2pfuzz")
    genesis_path = root / "genesis.json"
    genesis_path.write_text(json.dumps(pouw_genesis_dict(expected_steps=6, k=3, maturity=2)))
    datadir = root / "node"
    init_datadir(datadir, read_genesis(str(genesis_path)))
    rng = random.Random(SEED)
    with open_datadir(datadir) as dd:
        chain = dd.chain
        known = []
        for _ in range(3):
            mined = mine_block(chain, MINER)
            known.append((rlp.encode(mined.block), mined.payload))
        child = mine_block(chain, MINER, do_import=False)
        broken = _broken_entries(child.block, child.payload, rng)
        corpus = Corpus(
            chain_id=chain.genesis.chain_id, genesis=bytes(chain.genesis_hash), known=known,
            child=(rlp.encode(child.block), child.payload), broken=broken,
            broken_hashes=[_hash_or_random(block_hex) for block_hex, _ in broken],
            tx=transfer(DEV_KEYS[0], 0, b"\x42" * 20, 1, chain_id=chain.genesis.chain_id).encode(),
            head_number=3, head_work=int(chain.score(chain.head().hash)),
        )
    # A static peer on 127.0.0.1 that is never up: it makes 127.0.0.1 a static peer's
    # address, which the node never bans as a whole (the fuzz client comes from there).
    node = NodeProcess(datadir, "--peers", "127.0.0.1:9", init=False)
    try:
        yield node, corpus
    finally:
        node.stop()


# --- generators ------------------------------------------------------------------------------

TYPES = list(m.TYPES)
SPECIAL = list('[]{}",:0x\\ ') + ["\u00e9", "\ud7ff", "\x00", "\x7f"]


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**53, 2**63, 2**64, 2**256, -(2**255), 10**100, rng.randrange(-10**9, 10**9)])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e308, 3.0, -0.0])
    if kind == 4:
        return rng.choice(["", "0x", "0x0", "0x00", "0xzz", "0x" + "f" * 65, "0x" + "ab" * 32, "0x" + "0" * 33,
                           "0x" + "1" * 10_001, "ünï", "\x00", "0X" + "ab" * 32, "0x" + "ab" * 16])
    if kind == 5:
        return "0x" + "".join(rng.choice("0123456789abcdefABg") for _ in range(rng.randrange(0, 80)))
    if kind in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    keys = ["id", "hash", "number", "total_work", "txs", "hashes", "locator", "max", "offset", "length", "blocks",
            "size", "data", "reason", "protocol", "chain_id", "genesis", "head", "node_id", "listen_port", "client"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 8))}


class Frames:
    """Frames: valid ones of every type from the corpus, then mutated, nested, oversized."""

    def __init__(self, corpus: Corpus, rng: random.Random) -> None:
        self.corpus = corpus
        self.rng = rng

    def valid(self) -> str:
        c, rng = self.corpus, self.rng
        kind = rng.randrange(9)
        if kind == 0:
            return m.encode("new_block", hash=m.hx(os.urandom(32)), number=rng.randrange(10**6), total_work=m.qty(rng.randrange(2**70)))
        if kind == 1:
            return m.encode("txs", txs=[m.hx(c.tx)] + [m.hx(os.urandom(rng.randrange(1, 200))) for _ in range(rng.randrange(3))])
        if kind == 2:
            return m.encode("get_blocks", id=rng.randrange(1, 10**6), hashes=[m.hx(os.urandom(32)) for _ in range(rng.randrange(1, 5))])
        if kind == 3:
            return m.encode("get_chain", id=rng.randrange(1, 10**6), locator=[m.hx(c.genesis)], max=rng.randrange(1, 129))
        if kind == 4:
            return m.encode("get_blob", id=rng.randrange(1, 10**6), hash=m.hx(os.urandom(32)), offset=0, length=1024)
        if kind == 5:  # an unsolicited response
            return m.encode("blocks", id=rng.randrange(1, 10**6), blocks=[list(rng.choice(c.broken))])
        if kind == 6:
            return m.encode("blob", id=rng.randrange(1, 10**6), hash=m.hx(os.urandom(32)), size=4, data="0x00112233")
        if kind == 7:
            return self.hello(heavier=rng.random() < 0.5)  # a second hello
        return m.encode("disconnect", reason=rng.choice(["bye", "x" * 2000, ""]))

    def hello(self, heavier: bool) -> str:
        c = self.corpus
        work = c.head_work * 10 if heavier else 1
        return Hello(protocol=PROTOCOL_VERSION, chain_id=c.chain_id, genesis=c.genesis, head=os.urandom(32),
                     number=c.head_number + (5 if heavier else 0), total_work=work, node_id=os.urandom(16),
                     listen_port=0, client="fuzz").encode()

    def mutated(self) -> str:
        rng = self.rng
        frame = self.valid()
        how = rng.randrange(9)
        if how == 0:
            return frame[: rng.randrange(len(frame) + 1)]
        if how == 1:
            at = rng.randrange(len(frame))
            return frame[:at] + rng.choice(SPECIAL) + frame[at + 1 :]
        if how == 2:
            at = rng.randrange(len(frame))
            return frame[:at] + rng.choice("[{") * rng.randrange(1, 3000) + frame[at:]
        if how == 3:
            type_, _, body = frame.partition(" ")
            return rng.choice(TYPES + ["HELLO", "blocks2", "", "x" * 40]) + " " + body
        if how == 4:
            type_, _, body = frame.partition(" ")
            try:
                obj = json.loads(body)
            except ValueError:
                return frame
            if isinstance(obj, dict) and obj:
                obj[rng.choice(list(obj))] = random_json(rng)
            return type_ + " " + json.dumps(obj)
        if how == 5:
            type_, _, body = frame.partition(" ")
            return type_ + " " + json.dumps(random_json(rng))
        if how == 6:
            return frame.replace(" ", "", 1)
        if how == 7:
            return frame + frame
        type_, _, body = frame.partition(" ")
        return type_ + " " + body.replace("{", '{"extra": ' + json.dumps(random_json(rng)) + ",", 1)

    def hostile(self) -> str:
        rng = self.rng
        kind = rng.randrange(6)
        if kind == 0:  # the frame that once killed a node, and its cousins
            return rng.choice(["txs ", "blocks ", "hello ", "get_chain "]) + rng.choice("[{") * rng.randrange(10, 200_000)
        if kind == 1:
            return 'blocks {"id":1,"blocks":' + "[" * rng.randrange(9, 5000) + "]" * rng.randrange(0, 50) + "}"
        if kind == 2:  # just over a type's limit
            type_ = rng.choice(["new_block", "get_blob", "get_chain", "disconnect", "hello"])
            limit = m.TYPES[type_].max_bytes or 1024
            return type_ + ' {"pad":"' + "a" * (limit + rng.randrange(1, 64)) + '"}'
        if kind == 3:
            return m.encode("txs", txs=["0x" + "ab" * rng.randrange(1, 1000)] * rng.randrange(60, 70))
        if kind == 4:
            return rng.choice(["", " ", "txs", "txs {}", "new_block null", "hello []", "get_chain 1e999",
                               'get_chain {"id":1e999,"locator":[],"max":1}', 'new_block {"number":-0}'])
        return m.encode("get_chain", id=rng.randrange(1, 99), locator=[m.hx(os.urandom(32))] * rng.randrange(60, 70),
                        max=rng.choice([0, 1, 128, 129, -1]))

    def next(self) -> str:
        roll = self.rng.random()
        if roll < 0.35:
            return self.valid()
        if roll < 0.8:
            return self.mutated()
        return self.hostile()


# --- the harness --------------------------------------------------------------------------------


@dataclass
class Tally:
    frames: int = 0
    sessions: int = 0
    refused: int = 0
    received: int = 0
    sync_answers: int = 0
    problems: list[str] = field(default_factory=list)
    close_reasons: dict[str, int] = field(default_factory=dict)


def check_frame(data: str, tally: Tally) -> Optional[m.Message]:
    """Every frame the node sends decodes and its fields parse."""
    try:
        msg = m.decode(data, 64 << 20)
        body = msg.body
        if msg.type == "hello":
            Hello.parse(body)
        elif msg.type == "disconnect":
            m.field_str(body, "reason", max_len=512)
        elif msg.type == "new_block":
            m.field_hash(body, "hash"), m.field_int(body, "number"), m.field_qty(body, "total_work")
        elif msg.type == "txs":
            m.field_list(body, "txs", max_len=m.MAX_TXS)
        elif msg.type in ("get_blocks", "get_chain", "get_blob"):
            m.field_request_id(body)
        elif msg.type == "blocks":
            m.field_request_id(body)
            m.parse_block_entries(body, max_len=m.MAX_BATCH, max_block=1 << 24, max_payload=1 << 24)
        elif msg.type == "blob":
            m.field_request_id(body), m.field_hash(body, "hash")
    except Exception as exc:  # noqa: BLE001 - any failure here is a finding
        tally.problems.append(f"malformed frame from the node: {type(exc).__name__}: {exc}: {data[:200]!r}")
        return None
    return msg


async def fuzz_session(http: aiohttp.ClientSession, port: int, frames: Frames, corpus: Corpus, tally: Tally,
                       budget: Callable[[], bool]) -> None:
    rng = frames.rng
    try:
        ws = await http.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_msg_size=64 << 20, timeout=aiohttp.ClientWSTimeout(ws_close=1.0))
    except aiohttp.WSServerHandshakeError:
        tally.refused += 1
        return
    except (aiohttp.ClientError, OSError) as exc:
        tally.problems.append(f"cannot connect: {exc}")
        return
    tally.sessions += 1
    announced: list[Optional[int]] = [None]

    async def send(frame: str) -> bool:
        if ws.closed:
            return False
        try:
            if rng.random() < 0.01:
                await ws.send_bytes(frame.encode("utf-8", "surrogatepass"))  # binary frames are a violation
            else:
                await ws.send_str(frame)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        tally.frames += 1
        return True

    async def read() -> None:
        while True:
            msg = await ws.receive()
            if msg.type != WSMsgType.TEXT:
                return
            tally.received += 1
            decoded = check_frame(msg.data, tally)
            if decoded is None:
                continue
            if decoded.type == "disconnect":
                reason = str(decoded.body.get("reason", ""))[:40]
                tally.close_reasons[reason] = tally.close_reasons.get(reason, 0) + 1
            if decoded.type in ("get_chain", "get_blocks"):  # answer with a block that is wrong somehow
                request_id = decoded.body["id"]
                if announced[0] is not None:
                    entry = list(corpus.broken[announced[0]])
                elif rng.random() < 0.9:
                    entry = list(rng.choice(corpus.broken))
                else:
                    entry = [m.hx(corpus.child[0]), m.hx(corpus.child[1])]
                reply = m.encode("blocks", id=request_id, blocks=[entry])
                if rng.random() < 0.2:
                    reply = frames.mutated() if rng.random() < 0.5 else reply[: rng.randrange(len(reply))]
                if await send(reply):
                    tally.sync_answers += 1

    reader = asyncio.ensure_future(read())
    try:
        if rng.random() < 0.3:
            # A block session: announce a block that is wrong somehow; the node fetches it
            # (get_blocks), imports it, refuses it and bans this identity.
            index = rng.randrange(len(corpus.broken))
            announced[0] = index
            if await send(frames.hello(heavier=False)):
                await send(m.encode("new_block", hash=m.hx(corpus.broken_hashes[index]), number=corpus.head_number + 1,
                                    total_work=m.qty(corpus.head_work * 10)))
            wait = 5.0
        else:
            first = frames.hello(heavier=rng.random() < 0.5) if rng.random() < 0.9 else frames.next()
            if await send(first):
                for _ in range(rng.randrange(1, 10)):
                    if not budget() or not await send(frames.next()):
                        break
                    if rng.random() < 0.3:
                        await asyncio.sleep(0)
            wait = 0.3
        try:
            await asyncio.wait_for(asyncio.shield(reader), wait)
        except asyncio.TimeoutError:
            pass
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await ws.close()


async def honest_probe(port: int, corpus: Corpus) -> int:
    """An honest peer asks for the chain from genesis; the number of blocks it got."""
    frames = Frames(corpus, random.Random())
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"ws://127.0.0.1:{port}{WS_PATH}", max_msg_size=64 << 20) as ws:
            await ws.send_str(frames.hello(heavier=False))
            await ws.send_str(m.encode("get_chain", id=7, locator=[m.hx(corpus.genesis)], max=16))
            while True:
                msg = await ws.receive(timeout=20)
                assert msg.type == WSMsgType.TEXT, msg
                decoded = m.decode(msg.data, 64 << 20)
                if decoded.type == "blocks" and decoded.body.get("id") == 7:
                    return len(m.parse_block_entries(decoded.body, max_len=16, max_block=1 << 24, max_payload=1 << 24))


class RpcWatch:
    """JSON-RPC ``eth_blockNumber`` every 200 ms on a thread: every call must answer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}).encode()
        while not self._stop.wait(0.2):
            started = time.monotonic()
            try:
                request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    answer = json.load(response)
                assert answer["result"].startswith("0x")
            except Exception as exc:  # noqa: BLE001
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.calls += 1
            self.slowest = max(self.slowest, time.monotonic() - started)

    def __enter__(self) -> "RpcWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def test_fuzz_ten_thousand_p2p_frames_at_a_real_node(target: Any) -> None:
    node, corpus = target
    assert node.p2p_port is not None
    tally = Tally()
    started = time.monotonic()

    async def run() -> list[int]:
        rngs = [random.Random(SEED + i) for i in range(WORKERS)]
        probes: list[int] = []

        async def worker(rng: random.Random) -> None:
            frames = Frames(corpus, rng)
            async with aiohttp.ClientSession() as http:
                while tally.frames < N_FRAMES and node.alive():
                    await fuzz_session(http, node.p2p_port, frames, corpus, tally, lambda: tally.frames < N_FRAMES)

        async def prober() -> None:
            while tally.frames < N_FRAMES and node.alive():
                probes.append(await honest_probe(node.p2p_port, corpus))
                await asyncio.sleep(1.0)

        await asyncio.gather(*(worker(rng) for rng in rngs), prober())
        return probes

    with RpcWatch(node.url) as watch:
        probes = asyncio.run(run())
    elapsed = time.monotonic() - started
    print(f"\np2p fuzz: {tally.frames} frames in {tally.sessions} sessions ({tally.refused} refused at the upgrade), "
          f"{tally.sync_answers} sync answers with wrong blocks, {tally.received} frames from the node, "
          f"{elapsed:.1f} s; RPC {watch.calls} calls, slowest {watch.slowest * 1000:.0f} ms; honest probes {probes}")
    print("close reasons:", sorted(tally.close_reasons.items(), key=lambda kv: -kv[1])[:12])
    assert node.alive(), node.log()
    assert tally.frames >= N_FRAMES
    assert not tally.problems, "\n".join(tally.problems[:10])
    assert watch.calls > 0 and not watch.failures, watch.failures[:5]
    assert probes and all(count >= corpus.head_number for count in probes), probes
    assert tally.sync_answers > 50  # the wrong-work blocks did reach block import
    assert any("invalid block" in reason for reason in tally.close_reasons), tally.close_reasons
    assert not node.grep(r"Traceback|reader failed|internal error"), "\n".join(node.grep(r"Traceback|reader failed|internal error")[:20])
    # Still a working node: it answers, and the honest chain is intact.
    assert int(node.rpc("eth_blockNumber"), 16) >= corpus.head_number
    assert asyncio.run(honest_probe(node.p2p_port, corpus)) >= corpus.head_number

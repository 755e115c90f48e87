"""Fuzz a real ``pouw-node run`` over JSON-RPC: at least 10,000 bodies over HTTP and
WebSocket (random and malformed JSON, deep nesting, huge numbers, truncations, batches,
random methods with random params: the generator of tests/rpc/test_fuzz.py). Every
answer must be well-formed JSON-RPC (no -32603 internal error), the process must not
crash, and a plain ``eth_blockNumber`` must keep answering throughout."""
from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp
import pytest

import safejson
from tests.p2p.node_process import NodeProcess
from tests.p2p.test_fuzz_frames import RpcWatch
from tests.rpc.test_fuzz import check_response, random_body

N_BODIES = 10_000
WORKERS = 8
MAX_BODY = 5 * 1024 * 1024  # rpc.config.RpcConfig.max_body_bytes

pytestmark = pytest.mark.slow


def expects_no_answer(body: bytes) -> bool:
    """Only notifications: the node owes no answer. (Depth-bounded: this process has
    py_ecc's raised recursion limit too, and a deep body would crash json.loads here.)"""
    try:
        payload = safejson.loads(body, max_depth=64)
    except (ValueError, RecursionError):
        return False
    items = payload if isinstance(payload, list) and payload else [payload]
    return all(isinstance(item, dict) and "id" not in item for item in items)


def check_answer(body: bytes, status: int, text: str) -> list[str]:
    if status == 413 and len(body) > MAX_BODY:
        return check_response(json.loads(text))
    if status != 200:
        return [f"status {status} for {body[:120]!r}"]
    if not text:
        return [] if expects_no_answer(body) else [f"no answer for {body[:120]!r}"]
    try:
        answer = json.loads(text)
    except ValueError:
        return [f"answer is not JSON: {text[:200]!r}"]
    return [f"{p} <- {body[:120]!r}" for item in (answer if isinstance(answer, list) else [answer])
            for p in check_response(item)]


def test_fuzz_ten_thousand_rpc_bodies_at_a_real_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", "--no-p2p")
    problems: list[str] = []
    counts = {"http": 0, "ws": 0}
    started = time.monotonic()

    async def worker(index: int) -> None:
        rng = random.Random(20261203 + index)
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(node.url, max_msg_size=64 << 20)
            i = index
            while counts["http"] + counts["ws"] < N_BODIES and node.alive():
                body = random_body(rng, i)
                i += WORKERS
                if rng.random() < 0.1 and len(body) < MAX_BODY and not expects_no_answer(body):
                    try:
                        text = body.decode("utf-8")
                    except UnicodeDecodeError:
                        continue  # a WebSocket text frame must be UTF-8: the client refuses it
                    await ws.send_str(text)
                    msg = await ws.receive(timeout=60)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        problems.append(f"websocket closed ({msg.type}) after {body[:120]!r}")
                        ws = await http.ws_connect(node.url, max_msg_size=64 << 20)
                        continue
                    problems.extend(check_answer(body, 200, msg.data))
                    counts["ws"] += 1
                    continue
                async with http.post(node.url, data=body, headers={"Content-Type": "application/json"}) as response:
                    problems.extend(check_answer(body, response.status, await response.text()))
                counts["http"] += 1
            await ws.close()

    async def run() -> None:
        await asyncio.gather(*(worker(i) for i in range(WORKERS)))

    try:
        with RpcWatch(node.url) as watch:
            asyncio.run(run())
        elapsed = time.monotonic() - started
        print(f"\nRPC fuzz: {counts['http']} bodies over HTTP, {counts['ws']} over WebSocket in {elapsed:.1f} s; "
              f"eth_blockNumber {watch.calls} calls, slowest {watch.slowest * 1000:.0f} ms")
        assert node.alive(), node.log()
        assert counts["http"] + counts["ws"] >= N_BODIES
        assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} problems)"
        assert watch.calls > 0 and not watch.failures, watch.failures[:5]
        assert not node.grep(r"Traceback"), "\n".join(node.grep(r"Traceback")[:10])
        assert node.rpc("eth_chainId") == "0x539"
    finally:
        assert node.stop() == 0, node.log()

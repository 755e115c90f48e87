"""Fuzz: random and malformed bodies all get a well-formed JSON-RPC answer, and the
server keeps serving. Internal errors (-32603) count as failures: every bad input
must be refused with a specific code."""
from __future__ import annotations

import json
import random
from typing import Any

import pytest

from rpc.server import CONFIG, build_registry
from tests.rpc.conftest import ACCOUNT, Rpc

pytestmark = pytest.mark.asyncio

METHODS = sorted(build_registry().methods)
N_BODIES = 1200


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(12 if depth < 4 else 8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**64, 2**256, -(2**255), 10**80, rng.randrange(-10**6, 10**6)])
    if kind == 3:
        return rng.choice([0.5, -1e300, 1e308, 3.0])
    if kind == 4:
        return rng.choice(["latest", "pending", "earliest", "safe", "finalized", "0x", "0x0", "0x00", "0x1", "0xzz",
                           "0x" + "f" * 65, "0x" + "1" * 64, "0x" + "ab" * 20, ACCOUNT.address, "", "ünïcødé", "\ud800",
                           "0x" + "0" * 10000, "\x00", "newHeads", "logs"])
    if kind == 5:
        return "0x" + "".join(rng.choice("0123456789abcdefABCDEFg") for _ in range(rng.randrange(0, 70)))
    if kind == 6:
        return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 20)))
    if kind == 7:
        return rng.choice(["0x" + "ab" * 32, "0x" + "00" * 32])
    if kind in (8, 9):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
    keys = ["from", "to", "gas", "gasPrice", "value", "data", "input", "address", "topics", "fromBlock", "toBlock",
            "blockHash", "blockNumber", "requireCanonical", "nonce", "accessList", "maxFeePerGas", "state", "stateDiff",
            "balance", "code", rng.choice(["x", "ü", ""])]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(0, 5))}


def random_request(rng: random.Random) -> Any:
    request: dict[str, Any] = {"jsonrpc": "2.0"}
    if rng.random() < 0.9:
        request["id"] = rng.choice([rng.randrange(10**6), "id-ü", None, 2**70, 1.5, [1], {"a": 1}, True])
    if rng.random() < 0.05:
        request["jsonrpc"] = rng.choice(["1.0", 2, None])
    request["method"] = rng.choice(METHODS) if rng.random() < 0.85 else random_json(rng)
    if rng.random() < 0.9:
        request["params"] = [random_json(rng) for _ in range(rng.randrange(0, 5))] if rng.random() < 0.85 else random_json(rng)
    return request


def random_body(rng: random.Random, i: int) -> bytes:
    choice = i % 10
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
    if choice == 1:
        n = rng.choice([10, 100, 1000, 10_000, 100_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}"), ('{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[', "]}")])
        return (opener * n + "1" + closer * n).encode()
    if choice == 2:
        return rng.choice([
            b'{"jsonrpc":"2.0","id":1e400,"method":"eth_chainId"}',
            b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"eth_chainId"}',
            b'{"jsonrpc":"2.0","id":NaN,"method":"eth_chainId"}',
            b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance","params":["0x' + b"f" * 40 + b'",' + b"9" * 4000 + b"]}",
            b'{"jsonrpc":"2.0","id":-0,"method":"eth_blockNumber","params":[]}',
        ])
    if choice == 3:
        batch = [random_request(rng) for _ in range(rng.choice([1, 2, 50, 100, 101, 500]))]
        return json.dumps(batch).encode()
    if choice == 4:
        text = json.dumps(random_request(rng), ensure_ascii=False)
        cut = rng.randrange(len(text) + 1)
        return text[:cut].encode("utf-8", errors="surrogatepass")
    if choice == 5:
        return json.dumps(random_json(rng)).encode()
    return json.dumps(random_request(rng), ensure_ascii=rng.random() < 0.5).encode("utf-8", errors="surrogatepass")


def check_response(response: Any) -> list[str]:
    """Problems with one response object (empty if fine)."""
    problems = []
    if not isinstance(response, dict) or response.get("jsonrpc") != "2.0" or "id" not in response:
        return [f"malformed response {response!r:.200}"]
    if ("result" in response) == ("error" in response):
        return [f"need exactly one of result/error: {response!r:.200}"]
    if "error" in response:
        error = response["error"]
        if not isinstance(error.get("code"), int) or not isinstance(error.get("message"), str):
            problems.append(f"bad error object {error!r:.200}")
        elif error["code"] == -32603:
            problems.append(f"internal error: {response!r:.300}")
    return problems


def expects_no_answer(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return False
    items = payload if isinstance(payload, list) and payload else [payload]
    return all(isinstance(item, dict) and "id" not in item for item in items)


async def test_fuzz_bodies(rpc: Rpc) -> None:
    rng = random.Random(20261122)
    problems: list[str] = []
    for i in range(N_BODIES):
        body = random_body(rng, i)
        response = await rpc.client.post("/", data=body, headers={"Content-Type": "application/json"})
        text = await response.text()
        if response.status == 413 and len(body) > rpc.client.app[CONFIG].max_body_bytes:
            too_large = json.loads(text)
            problems.extend(check_response(too_large))
            continue
        if response.status != 200:
            problems.append(f"status {response.status} for {body[:120]!r}")
            continue
        if not text:
            if not expects_no_answer(body):
                problems.append(f"no answer for {body[:120]!r}")
            continue
        try:
            answer = json.loads(text)
        except ValueError:
            problems.append(f"answer is not JSON: {text[:200]!r}")
            continue
        for item in answer if isinstance(answer, list) else [answer]:
            problems.extend(f"{p} <- {body[:120]!r}" for p in check_response(item))
    assert not problems, "\n".join(problems[:20]) + f"\n({len(problems)} problems)"
    assert (await rpc.result("eth_blockNumber")) == "0x0"

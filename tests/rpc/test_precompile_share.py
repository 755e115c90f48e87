"""Simulated calls to the precompiles that hold the GIL for their whole run (modexp,
BLAKE2 F) take at most a share of the node's time (rpc/evm_deadline.py): one at a time,
and past the share a heavy one is refused at once with -32000, so that clients calling
them in a loop cannot freeze the node (measured before: eight such clients raised
eth_blockNumber's p50 from 1.2 ms to 837 ms)."""
from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any, Iterator

import aiohttp
import pytest

import rpc.evm_deadline as evm_deadline
from rpc.backend import CallRequest, ChainBackend
from rpc.evm_deadline import GIL_PRECOMPILE_FREE_GAS, TimeShare, PrecompileBusy
from tests.rpc.test_inline_calls import MODEXP, modexp_input

#: 1 KiB operands: about 44.7M gas, nearly a second of big-integer pow.
HEAVY = modexp_input(3, (1 << 8192) - 1, (1 << 8192) - 159, 1024)
LIGHT = modexp_input(3, 1000, 1_000_003, 32)
BUSY = "execution aborted (precompile work over the node's share of time; retry later)"


@pytest.fixture
def fresh_share(monkeypatch: pytest.MonkeyPatch) -> Iterator[TimeShare]:
    share = TimeShare(share=0.2, burst=1.0)
    monkeypatch.setattr(evm_deadline, "GIL_PRECOMPILE_SHARE", share)
    yield share


def run(backend: ChainBackend, data: bytes, gas: int = 50_000_000, sender: int = 1) -> Any:
    with backend.simulate(backend.head_header()) as sim:
        return sim.run(CallRequest(to=MODEXP, data=data, sender=sender.to_bytes(20, "big")), gas)


def test_heavy_runs_past_the_share_are_refused_and_light_ones_never(backend: ChainBackend, fresh_share: TimeShare) -> None:
    first = run(backend, HEAVY)
    assert first.success and int.from_bytes(first.output[-32:], "big") == pow(3, (1 << 8192) - 1, (1 << 8192) - 159) % (1 << 256)
    while fresh_share.allows(time.monotonic(), 0.0):  # the burst spent (a second run or two)
        run(backend, HEAVY, sender=2)
    started = time.monotonic()
    with pytest.raises(PrecompileBusy):
        run(backend, HEAVY, sender=3)
    assert time.monotonic() - started < 0.05  # refused before it runs
    light = run(backend, LIGHT, gas=GIL_PRECOMPILE_FREE_GAS)  # bounded work: always served
    assert light.success and int.from_bytes(light.output, "big") == pow(3, 1000, 1_000_003)


def test_one_heavy_run_at_a_time(backend: ChainBackend, fresh_share: TimeShare) -> None:
    """While one runs (here: its slot held, as a run in another thread holds it), a
    second heavy call is refused at once instead of queueing a second GIL-long run."""
    running = evm_deadline._GIL_PRECOMPILE_RUNNING
    assert running.acquire(blocking=False)
    try:
        with pytest.raises(PrecompileBusy):
            run(backend, HEAVY)
        assert run(backend, LIGHT, gas=GIL_PRECOMPILE_FREE_GAS).success
    finally:
        running.release()
    assert run(backend, HEAVY).success


@pytest.mark.slow
def test_clients_calling_heavy_modexp_in_a_loop_do_not_freeze_a_node() -> None:
    """Eight clients call modexp at the gas cap as fast as they are answered, against a
    real node; eth_blockNumber keeps answering at its usual pace (one heavy run at a
    time, a fifth of the time at most: a single run still holds the GIL ~0.9 s)."""
    from devnet.kit.genesis import dev_genesis_dict
    from devnet.kit.processes import start_pouw

    node = start_pouw("automine", dev_genesis_dict())
    try:
        latencies, answers = asyncio.run(_attack(node.url))
    finally:
        node.stop()
    assert answers["busy"] > 0 and answers["ok"] >= 1, answers
    assert statistics.median(latencies) < 0.1, sorted(latencies)


async def _attack(url: str) -> tuple[list[float], dict[str, int]]:
    answers = {"ok": 0, "busy": 0}
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        async def post(method: str, *params: Any) -> Any:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            async with session.post(url, json=body) as response:
                return await response.json()

        async def attacker(k: int) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                answer = await post("eth_call", {"to": "0x" + MODEXP.hex(), "data": "0x" + HEAVY.hex(),
                                                 "from": f"0x{k:020x}{n:020x}"}, "latest")
                if "result" in answer:
                    answers["ok"] += 1
                else:
                    assert answer["error"] == {"code": -32000, "message": BUSY}, answer
                    answers["busy"] += 1
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(attacker(k)) for k in range(8)]
        await asyncio.sleep(1.0)
        latencies = []
        for _ in range(40):
            started = time.perf_counter()
            assert "result" in await post("eth_blockNumber")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    return latencies, answers

"""eth_call answers kept by block hash (rpc/call_cache.py): what is kept, what never is,
identical calls in flight run once, and the byte bound."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Iterator

import pytest

from rpc.automine import Automine
from rpc.backend import ChainBackend
from rpc.call_cache import ENTRY_OVERHEAD, MAX_ENTRY_BYTES, CallCache, CallOutcome
from rpc.config import RpcConfig
from rpc.server import SERVICES, create_app
from tests.rpc.conftest import ACCOUNT, Rpc
from tests.rpc.contract import encode_uint
from tests.rpc.helpers import hexed, signed
from tests.rpc.test_server import deploy, mined_receipt

pytestmark = pytest.mark.asyncio

#: Init code returning the runtime JUMPDEST PUSH1 0 JUMP (a loop that runs out of gas).
LOOP_INIT = bytes.fromhex("635b600056" "6000" "52" "6004" "601c" "f3")


class CountingBackend(ChainBackend):
    """Counts the simulations that ran to their end (a call tried on the event loop and
    moved to a thread is not counted twice); ``gate`` (when set) holds each until
    released, as long work would, checking its limits like gas charges do."""

    def __init__(self, chain: Any) -> None:
        super().__init__(chain)
        self.simulations = 0
        self.gate: threading.Event | None = None

    @contextlib.contextmanager
    def simulate(self, header: Any, overrides: Any = None) -> Iterator[Any]:
        from rpc.evm_deadline import check_deadline

        while self.gate is not None and not self.gate.wait(0.001):
            check_deadline()
        with super().simulate(header, overrides) as sim:
            yield sim
        self.simulations += 1


@pytest.fixture
def counting(backend: ChainBackend) -> CountingBackend:
    return CountingBackend(backend.chain)


async def serve(aiohttp_client: Any, backend: ChainBackend, **config: Any) -> tuple[Rpc, CallCache]:
    client = await aiohttp_client(create_app(backend, RpcConfig(**config)))
    cache = client.app[SERVICES].call_cache
    assert cache is not None
    return Rpc(client), cache


async def test_a_repeated_call_is_answered_once_per_block(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting)
        address = await deploy(rpc)
        before = counting.simulations
        for _ in range(5):
            assert await rpc.result("eth_call", {"to": address}, "latest") == "0x" + "00" * 32
        assert counting.simulations == before + 1 and cache.hits == 4
        # the same call named by the head's hash is the same entry
        head = await rpc.result("eth_getBlockByNumber", "latest", False)
        assert await rpc.result("eth_call", {"to": address}, {"blockHash": head["hash"]}) == "0x" + "00" * 32
        assert counting.simulations == before + 1
        # a new block: the call runs again and sees the new state
        tx = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0,
                                                                       data=encode_uint(7), gas=100_000)))
        await mined_receipt(rpc, tx)
        assert await rpc.result("eth_call", {"to": address}, "latest") == "0x" + encode_uint(7).hex()
        assert counting.simulations == before + 2
        # the old block's answer is still the old one
        assert await rpc.result("eth_call", {"to": address}, {"blockHash": head["hash"]}) == "0x" + "00" * 32
        assert counting.simulations == before + 2


async def test_reverts_and_errors_are_given_again_exactly(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting)
        address = await deploy(rpc)
        revert = {"from": ACCOUNT.address, "to": address, "data": "0x" + encode_uint(0).hex()}
        poor = {"from": "0x" + "77" * 20, "to": address, "value": "0x1"}
        first = [await rpc.error("eth_call", revert), await rpc.error("eth_call", poor)]
        runs = counting.simulations
        again = [await rpc.error("eth_call", revert), await rpc.error("eth_call", poor)]
        assert again == first and counting.simulations == runs
        assert first[0]["code"] == 3 and first[0]["data"].startswith("0x08c379a0")
        assert first[1]["code"] == -32000 and "insufficient funds" in first[1]["message"]


async def test_overrides_numbers_and_canonical_hashes_always_run(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting)
        address = await deploy(rpc)
        head = await rpc.result("eth_getBlockByNumber", "latest", False)
        override = {address: {"stateDiff": {"0x0": "0x" + encode_uint(9).hex()}}}
        kept = len(cache)
        for block, overrides in [("latest", override), (head["number"], None), ("earliest", None),
                                 ({"blockHash": head["hash"], "requireCanonical": True}, None)]:
            runs = counting.simulations
            params: list[Any] = [{"to": address}, block] + ([overrides] if overrides else [])
            first = await rpc.result("eth_call", *params)
            assert await rpc.result("eth_call", *params) == first
            assert counting.simulations == runs + 2
        assert len(cache) == kept
        assert await rpc.result("eth_call", {"to": address}, "latest", override) == "0x" + encode_uint(9).hex()


async def test_identical_calls_in_flight_run_once(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting)
        address = await deploy(rpc)
    counting.gate = threading.Event()
    runs = counting.simulations
    calls = [asyncio.create_task(rpc.call("eth_call", {"to": address, "from": "0x" + "01" * 20})) for _ in range(8)]
    await asyncio.sleep(0.3)
    assert counting.simulations == runs and cache.shared == 7  # one is running, seven wait for it
    counting.gate.set()
    answers = await asyncio.gather(*calls)
    assert {a["result"] for a in answers} == {"0x" + "00" * 32}
    assert counting.simulations == runs + 1 and cache.shared == 7


async def test_a_call_stopped_by_the_time_limit_is_not_kept(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting, evm_timeout_s=0.3)
        tx = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 0, to=None, value=0, data=LOOP_INIT,
                                                                       gas=100_000)))
        loop = (await mined_receipt(rpc, tx))["contractAddress"]
    kept = len(cache)
    for _ in range(2):
        error = await rpc.error("eth_call", {"to": loop})
        assert error == {"code": -32000, "message": "execution aborted (timeout = 0.3s)"}
    assert len(cache) == kept
    # with gas for a few iterations only it runs out of gas: a finished call, kept
    out_of_gas = {"to": loop, "gas": hex(30_000)}
    first = await rpc.error("eth_call", out_of_gas)
    runs = counting.simulations
    assert await rpc.error("eth_call", out_of_gas) == first and counting.simulations == runs


async def test_cache_off(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        rpc, cache = await serve(aiohttp_client, counting, call_cache_bytes=0)
        address = await deploy(rpc)
    runs = counting.simulations
    for _ in range(3):
        assert await rpc.result("eth_call", {"to": address}) == "0x" + "00" * 32
    assert counting.simulations == runs + 3 and len(cache) == 0


# -- the cache alone --------------------------------------------------------------------

async def test_bounded_in_bytes_least_recently_used_out() -> None:
    cache = CallCache(max_bytes=10 * (ENTRY_OVERHEAD + 100))
    for i in range(10):
        cache.put(("block", i), CallOutcome(output="x" * 100), 0)
    assert len(cache) == 10 and cache.bytes <= cache.max_bytes
    assert cache.get(("block", 0)) is not None  # now the most recent
    cache.put(("block", 10), CallOutcome(output="y" * 100), 0)
    assert cache.get(("block", 1)) is None and cache.get(("block", 0)) is not None
    assert cache.bytes <= cache.max_bytes
    cache.put(("big", 0), CallOutcome(output="z" * (MAX_ENTRY_BYTES + 1)), 0)  # answered, not kept
    assert cache.get(("big", 0)) is None


async def test_large_call_data_is_never_kept() -> None:
    cache = CallCache(max_bytes=1 << 20)
    ran = 0

    async def compute() -> CallOutcome:
        nonlocal ran
        ran += 1
        return CallOutcome(output="0x")

    for _ in range(2):
        await cache.run(("b", "big"), MAX_ENTRY_BYTES + 1, compute)
    assert ran == 2 and len(cache) == 0


async def test_a_waiter_that_leaves_does_not_cancel_the_run_for_others() -> None:
    cache = CallCache(max_bytes=1 << 20)
    release = asyncio.Event()

    async def compute() -> CallOutcome:
        await release.wait()
        return CallOutcome(output="0x01")

    first = asyncio.create_task(cache.run("k", 0, compute))
    second = asyncio.create_task(cache.run("k", 0, compute))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert (await second).output == "0x01"
    assert cache.get("k") == CallOutcome(output="0x01")


async def test_a_failed_run_is_raised_to_every_waiter_and_not_kept() -> None:
    cache = CallCache(max_bytes=1 << 20)
    release = asyncio.Event()

    async def compute() -> CallOutcome:
        await release.wait()
        raise RuntimeError("node failure")

    waiters = [asyncio.create_task(cache.run("k", 0, compute)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert cache.get("k") is None


async def test_metrics_report_hits_misses_and_size(aiohttp_client: Any, counting: CountingBackend) -> None:
    with Automine(counting):
        client = await aiohttp_client(create_app(counting, RpcConfig()))
        rpc = Rpc(client)
        address = await deploy(rpc)
    for _ in range(3):
        await rpc.result("eth_call", {"to": address})
    text = await (await client.get("/metrics")).text()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("pouw_rpc_call_cache"))
    assert float(lines['pouw_rpc_call_cache_requests_total{result="miss"}']) == 1
    assert float(lines['pouw_rpc_call_cache_requests_total{result="hit"}']) == 2
    assert float(lines["pouw_rpc_call_cache_entries"]) == 1 and float(lines["pouw_rpc_call_cache_bytes"]) > 0

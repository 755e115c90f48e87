"""Fixtures for the RPC tests: a no-proof test chain, its backend, automine, app and servers."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_asyncio
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth_account import Account

from chain.chain import Chain
from chain.sealing import NoProofEngine
from chain.txpool import TxPool
from genesis.format import load_genesis
from rpc.automine import Automine
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.server import create_app, running_server

CHAIN_ID = 1337
#: anvil's / hardhat's first two test keys (public; never use with value).
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KEY2 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
ACCOUNT = Account.from_key(KEY)
ACCOUNT2 = Account.from_key(KEY2)
POOR = Account.from_key("0x" + "42" * 32)
FUNDS = 10**24

TEST_GENESIS: dict[str, Any] = {
    "chainId": CHAIN_ID,
    "timestamp": "0x6955b900",
    "extraData": "0x",
    "gasLimit": 30_000_000,
    "baseFeePerGas": 1_000_000_000,
    "maxBlockBytes": 2_097_152,
    "maxTransactionBytes": 131_072,
    "consensus": {
        "sealEngine": "noproof",
        "targetBlockTime": 5,
        "initialDifficulty": 1_000_000,
        "minimumDifficulty": 1_000,
        "maxAdjustUpPercent": 25,
        "maxAdjustDownPercent": 20,
        "blockReward": [{"fromBlock": 0, "reward": "0x0"}],
        "coinbaseMaturity": 0,
    },
    "pouw": {
        "challengeCount": 8,
        "maxStateBytes": 2_097_152,
        "maxDatasetBytes": 67_108_864,
        "maxWorkUnitsPerStep": 1_000_000_000,
        "standingJobs": [],
    },
    "alloc": {
        ACCOUNT.address: {"balance": hex(FUNDS)},
        ACCOUNT2.address: {"balance": hex(FUNDS)},
    },
}


def _far_future_clock() -> float:
    # Automine stamps each block parent + 1 s; a clock far ahead keeps them "not in the future".
    return 4_000_000_000.0


def make_backend() -> ChainBackend:
    chain = Chain.open(
        AtomicDB(MemoryDB()), load_genesis(TEST_GENESIS), seal_engine=NoProofEngine, clock=_far_future_clock
    )
    chain.txpool = TxPool(CHAIN_ID, chain.state_view())
    return ChainBackend(chain)


@pytest.fixture
def backend() -> ChainBackend:
    return make_backend()


@pytest.fixture
def automine(backend: ChainBackend) -> Iterator[Automine]:
    with Automine(backend) as miner:
        yield miner


@pytest.fixture
def config() -> RpcConfig:
    return RpcConfig(port=0, max_batch=100, max_log_range=1000, max_filters=50, max_subscriptions_per_conn=8)


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, backend: ChainBackend, config: RpcConfig) -> Any:
    return await aiohttp_client(create_app(backend, config))


class Rpc:
    """Posts JSON-RPC requests through the aiohttp test client."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.next_id = 0

    async def raw(self, payload: Any) -> Any:
        import json

        response = await self.client.post("/", data=json.dumps(payload), headers={"Content-Type": "application/json"})
        text = await response.text()
        import json

        return json.loads(text) if text else None

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        self.next_id += 1
        return await self.raw({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)})

    async def result(self, method: str, *params: Any) -> Any:
        from tests.rpc.schema_check import check_result

        answer = await self.call(method, *params)
        assert "error" not in answer, answer
        check_result(method, answer["result"])
        return answer["result"]

    async def error(self, method: str, *params: Any) -> dict[str, Any]:
        answer = await self.call(method, *params)
        assert "error" in answer, answer
        return answer["error"]


@pytest_asyncio.fixture
async def rpc(client: Any) -> Rpc:
    return Rpc(client)


@pytest.fixture
def live_url(backend: ChainBackend) -> Iterator[str]:
    """A real listening server in a background thread (for web3.py's sync HTTPProvider)."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        state["loop"] = loop

        async def main() -> None:
            stop = asyncio.Event()
            state["stop"] = stop
            async with running_server(backend, RpcConfig(port=0)) as url:
                state["url"] = url
                ready.set()
                await stop.wait()

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "server did not start"
    yield state["url"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


@pytest_asyncio.fixture
async def live_server(backend: ChainBackend) -> AsyncIterator[str]:
    """A real listening server on the test's own event loop (for AsyncWeb3)."""
    async with running_server(backend, RpcConfig(port=0)) as url:
        yield url


@pytest.fixture
def cli_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """For tests that call node.cli.main in-process: it installs a SIGTERM handler and
    its log handler, and reads keys from the environment; undo all three."""
    import logging
    import signal

    monkeypatch.delenv("POUW_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("POUW_KEYSTORE", raising=False)
    handler = signal.getsignal(signal.SIGTERM)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    signal.signal(signal.SIGTERM, handler)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.disable(logging.NOTSET)

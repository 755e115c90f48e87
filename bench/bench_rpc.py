"""Benchmark of the JSON-RPC server against anvil, measured in the same run.

    python bench/bench_rpc.py [--quick] [--modes automine,interval] [--profile FILE]

Both nodes are real processes on loopback (devnet/kit/processes.py): ``pouw-node run`` on
genesis/dev.json (``--automine``, or ``--dev-period 1`` for 1 s blocks, with
``--txpool-account-slots 1024`` so that one sender may queue as many transfers as anvil
takes) and, if ``anvil`` is on PATH or in node_modules (``npm install
@foundry-rs/anvil-linux-amd64``), anvil (automine, or ``--block-time 1``). Both fund the
same five keys of the public test mnemonic. Workloads, per mode:

* ``eth_blockNumber`` latency over one keep-alive connection: p50 and p99;
* ``eth_call`` latency (a storage read of a tiny contract), one client: p50 and p99;
  and its throughput with 16 concurrent clients (req/s). First the same call again and
  again (a view that many clients poll between two blocks: our node answers repeats
  from its eth_call cache, rpc/call_cache.py), then calls that each differ (a new
  ``from`` each time: every call runs the EVM, on both nodes);
* ``eth_getBalance`` throughput with 16 concurrent clients, each reading other accounts;
* transfers end to end: N signed transfers from 5 senders sent at once (each sender
  its own client), timed until the last receipt is there (tx/s); and the same from
  one sender. Each transfer workload runs on a fresh node and takes its best of three
  runs (anvil's automine slows as its chain grows); with 1 s blocks N is three times
  larger (a run's time is otherwise mostly where in the block period it began).

Ratios are ours / anvil: for latency > 1 means we are slower, for throughput < 1.
``--profile FILE`` runs our node under cProfile (automine, the read workloads) and writes
its stats there.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
from eth_account import Account
from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devnet.kit.accounts import DEV_KEYS_HEX  # noqa: E402
from devnet.kit.contract import INIT as CONTRACT_INIT  # noqa: E402
from devnet.kit.genesis import dev_genesis_dict  # noqa: E402
from devnet.errors import UnknownBlockMode  # noqa: E402
from devnet.kit.processes import DevNode, block_mode, find_anvil, start_anvil, start_pouw  # noqa: E402

#: The dev keys: funded by genesis/dev.json and by anvil. CONTRACT_INIT (the kit's
#: storage contract): empty calldata returns storage slot 0.
KEYS = list(DEV_KEYS_HEX)


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.next_id = 0

    async def call(self, method: str, *params: Any) -> Any:
        self.next_id += 1
        payload = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}
        async with self.session.post(self.url, json=payload) as r:
            answer = await r.json(content_type=None)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def receipt(self, tx_hash: str, timeout: float = 120) -> Any:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            receipt = await self.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            await asyncio.sleep(0.01)
        raise RuntimeError("no receipt")


def sign(key: str, chain_id: int, nonce: int, base_fee: int, **fields: Any) -> str:
    tx = {"nonce": nonce, "chainId": chain_id, "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 4 * base_fee + 10**9,
          "gas": 21_000, "value": 1, "to": "0x" + "00" * 19 + "aa", **fields}
    if tx["to"] is None:
        del tx["to"]
    else:
        tx["to"] = to_checksum_address(tx["to"])
    return "0x" + bytes(Account.sign_transaction(tx, key).raw_transaction).hex()


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return 1000 * statistics.median(samples), 1000 * samples[max(0, int(len(samples) * 0.99) - 1)]


async def transfers(session: aiohttp.ClientSession, url: str, keys: list[str], count: int) -> float:
    """``count`` transfers spread over ``keys``, each sender on its own client, sent as
    fast as each client can; tx/s until the last receipt."""
    probe = Client(session, url)
    chain_id = int(await probe.call("eth_chainId"), 16)
    base_fee = int((await probe.call("eth_getBlockByNumber", "latest", False))["baseFeePerGas"], 16)
    per_sender = count // len(keys)
    signed: list[list[str]] = []
    for key in keys:
        nonce = int(await probe.call("eth_getTransactionCount", Account.from_key(key).address, "pending"), 16)
        signed.append([sign(key, chain_id, nonce + i, base_fee) for i in range(per_sender)])

    async def sender(raws: list[str]) -> list[str]:
        client = Client(session, url)
        return [await client.call("eth_sendRawTransaction", raw) for raw in raws]

    started = time.perf_counter()
    hashes = await asyncio.gather(*(sender(raws) for raws in signed))
    await asyncio.gather(*(probe.receipt(h[-1]) for h in hashes))
    elapsed = time.perf_counter() - started
    for tx_hash in (h[0] for h in hashes):
        assert (await probe.receipt(tx_hash))["status"] == "0x1"
    return per_sender * len(keys) / elapsed


async def measure(url: str, quick: bool, mode: str) -> dict[str, float]:
    latency_n = 300 if quick else 2000
    call_n = 320 if quick else 3200
    results: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        client = Client(session, url)
        chain_id = int(await client.call("eth_chainId"), 16)
        base_fee = int((await client.call("eth_getBlockByNumber", "latest", False))["baseFeePerGas"], 16)

        for _ in range(50):
            await client.call("eth_blockNumber")
        samples = []
        for _ in range(latency_n):
            t = time.perf_counter()
            await client.call("eth_blockNumber")
            samples.append(time.perf_counter() - t)
        results["blockNumber p50 (ms)"], results["blockNumber p99 (ms)"] = percentiles(samples)

        deployer = KEYS[0]
        nonce = int(await client.call("eth_getTransactionCount", Account.from_key(deployer).address, "pending"), 16)
        deploy = sign(deployer, chain_id, nonce, base_fee, to=None, value=0, data=CONTRACT_INIT, gas=300_000)
        contract = (await client.receipt(await client.call("eth_sendRawTransaction", deploy)))["contractAddress"]

        # The same call over and over (a view polled by many clients between blocks:
        # our node answers it from its eth_call cache), then calls that differ each time
        # (a new sender each: every one runs the EVM).
        fresh = iter(range(1, 10**9))

        def same() -> dict[str, str]:
            return {"to": contract}

        def new() -> dict[str, str]:
            return {"to": contract, "from": f"0x{next(fresh):040x}"}

        for label, call in (("", same), (", each call new", new)):
            for _ in range(50):
                await client.call("eth_call", call(), "latest")
            samples = []
            for _ in range(latency_n):
                t = time.perf_counter()
                await client.call("eth_call", call(), "latest")
                samples.append(time.perf_counter() - t)
            results[f"eth_call{label} p50 (ms)"], results[f"eth_call{label} p99 (ms)"] = percentiles(samples)

            async def caller(count: int) -> None:
                worker = Client(session, url)
                for _ in range(count):
                    await worker.call("eth_call", call(), "latest")

            t = time.perf_counter()
            await asyncio.gather(*(caller(call_n // 16) for _ in range(16)))
            results[f"eth_call{label} 16 clients (req/s)"] = (call_n // 16) * 16 / (time.perf_counter() - t)

        async def balances(count: int, start: int) -> None:
            worker = Client(session, url)
            for i in range(count):
                await worker.call("eth_getBalance", f"0x{start + i:040x}", "latest")

        t = time.perf_counter()
        await asyncio.gather(*(balances(call_n // 16, k * call_n) for k in range(16)))
        results["eth_getBalance 16 clients (req/s)"] = (call_n // 16) * 16 / (time.perf_counter() - t)

    return results


async def measure_transfers(url: str, quick: bool, mode: str, keys: list[str]) -> float:
    """Transfers from ``keys``: the best of three runs (one when quick). With 1 s blocks
    a run's time is mostly where in the block period it began: three times the
    transfers then (several blocks' worth)."""
    count = (100 if quick else 500) * (3 if mode == "interval" else 1) // (1 if len(keys) > 1 else 2)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        return max([await transfers(session, url, keys, count) for _ in range(1 if quick else 3)])


#: The transfer workloads; each runs on a node of its own (see run_node).
TRANSFERS = (("transfers, 5 senders (tx/s)", KEYS), ("transfers, 1 sender (tx/s)", KEYS[1:2]))


def run_node(start: Callable[[], DevNode], mode: str, quick: bool) -> dict[str, float]:
    """The read workloads on one node, then each transfer workload on a fresh node, so
    that no node is measured after the others filled its chain: anvil's automine slows
    as its chain grows (here 2,606, 872, 688, 529 tx/s over four 500-transfer runs in a
    row on one anvil; ours stayed within 810-960)."""
    node = start()
    try:
        results = asyncio.run(measure(node.url, quick, mode))
    finally:
        node.stop()
    for label, keys in TRANSFERS:
        node = start()
        try:
            results[label] = asyncio.run(measure_transfers(node.url, quick, mode, keys))
        finally:
            node.stop()
    return results


def run_ours(mode: str, quick: bool, profile: Path | None) -> dict[str, float]:
    """Our node (``profile``: under cProfile, its stats written there when it stops)."""
    profiles = iter([profile])  # the first node, the one of the read workloads
    return run_node(lambda: start_pouw(mode, dev_genesis_dict(), args=("--txpool-account-slots", "1024"),
                                       profile=next(profiles, None)), mode, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--modes", default="automine,interval", help="automine and/or interval (1 s blocks)")
    parser.add_argument("--profile", type=Path, help="run our node (automine) under cProfile, stats to FILE")
    args = parser.parse_args()
    try:
        modes = [block_mode(mode) for mode in args.modes.split(",")]
    except UnknownBlockMode as e:
        parser.error(f"--modes: {e}")
    anvil = find_anvil()
    if anvil is None:
        print("anvil not available (npm install @foundry-rs/anvil-linux-amd64): our node only, no ratios")
    for mode in modes:
        ours = run_ours(mode, args.quick, args.profile if mode == "automine" else None)
        theirs: dict[str, float] | None = None
        if anvil is not None:
            theirs = run_node(lambda: start_anvil(anvil, mode), mode, args.quick)
        width = max(len(k) for k in ours)
        print(f"\n== {mode} ({'a block per transaction batch' if mode == 'automine' else '1 s blocks'})")
        header = f"{'metric':<{width}}  {'ours':>10}"
        if theirs is not None:
            header += f"  {'anvil':>10}  {'ours/anvil':>10}"
        print(header)
        for name, value in ours.items():
            line = f"{name:<{width}}  {value:>10.3f}"
            if theirs is not None:
                line += f"  {theirs[name]:>10.3f}  {value / theirs[name]:>10.2f}"
            print(line)


if __name__ == "__main__":
    main()

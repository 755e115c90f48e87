"""Benchmark of the JSON-RPC server against anvil, measured in the same run.

    python bench/bench_rpc.py [--quick]

Against our node (in-memory dev chain from genesis/default.json with the no-proof seal
engine, automine on) and, if an ``anvil`` binary is on PATH or in node_modules/.bin, against
anvil (automine, default accounts: the same test keys as our devnet genesis):

* eth_blockNumber latency over one keep-alive HTTP connection: p50 and p99;
* eth_call throughput (a storage read of a tiny contract), 16 concurrent clients;
* eth_sendRawTransaction -> receipt throughput: N signed transfers sent at once, timed
  until the last receipt is there.

Ratios are ours / anvil (for latency, > 1 means we are slower; for throughput, < 1).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: First key of the public test mnemonic: funded in genesis/default.json and by anvil.
KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
#: The tests' contract (tests/rpc/contract.py): empty calldata returns storage slot 0.
CONTRACT_INIT = bytes.fromhex(
    "6100868061000d6000396000f33615603b576000358015604757806000556000527fdf7a95aebff315db1b7716215d602ab537373cdb"
    "769232aae6055c06e798425b60206000a1005b60005460005260206000f35b6308c379a060e01b600052602060045260046024527f7a"
    "65726f0000000000000000000000000000000000000000000000000000000060445260646000fd"
)


# -- nodes -----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def start_our_node() -> tuple[str, Any]:
    """Our node in its own process (so the load generator does not share its GIL)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    wait_port(port)
    return f"http://127.0.0.1:{port}", process.terminate


def serve_our_node(port: int) -> None:
    """Run our RPC server with automine until killed (the child process of the benchmark)."""
    from eth.db.atomic import AtomicDB
    from eth.db.backends.memory import MemoryDB

    from chain.chain import Chain
    from chain.sealing import NoProofEngine
    from chain.txpool import TxPool
    from genesis.format import load_genesis
    from rpc import RpcConfig, serve
    from rpc.automine import Automine
    from rpc.backend import ChainBackend

    raw = json.loads((ROOT / "genesis" / "default.json").read_text())
    raw["consensus"]["sealEngine"] = "noproof"
    genesis = load_genesis(raw)
    chain = Chain.open(AtomicDB(MemoryDB()), genesis, seal_engine=NoProofEngine, clock=lambda: 4_000_000_000.0)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view())
    backend = ChainBackend(chain)
    Automine(backend, interval_s=0.002).start()
    asyncio.run(serve(backend, RpcConfig(port=port)))


def find_anvil() -> str | None:
    return shutil.which("anvil") or next(
        (str(p) for p in (ROOT / "node_modules" / ".bin" / "anvil",) if p.exists()), None
    )


def start_anvil(binary: str) -> tuple[str, Any]:
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--silent"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return f"http://127.0.0.1:{port}", process.terminate


# -- measurements ----------------------------------------------------------------

class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.next_id = 0

    async def call(self, method: str, *params: Any) -> Any:
        self.next_id += 1
        async with self.session.post(self.url, json={"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": list(params)}) as r:
            answer = await r.json(content_type=None)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def receipt(self, tx_hash: str, timeout: float = 60) -> Any:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            receipt = await self.call("eth_getTransactionReceipt", tx_hash)
            if receipt is not None:
                return receipt
            await asyncio.sleep(0.005)
        raise RuntimeError("no receipt")


def sign(chain_id: int, nonce: int, base_fee: int, **fields: Any) -> str:
    tx = {"nonce": nonce, "chainId": chain_id, "maxPriorityFeePerGas": 10**9, "maxFeePerGas": 4 * base_fee + 10**9,
          "gas": 21_000, "value": 1, "to": "0x" + "00" * 19 + "aa", **fields}
    if tx["to"] is None:
        del tx["to"]
    else:
        tx["to"] = to_checksum_address(tx["to"])
    return "0x" + bytes(Account.sign_transaction(tx, KEY).raw_transaction).hex()


async def measure(url: str, quick: bool) -> dict[str, float]:
    latency_n = 300 if quick else 2000
    call_n = 300 if quick else 2000
    tx_n = 50 if quick else 200
    results: dict[str, float] = {}
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, url)
        chain_id = int(await client.call("eth_chainId"), 16)
        sender = Account.from_key(KEY).address
        nonce = int(await client.call("eth_getTransactionCount", sender, "pending"), 16)
        base_fee = int((await client.call("eth_getBlockByNumber", "latest", False))["baseFeePerGas"], 16)

        # eth_blockNumber latency
        for _ in range(50):
            await client.call("eth_blockNumber")
        samples = []
        for _ in range(latency_n):
            t = time.perf_counter()
            await client.call("eth_blockNumber")
            samples.append(time.perf_counter() - t)
        samples.sort()
        results["blockNumber p50 (ms)"] = 1000 * statistics.median(samples)
        results["blockNumber p99 (ms)"] = 1000 * samples[int(len(samples) * 0.99) - 1]

        # deploy the contract, then eth_call throughput with 16 concurrent clients
        deploy = sign(chain_id, nonce, base_fee, to=None, value=0, data=CONTRACT_INIT, gas=300_000)
        nonce += 1
        contract = (await client.receipt(await client.call("eth_sendRawTransaction", deploy)))["contractAddress"]

        async def caller(count: int) -> None:
            worker = Client(session, url)
            for _ in range(count):
                await worker.call("eth_call", {"to": contract}, "latest")

        t = time.perf_counter()
        await asyncio.gather(*(caller(call_n // 16) for _ in range(16)))
        results["eth_call throughput (/s)"] = (call_n // 16) * 16 / (time.perf_counter() - t)

        # sendRawTransaction -> receipt throughput
        raws = [sign(chain_id, nonce + i, base_fee) for i in range(tx_n)]
        t = time.perf_counter()
        hashes = []
        for raw in raws:
            hashes.append(await client.call("eth_sendRawTransaction", raw))
        await client.receipt(hashes[-1])
        elapsed = time.perf_counter() - t
        for tx_hash in hashes:
            assert (await client.receipt(tx_hash))["status"] == "0x1"
        results["sendRawTransaction->receipt (tx/s)"] = tx_n / elapsed
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (CI smoke run)")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_our_node(args.serve)
        return

    url, stop = start_our_node()
    try:
        ours = asyncio.run(measure(url, args.quick))
    finally:
        stop()
    anvil_binary = find_anvil()
    theirs: dict[str, float] | None = None
    if anvil_binary is None:
        print("anvil not available")
    else:
        anvil_url, stop_anvil = start_anvil(anvil_binary)
        try:
            theirs = asyncio.run(measure(anvil_url, args.quick))
        finally:
            stop_anvil()

    width = max(len(k) for k in ours)
    header = f"{'metric':<{width}}  {'ours':>12}"
    if theirs is not None:
        header += f"  {'anvil':>12}  {'ours/anvil':>10}"
    print(header)
    for name, value in ours.items():
        line = f"{name:<{width}}  {value:>12.3f}"
        if theirs is not None:
            line += f"  {theirs[name]:>12.3f}  {value / theirs[name]:>10.2f}"
        print(line)


if __name__ == "__main__":
    main()

"""Dataset uploads: spooled and stored one at a time under a quota; referenced datasets
are kept, unreferenced ones collected oldest first (rpc/uploads.py).

The quota logic runs in process on a pouw chain (jobs posted by real transactions); the
memory bound, the waiting of excess uploads and the refusals run against a real
``pouw-node run``.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chain.db import LevelDB
from chain.txpool import TxPool
from pouw.datasets import Dataset, dataset_to_bytes, synthetic_blobs
from pouw.prng import keccak256
from rpc.backend import ChainBackend
from rpc.config import RpcConfig
from rpc.uploads import UNREFERENCED_GRACE_S, DatasetUploads, QuotaExceeded
from tests.node.test_cli import RunningNode, init
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec
from tests.chain.helpers import DEV_KEYS, MINER
from tests.rpc.helpers import rss_bytes


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def blob(seed: int) -> bytes:
    return dataset_to_bytes(synthetic_blobs(bytes([seed]) * 32, 256, 64, (16,), 4))


@pytest.fixture
def backend(tmp_path: Path) -> Any:
    db = LevelDB(tmp_path / "chaindata")
    genesis = pouw_genesis(expected_steps=6, k=3, maturity=2)
    chain = open_pouw_chain(genesis, db=db)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view())
    yield ChainBackend(chain)
    db.close()


def test_quota_collects_oldest_unreferenced_and_keeps_referenced(backend: ChainBackend) -> None:
    a, b, c, d = (blob(i) for i in range(1, 5))
    size = len(a)
    assert {len(b), len(c), len(d)} == {size}
    clock = Clock()
    uploads = DatasetUploads(backend, RpcConfig(dataset_quota_bytes=2 * size), clock=clock)
    blobs = backend.pouw.blobs

    uploads.store_bytes(a)
    clock.now += 1
    uploads.store_bytes(b)
    assert uploads.store_bytes(b).id == keccak256(b)  # the same bytes again: nothing more counted
    assert uploads.unreferenced_bytes() == 2 * size

    clock.now += 10  # a third, while the others are within their grace period: refused, nothing lost
    with pytest.raises(QuotaExceeded, match=rf"quota .* is {2 * size} bytes and {2 * size} bytes are held"):
        uploads.store_bytes(c)
    assert blobs.has(keccak256(a)) and blobs.has(keccak256(b)) and not blobs.has(keccak256(c))

    clock.now += UNREFERENCED_GRACE_S  # now the oldest may go
    uploads.store_bytes(c)
    assert not blobs.has(keccak256(a)) and blobs.has(keccak256(b)) and blobs.has(keccak256(c))
    assert backend.pouw.dataset_info(keccak256(a)) is None

    # A job names b: chain data from now on, never collected and no longer counted.
    chain = backend.chain
    spec = tiny_spec(steps=30, dataset="0x" + keccak256(b).hex(), input_shape=[16], num_classes=4, hidden=8, batch=8)
    mine_block(chain, MINER, transactions=[post_job_tx(DEV_KEYS[0], 0, spec, 10**9, 10**9 * 30)])
    clock.now += 2 * UNREFERENCED_GRACE_S
    uploads.store_bytes(d)  # fits once b stops counting: c is not collected either
    assert all(blobs.has(keccak256(x)) for x in (b, c, d))
    assert uploads.unreferenced_bytes() == 2 * size

    # Records survive a restart (they are in the database).
    again = DatasetUploads(backend, RpcConfig(dataset_quota_bytes=2 * size), clock=clock)
    assert set(again.records()) == {keccak256(c), keccak256(d)}

    with pytest.raises(QuotaExceeded, match="over this node's dataset quota"):
        DatasetUploads(backend, RpcConfig(dataset_quota_bytes=size - 1)).store_bytes(blob(9))


# --- against a real node ---------------------------------------------------------------------

BIG_EXAMPLES = 873_000  # 64 int8 features + an int64 label each: a 60 MiB dataset file


def big_dataset(seed: int) -> bytes:
    import torch

    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-127, 128, (BIG_EXAMPLES + 256, 64), generator=g, dtype=torch.int8)
    y = torch.randint(0, 10, (BIG_EXAMPLES + 256,), generator=g, dtype=torch.int64)
    return dataset_to_bytes(Dataset(x[:BIG_EXAMPLES], y[:BIG_EXAMPLES], x[BIG_EXAMPLES:], y[BIG_EXAMPLES:], 10, f"big-{seed}"))


def post_dataset(url: str, data: bytes, timeout: float = 300) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url + "/pouw/datasets", data, {"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def dev_node(tmp_path: Path) -> Any:
    datadir = tmp_path / "dev"
    init(datadir, "dev")
    return datadir


@pytest.mark.slow
def test_six_concurrent_60_mib_uploads_stay_within_300_mb(dev_node: Path) -> None:
    """Six 60 MiB uploads at once: all stored (the excess waits its turn), and the node's
    resident memory rises by at most 300 MB over its level after a first small upload
    (which loads torch and safetensors once). Before: 91 MB -> 1.74 GB."""
    files = [big_dataset(seed) for seed in range(6)]
    assert all(60 * 2**20 - 2**20 < len(f) <= 60 * 2**20 + 2**20 for f in files)
    node = RunningNode(dev_node, "--no-p2p")
    try:
        pid = node.proc.pid
        assert post_dataset(node.url, blob(1))[0] == 200  # warm-up: imports torch in the node
        time.sleep(0.5)
        baseline = rss_bytes(pid)
        peak = baseline
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_bytes(pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: list[Any] = [None] * len(files)

        def upload(i: int) -> None:
            results[i] = post_dataset(node.url, files[i])

        started = time.monotonic()
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(files))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
        done.set()
        sampler.join()
        after = rss_bytes(pid)
        print(f"\nRSS: baseline {baseline / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB (+{(peak - baseline) / 1e6:.0f} MB), "
              f"after {after / 1e6:.0f} MB; six uploads in {elapsed:.1f} s")
        for (status, body), data in zip(results, files):
            assert status == 200, body
            assert body["id"] == "0x" + keccak256(data).hex()
        assert peak - baseline <= 300 * 10**6, f"+{(peak - baseline) / 1e6:.0f} MB"
        assert not list((dev_node / "uploads").glob("upload-*"))  # spool files removed
        assert node.rpc("eth_chainId") == "0x539"  # still serving
    finally:
        code, log = node.stop()
    assert code == 0, log


def test_upload_limits_on_a_real_node(dev_node: Path) -> None:
    """--dataset-quota refuses an upload that would pass it (507, saying why);
    --ws-max-per-client refuses one WebSocket too many (429)."""
    import asyncio

    import aiohttp

    first, second = blob(1), blob(2)
    node = RunningNode(dev_node, "--no-p2p", "--dataset-quota", str(len(first) + len(second) // 2),
                       "--ws-max-per-client", "2")
    try:
        assert post_dataset(node.url, first)[0] == 200
        status, body = post_dataset(node.url, second)
        assert status == 507 and "quota" in body["error"] and "bytes are held" in body["error"], body
        answer = json.loads(urllib.request.urlopen(urllib.request.Request(
            node.url, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "pouw_putDataset",
                                  "params": ["0x" + second.hex()]}).encode(),
            {"Content-Type": "application/json"}), timeout=30).read())
        assert answer["error"]["code"] == -32000 and "quota" in answer["error"]["message"]

        async def sockets() -> int:
            async with aiohttp.ClientSession() as session:
                held = [await session.ws_connect(node.url) for _ in range(2)]
                try:
                    await session.ws_connect(node.url)
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status
                finally:
                    for ws in held:
                        await ws.close()
                return 101

        assert asyncio.run(sockets()) == 429
    finally:
        code, log = node.stop()
    assert code == 0, log

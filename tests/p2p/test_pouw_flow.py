"""The full flow with the pouw seal engine: a job whose dataset was uploaded to node A
only is posted through A, its dataset follows it to B (prefetch after new heads), B mines
it, C and D verify it, and its result can be fetched from any of them; a block with faked
work is rejected and its sender banned while the honest chain goes on.

Skipped (with the reason) when consensus.engine.PouwEngine is not in this build.
"""
from __future__ import annotations

import pytest

engine = pytest.importorskip("consensus.engine", reason="needs consensus.engine.PouwEngine (consensus milestone)")
if not hasattr(engine, "PouwEngine"):  # pragma: no cover - depends on the build
    pytest.skip("consensus.engine has no PouwEngine yet", allow_module_level=True)

import asyncio  # noqa: E402

from consensus.blobs import LevelDBBlobStore  # noqa: E402
from consensus.params import REGISTRY_ADDRESS  # noqa: E402
from consensus.registry import encode_post_job, posted_job_ids, read_job  # noqa: E402
from p2p import messages as m  # noqa: E402
from pouw.datasets import dataset_to_bytes, synthetic_blobs  # noqa: E402
from tests.chain.helpers import ALICE, MINER, OTHER_MINER, sign_tx  # noqa: E402
from tests.consensus.helpers import mine_block, pouw_genesis, tiny_spec  # noqa: E402
from tests.p2p.helpers import FakePeer, block_rlp, converged, wait_for  # noqa: E402

pytestmark = pytest.mark.asyncio

GENESIS = pouw_genesis(expected_steps=5, k=2)


def pouw_node(make_node, name: str):
    return make_node(name, genesis=GENESIS, seal_engine=engine.PouwEngine, blobs=LevelDBBlobStore)


async def mine_on(node, coinbase=MINER, transactions=()):
    """B's miner: one honest block on its head (training in a thread), then announced."""
    mined = await asyncio.to_thread(_mine_locked, node, coinbase, list(transactions))
    node.backend.notify_new_head(mined.block.hash)
    return mined


def _mine_locked(node, coinbase, transactions):
    with node.chain.write_lock:
        return mine_block(node.chain, coinbase, transactions)


def job_states(nodes, job_id):
    config = GENESIS and nodes[0].chain.engine_class.config
    return [read_job(n.chain.state_at(), job_id, config) for n in nodes]


def uploaded_dataset(seed: int = 7) -> bytes:
    """A synthetic dataset as a dApp would upload it (pouw_putDataset): not built in."""
    return dataset_to_bytes(synthetic_blobs(seed, 64, 32))


async def test_job_posted_at_a_mined_by_b_verified_by_c_and_d(make_node) -> None:
    a = await pouw_node(make_node, "a").start()
    b = await pouw_node(make_node, "b").start([a])
    c = await pouw_node(make_node, "c").start([a, b])
    d = await pouw_node(make_node, "d").start([a, b, c])
    nodes = [a, b, c, d]
    await wait_for(lambda: all(len(n.p2p.peers) == 3 for n in nodes), what="mesh")

    prefetched: list[bytes] = []
    b.p2p.on_blobs_prefetched.append(prefetched.extend)  # (pouw-node run: the miner restarts its round)
    # The dataset is in A's blob store only (as pouw_putDataset leaves it).
    dataset = a.blobs.put(uploaded_dataset())
    assert not any(n.blobs.has(dataset) for n in (b, c, d))
    spec = tiny_spec(steps=40, dataset="0x" + dataset.hex())

    # Posted through A (as eth_sendRawTransaction would), gossiped to B's pool.
    tx = sign_tx(ALICE, 0, REGISTRY_ADDRESS, value=10**18, data=encode_post_job(spec, 10**9), gas=1_000_000)
    a.backend.submit_raw_transaction(tx.encode())
    await wait_for(lambda: b.chain.txpool.get(tx.hash) is not None, what="job tx in B's pool")

    await mine_on(b, transactions=[b.chain.txpool.get(tx.hash)])  # the block that posts the job
    await converged(nodes, timeout=60)
    (job_id,) = list(posted_job_ids(a.chain.state_at()))
    # The new head makes every node prefetch the open job's dataset from A.
    await wait_for(lambda: all(n.blobs.has(dataset) for n in nodes), timeout=30, what="the dataset on every node")
    assert b.p2p.stats.blobs_prefetched >= 1 and dataset in prefetched
    for _ in range(2):  # B mines on the paid job; C and D verify by recomputation
        mined = await mine_on(b)
        assert mined.job_id == job_id
        await converged(nodes, timeout=60)
    jobs = job_states(nodes, job_id)
    assert len({(j.steps_done, j.checkpoint, j.escrow) for j in jobs}) == 1
    assert jobs[0].steps_done > 0
    for n in (c, d):
        assert n.p2p.stats.invalid_blocks == 0

    # The result (the job's checkpoint state) can be fetched from any node, verified by hash.
    checkpoint = jobs[0].checkpoint
    for n in nodes:
        assert n.blobs.has(checkpoint)
    e = await pouw_node(make_node, "e").start([d])
    await converged([a, e], timeout=60)  # e verifies every block too
    fresh = await pouw_node(make_node, "fresh").start([c])
    await wait_for(lambda: fresh.p2p.peers, what="peer")
    data = await fresh.p2p.fetch_blob(checkpoint)
    assert c.blobs.get(checkpoint) == data


async def test_prefetch_remembers_blobs_no_peer_has(make_node) -> None:
    """An open job whose dataset no node has: asked for once, then not again for
    ``prefetch_retry_s``, however many heads come."""
    a = await pouw_node(make_node, "a").start()
    b = await pouw_node(make_node, "b").start([a], prefetch_retry_s=3600.0)
    await wait_for(lambda: b.p2p.peers and a.p2p.peers, what="peers")
    missing = bytes(range(32))
    spec = tiny_spec(steps=40, dataset="0x" + missing.hex())
    tx = sign_tx(ALICE, 0, REGISTRY_ADDRESS, value=10**18, data=encode_post_job(spec, 10**9), gas=1_000_000)
    b.backend.submit_raw_transaction(tx.encode())
    asked: list[bytes] = []
    fetch = b.p2p.blobs.fetch

    async def counting_fetch(blob_hash, **kw):
        asked.append(blob_hash)
        return await fetch(blob_hash, **kw)

    b.p2p.blobs.fetch = counting_fetch  # type: ignore[method-assign]
    await mine_on(b, transactions=[b.chain.txpool.get(tx.hash)])  # posts the job (B mines the standing job)
    await converged([a, b], timeout=60)
    await wait_for(lambda: asked, timeout=10, what="a prefetch of the missing dataset")
    await wait_for(lambda: missing in b.p2p.prefetcher.failures, timeout=10, what="the failed fetch to be remembered")
    rounds = b.p2p.stats.prefetch_rounds
    for _ in range(2):  # more heads, more rounds: the dataset is not asked for again
        await mine_on(b)
        await converged([a, b], timeout=60)
    await wait_for(lambda: b.p2p.stats.prefetch_rounds > rounds, timeout=10, what="prefetch rounds after new heads")
    assert await b.p2p.prefetch_job_blobs() == 0
    assert asked == [missing] and not b.blobs.has(missing)


async def test_invalid_faked_work_is_rejected_and_the_sender_banned(make_node, fake_peers) -> None:
    b = await pouw_node(make_node, "b").start()
    c = await pouw_node(make_node, "c").start([b])
    await mine_on(b)
    await converged([b, c], timeout=60)

    # An honest block, not imported anywhere; its payload altered: the challenged
    # recomputation (or the payload's own checks) must fail at C.
    mined = await asyncio.to_thread(mine_block, b.chain, OTHER_MINER, (), 5, None, False)
    payload = bytearray(mined.payload)
    payload[len(payload) // 2] ^= 0xFF
    fake = FakePeer(c)
    fake_peers.append(fake)
    await fake.connect()
    work = c.work() + mined.block.header.difficulty
    await fake.send(m.encode("new_block", hash=m.hx(mined.block.hash), number=int(mined.block.number), total_work=m.qty(work)))
    request = await fake.receive()
    assert request is not None and request.type == "get_blocks"
    await fake.send(m.encode("blocks", id=request.body["id"], blocks=[[m.hx(block_rlp(mined.block)), m.hx(bytes(payload))]]))
    reason = await fake.closed_reason(timeout=60)
    assert "banned" in reason and "invalid block" in reason
    assert c.p2p.stats.invalid_blocks == 1 and c.number == 1

    await mine_on(b)  # the honest chain goes on
    await converged([b, c], timeout=60)
    assert c.number == 2 and len(c.p2p.peers) == 1

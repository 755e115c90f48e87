"""Benchmark of block sync over the p2p protocol, with full validation.

    python bench/bench_sync.py [--blocks 600] [--txs 4] [--quick] [--pouw]

Node A builds ``--blocks`` blocks with ``--txs`` signed transfers each (noproof dev
genesis, LevelDB datadirs in a temporary directory). Then, in the same run:

* baseline: the same blocks imported straight into a fresh chain (``Chain.import_block``
  in one thread: decoding, every header rule, EVM execution, state root checks);
* p2p: node B starts with A as its static peer and syncs the chain over the WebSocket
  protocol (locator, batches of 64, pipelined download, import in B's worker thread,
  the same full validation).

Prints blocks/s and txs/s of each and the ratio p2p / baseline (1.0 = the network costs
nothing over local import).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import rlp
from eth.abc import SignedTransactionAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from chain.chain import Chain  # noqa: E402
from chain.db import LevelDB  # noqa: E402
from devnet.kit.accounts import ALICE, DEV_ADDRESSES, MINER  # noqa: E402
from devnet.kit.p2pnode import TestNode, converged  # noqa: E402
from devnet.kit.transactions import transfer  # noqa: E402


def build_pouw_chain(node: TestNode, blocks: int, txs: int) -> int:
    """Honest pouw blocks (the kit's tiny standing job, devnet/kit/genesis.py)."""
    from devnet.kit.mining import mine_block

    nonce = 0
    for _ in range(blocks):
        batch = [transfer(ALICE, nonce + j, DEV_ADDRESSES[4], 1) for j in range(txs)]
        nonce += txs
        mine_block(node.chain, MINER, batch)
    return blocks * txs


def build_chain(node: TestNode, blocks: int, txs: int) -> int:
    nonce = {"n": 0}

    def txs_for(i: int) -> list[SignedTransactionAPI]:
        out = [transfer(ALICE, nonce["n"] + j, DEV_ADDRESSES[4], 1) for j in range(txs)]
        nonce["n"] += txs
        return out

    node.build_blocks(blocks, txs_per_block=txs_for)
    return blocks * txs


def baseline_import(source: TestNode, path: Path) -> float:
    db = LevelDB(path)
    try:
        chain = Chain.open(db, source.genesis, seal_engine=source.seal_engine, clock=source.chain.clock)
        entries = [(source.chain.get_block_by_number(n), source.chain.get_payload(source.chain.get_canonical_hash(n)))
                   for n in range(1, source.number + 1)]
        raw = [(rlp.encode(block), payload) for block, payload in entries]
        started = time.perf_counter()
        for block_rlp, payload in raw:
            chain.import_block(block_rlp, payload)
        return time.perf_counter() - started
    finally:
        db.close()


async def p2p_sync(source: TestNode, path: Path) -> tuple[float, TestNode]:
    target = TestNode("b", path=path, genesis=source.genesis, seal_engine=source.seal_engine, blobs=source.blobs_factory)
    started = time.perf_counter()
    await target.start([source])
    await converged([source, target], timeout=600)
    elapsed = time.perf_counter() - started
    return elapsed, target


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=600)
    parser.add_argument("--txs", type=int, default=4, help="transfers per block")
    parser.add_argument("--quick", action="store_true", help="100 blocks")
    parser.add_argument("--pouw", action="store_true",
                        help="pouw blocks (tiny standing job): validation includes the step recomputation")
    args = parser.parse_args()
    if args.quick:
        args.blocks = 100
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if args.pouw:
            from consensus.blobs import LevelDBBlobStore
            from consensus.engine import PouwEngine
            from devnet.kit.genesis import pouw_genesis

            source = TestNode("a", path=tmp_path / "a", genesis=pouw_genesis(expected_steps=6, k=3),
                              seal_engine=PouwEngine, blobs=LevelDBBlobStore)
            build = build_pouw_chain
        else:
            source = TestNode("a", path=tmp_path / "a")
            build = build_chain
        t0 = time.perf_counter()
        total_txs = await asyncio.to_thread(build, source, args.blocks, args.txs)
        print(f"built {args.blocks} blocks with {total_txs} transactions on node A in {time.perf_counter() - t0:.1f} s")
        await source.start()

        base_s = await asyncio.to_thread(baseline_import, source, tmp_path / "baseline")
        sync_s, target = await p2p_sync(source, tmp_path / "b")
        assert target.number == args.blocks and target.head().hash == source.head().hash
        assert target.chain.get_balance(DEV_ADDRESSES[4]) == source.chain.get_balance(DEV_ADDRESSES[4])
        stats = target.p2p.stats
        await target.stop()
        await source.stop()
        target.close()
        source.close()

    n = args.blocks
    engine = "pouw (k=3 challenged segments + the anchored ones recomputed per block)" if args.pouw else "noproof (EVM + all header/state checks)"
    print(f"seal engine: {engine}")
    print(f"{'':28} {'seconds':>8} {'blocks/s':>9} {'txs/s':>9}")
    print(f"{'baseline: local import':28} {base_s:8.2f} {n / base_s:9.1f} {total_txs / base_s:9.1f}")
    print(f"{'p2p sync (full validation)':28} {sync_s:8.2f} {n / sync_s:9.1f} {total_txs / sync_s:9.1f}")
    print(f"ratio p2p / baseline (blocks/s): {base_s / sync_s:.2f}   "
          f"({stats.batches} batches, {stats.blocks_imported} blocks imported by B, head #{n} matches A)")


if __name__ == "__main__":
    asyncio.run(main())

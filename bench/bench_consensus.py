"""Benchmark of mining and validation with the pouw seal engine at default settings.

    python bench/bench_consensus.py [--blocks N] [--genesis FILE] [--device auto|cpu|cuda:N]

Mines N blocks with the node's miner (``consensus.miner.Miner``, the code ``pouw-node run
--mine`` runs) on a fresh LevelDB datadir with the real clock, then imports the same
blocks and payloads into a second fresh node (a validator). Prints:

* block time: mean, median and p90 of the wall time between successive blocks, and of
  the last half (after the retarget has had time to act), against the genesis target;
* miner time per block (template + training to a ticket + payload + sealing + import)
  against validator time per block (full import: header, work verification with its
  anchored and challenged segments, execution), and their ratio, measured in this run;
* steps per block, difficulty, and work-payload bytes per block.

The genesis must have a standing job (genesis/default.json does): with no paid job
open, every block trains it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.chain import Chain  # noqa: E402
from chain.db import LevelDB  # noqa: E402
from consensus.engine import PouwEngine  # noqa: E402
from consensus.miner import Miner  # noqa: E402
from genesis.format import DEFAULT_GENESIS_PATH, load_genesis  # noqa: E402

COINBASE = bytes.fromhex("c0ffee0000000000000000000000000000000001")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, values: list[float], unit: str = "s") -> str:
    return (f"  {name:<34} mean {statistics.mean(values):8.3f}{unit}  median {statistics.median(values):8.3f}{unit}"
            f"  p90 {pct(values, 0.9):8.3f}{unit}  (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--genesis", type=Path, default=DEFAULT_GENESIS_PATH)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    genesis = load_genesis(args.genesis)
    if genesis.seal_engine != "pouw" or not genesis.pouw.standing_jobs:
        print("the genesis needs \"sealEngine\": \"pouw\" and a standing job", file=sys.stderr)
        return 2
    import torch

    print(f"genesis {args.genesis}: target block time {genesis.target_block_time} s, "
          f"initial difficulty {genesis.initial_difficulty:,}, k = {genesis.pouw.challenge_count}, "
          f"maturity {genesis.coinbase_maturity}")
    print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}, load average {os.getloadavg()[0]:.2f} (other processes slow training)")

    with tempfile.TemporaryDirectory() as tmp:
        miner_db = LevelDB(Path(tmp) / "miner")
        chain = Chain.open(miner_db, genesis, seal_engine=PouwEngine)
        miner = Miner(chain, COINBASE, device=args.device)
        mined = []
        block_times: list[float] = []
        miner_times: list[float] = []
        last = time.perf_counter()
        print(f"mining {args.blocks} blocks ...", flush=True)
        for n in range(args.blocks):
            started = time.perf_counter()
            result = None
            while result is None:
                result = miner.mine_and_import()
            now = time.perf_counter()
            miner_times.append(now - started)
            block_times.append(now - last)
            last = now
            mined.append(result)
            h = result.block.header
            print(f"  #{h.block_number:<3} t={h.step_count:<5} D={h.difficulty:>14,}  {block_times[-1]:6.2f} s  "
                  f"payload {len(result.payload):>8,} B", flush=True)
        miner_db.close()

        validator_db = LevelDB(Path(tmp) / "validator")
        validator = Chain.open(validator_db, genesis, seal_engine=PouwEngine)
        verify_times: list[float] = []
        import_times: list[float] = []
        engine = validator.engine
        original = engine.verify_work

        def timed_verify(*a, **kw):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                verify_times.append(time.perf_counter() - t0)

        engine.verify_work = timed_verify  # type: ignore[method-assign]
        for m in mined:
            t0 = time.perf_counter()
            validator.import_block(m.block, m.payload)
            import_times.append(time.perf_counter() - t0)
        assert validator.head().hash == mined[-1].block.hash
        validator_db.close()

    target = genesis.target_block_time
    half = block_times[len(block_times) // 2:]
    print()
    print(f"block time (target {target} s):")
    print(row("all blocks", block_times))
    print(row("second half (after retarget)", half))
    print("miner vs validator, per block:")
    print(row("miner (template..import)", miner_times))
    print(row("  of which training to a ticket", [m.train_seconds for m in mined]))
    print(row("validator (full import)", import_times))
    print(row("  of which work verification", verify_times))
    ratio = statistics.mean(import_times) / statistics.mean(miner_times)
    print(f"  validator / miner time: {ratio:.4f} ({1 / ratio:.0f}x cheaper to validate than to mine)")
    steps = [m.steps for m in mined]
    from consensus.payload import WorkPayload

    ms = [WorkPayload.decode(m.payload).m for m in mined]
    print(f"steps per block: mean {statistics.mean(steps):.1f}, median {statistics.median(steps)}; segment length m: "
          f"{min(ms)}..{max(ms)}; recomputed per block: at most {genesis.pouw.challenge_count} + 5 segments")
    sizes = [len(m.payload) for m in mined]
    print(f"work payload bytes per block: mean {statistics.mean(sizes):,.0f}, max {max(sizes):,}")
    print(f"difficulty: first {mined[0].block.header.difficulty:,}, last {mined[-1].block.header.difficulty:,}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

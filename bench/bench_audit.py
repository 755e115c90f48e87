"""Benchmark of the auditor against the mining it checks (docs/protocol.md §21).

    python bench/bench_audit.py [--model small|large] [--blocks N] [--steps-per-block S] [--workers W]

Mines ``N`` honest blocks of a standing job (small: MLP 64-128-10, batch 32, digits;
large: MLP 784-1024-1024-10, batch 256, synthetic data) with the node's miner on this
machine, then audits every one of them (``consensus.auditor``: every step recomputed,
every segment's end hashed and compared) inline and in ``W`` worker processes, and prints:

* the miner's rate (steps/s of sealing: training, commitments, tickets) and the
  auditor's (steps/s recomputed), one core each, and their ratio;
* how many auditors with this machine's cores keep up with one miner, and with a
  network of 1, 4 or 16 such miners;
* what a validator's sampled check of the same blocks costs, for comparison.

Every figure is measured in this run; nothing is compared with a stored number.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from eth.db.atomic import AtomicDB  # noqa: E402

from chain.chain import Chain  # noqa: E402
from consensus.auditor import AuditRunner  # noqa: E402
from consensus.blobs import LevelDBBlobStore  # noqa: E402
from consensus.engine import PouwEngine  # noqa: E402
from devnet.kit.accounts import MINER  # noqa: E402
from devnet.kit.chains import FixedClock  # noqa: E402
from devnet.kit.genesis import pouw_genesis_dict  # noqa: E402
from devnet.kit.mining import mine_block  # noqa: E402
from genesis.format import parse_genesis  # noqa: E402
from consensus.jobs import digits_dataset_id  # noqa: E402
from pouw.datasets import dataset_id, dataset_to_bytes, synthetic_blobs  # noqa: E402
from pouw.families import get_family  # noqa: E402
from pouw.spec import JobSpec  # noqa: E402


def spec_for(model: str) -> tuple[dict[str, object], bytes | None]:
    """The standing job's spec and the dataset blob it needs (None: built in)."""
    if model == "small":
        return {"family": "mlp", "dataset": digits_dataset_id(), "input_shape": [64], "num_classes": 10,
                "hidden": [128], "batch_size": 32, "lr_shift": 4, "momentum_shift": None, "steps": 10**9}, None
    blob = dataset_to_bytes(synthetic_blobs(3, 4096, 256, input_shape=(784,)))
    return {"family": "mlp", "dataset": dataset_id(blob), "input_shape": [784], "num_classes": 10,
            "hidden": [1024, 1024], "batch_size": 256, "lr_shift": 6, "momentum_shift": None, "steps": 10**9}, blob


def open_chain(model: str, steps_per_block: int) -> Chain:
    spec, blob = spec_for(model)
    w = get_family("mlp").work_units(JobSpec.from_dict(spec))
    raw = pouw_genesis_dict(expected_steps=1, k=8, maturity=240, initialDifficulty=w * steps_per_block,
                            minimumDifficulty=w * steps_per_block, maxAdjustUpPercent=1, maxAdjustDownPercent=1)
    pouw = raw["pouw"]
    assert isinstance(pouw, dict)
    pouw["standingJobs"] = [spec]
    if model == "large":  # beyond the default genesis' limits (2 MiB of state): a genesis that admits it
        pouw.update({"maxStateBytes": 16 << 20, "maxWorkUnitsPerStep": 10**11})
    genesis = parse_genesis(raw)
    chain = Chain.open(AtomicDB(), genesis, seal_engine=PouwEngine, clock=FixedClock(genesis.timestamp + 10**7))
    if blob is not None:
        LevelDBBlobStore(chain.db).put(blob)
    return chain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("small", "large"), default="small")
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--steps-per-block", type=int, default=None,
                        help="expected steps a block (default: 400 small, 40 large)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    steps_per_block = args.steps_per_block or (400 if args.model == "small" else 40)
    torch.set_num_threads(1)  # one core for the miner, as for each audit worker
    chain = open_chain(args.model, steps_per_block)
    validator = open_chain(args.model, steps_per_block)  # a second node: the sampled checks, as any peer runs them
    print(f"model {args.model}, {args.blocks} blocks of about {steps_per_block} steps, "
          f"{os.cpu_count()} cores, torch {torch.__version__}")

    mine_s = import_s = 0.0
    steps = 0
    hashes = []
    for _ in range(args.blocks):
        started = time.perf_counter()
        mined = mine_block(chain, MINER, do_import=False)
        mine_s += time.perf_counter() - started
        chain.import_block(mined.block, mined.payload)
        started = time.perf_counter()
        validator.import_block(mined.block.copy(), mined.payload)
        import_s += time.perf_counter() - started
        steps += mined.block.header.step_count
        hashes.append(bytes(mined.block.hash))
    miner_rate = steps / mine_s
    print(f"miner:     {steps} steps in {mine_s:.2f} s = {miner_rate:,.0f} steps/s (one core: train, commit, tickets)")
    print(f"validator: importing the same blocks (sampled checks, execution) {import_s:.2f} s "
          f"= {100 * import_s / mine_s:.1f}% of the mining time")

    inline = AuditRunner(chain, workers=1)
    started = time.perf_counter()
    audits = inline.audit(hashes)
    inline_s = time.perf_counter() - started
    inline.close()
    assert all(a.honest for a in audits), "an honest block audited as a fraud"
    audit_rate = steps / inline_s
    print(f"auditor:   {steps} steps in {inline_s:.2f} s = {audit_rate:,.0f} steps/s (one core: every step, every "
          f"segment hashed); auditor/miner = {audit_rate / miner_rate:.2f}")

    if args.workers > 1:
        pool = AuditRunner(chain, workers=args.workers)
        pool.audit(hashes[: args.workers])  # start the workers (spawn, torch import) before timing
        started = time.perf_counter()
        pool.audit(hashes)
        pool_s = time.perf_counter() - started
        pool.close()
        print(f"auditor x{args.workers} workers: {steps / pool_s:,.0f} steps/s "
              f"({steps / pool_s / audit_rate:.2f}x one worker)")

    per_miner = miner_rate / audit_rate
    print(f"cores of auditing per miner core: {per_miner:.2f}")
    for miners in (1, 4, 16):
        print(f"  a network of {miners:2d} such miners: {miners * per_miner:5.1f} auditor cores keep up "
              f"({max(1, round(miners * per_miner / (os.cpu_count() or 1) + 0.499))} machine(s) like this one)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

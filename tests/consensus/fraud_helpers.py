"""A miner that substitutes one state in one block, and a prover: the two sides of the
fraud-proof tests (in process, and the cheating miner of the end-to-end test).

The substituting miner trains honestly except at one segment J, where it lists a state
it did not compute (the honest state with one weight changed: a poisoned model) and
keeps training from it. It computes its own challenges before publishing and keeps
training while J would be recomputed, so the block it publishes always passes sampled
verification: only a full audit finds it.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from chain.chain import Chain, Seal
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from consensus.fraud import encode_prove_fraud
from consensus.jobs import checkpoint_state_bytes, load_dataset
from consensus.params import REGISTRY_ADDRESS
from consensus.registry import JobRecord, read_job
from pouw.commit import max_segment_steps
from pouw.families import get_family
from tests.chain.helpers import sign_tx
from tests.consensus.sim import simulate


@dataclass
class Substituted:
    block: Any
    payload: bytes
    job_id: int
    segment: int
    """The segment whose listed end state is the substitute."""


def substitute_block(
    chain: Chain, coinbase: bytes, *, segment: int = 3, job_id: Optional[int] = None, dt: int = 5,
    transactions: Sequence[Any] = (), seed: int = 0,
) -> Substituted:
    """Seal (not import) a block on the head whose segment ``segment`` is substituted."""
    config = chain.engine_class.config  # type: ignore[attr-defined]
    head = chain.head()
    template = chain.build_template(coinbase, timestamp=head.timestamp + dt, transactions=list(transactions),  # type: ignore[arg-type]
                                    parent_hash=head.hash)
    job = _job(chain, job_id)
    assert job.spec is not None
    w = get_family(job.spec.family).work_units(job.spec)
    d = template.header.difficulty
    m = min(2, max_segment_steps(d, w, config.challenge_count))
    blobs = LevelDBBlobStore(chain.db)
    s0 = checkpoint_state_bytes(job, blobs)
    dataset = load_dataset(job.spec, blobs, 1 << 30)
    tr = simulate(job.spec, dataset, backend_for("cpu"), s0, k=config.challenge_count, difficulty=d,
                  work_units=w, m=m, budget=job.budget_left, fake=lambda j: j == segment, selective=True,
                  rng=random.Random(seed), template_hash=template.template_hash, coinbase=coinbase,
                  job_id=job.job_id, min_points=segment + 4)
    assert tr.faked == {segment} and segment not in tr.required
    c = tr.claim
    block = chain.seal_block(template, Seal(job.job_id.to_bytes(32, "big"), c.h0, c.step_count,  # type: ignore[arg-type]
                                            c.final_state, c.work_accumulator))
    return Substituted(block, tr.payload.encode(), job.job_id, segment)


def _job(chain: Chain, job_id: Optional[int]) -> JobRecord:
    from consensus.miner import Miner

    config = chain.engine_class.config  # type: ignore[attr-defined]
    state = chain.state_at(chain.head())
    if job_id is None:
        return Miner(chain, b"\x00" * 20, device="cpu").choose_job(state)
    job = read_job(state, job_id, config)
    assert job is not None
    return job


PROOF_TIP = 10**9  # the pool's minimum tip


def prove_tx(key: Any, nonce: int, block_hash: bytes, segment: int, gas: int = 3_000_000, tip: int = PROOF_TIP) -> Any:
    return sign_tx(key, nonce, REGISTRY_ADDRESS, data=encode_prove_fraud(block_hash, segment), gas=gas, tip=tip)

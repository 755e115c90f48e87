"""The sealed-block vector of docs/protocol.md §12 (``vector block``), read from the document.

It pins the seed, points, segments, accumulator, ticket, challenges and payload encoding
across refactors: an honest trajectory of a small job from its initial checkpoint,
segment length 2, a budget point inside the block, sealed at the first winning point
and verified by the consensus checks. The document gives the inputs; every output line
is recomputed here (tests/pouw/protocol_doc.py reads the block).
``python -m tests.consensus.test_vectors`` prints the block as the code computes it.
"""
from __future__ import annotations

import json

from eth_utils import keccak

from consensus.engine import backend_for
from consensus.jobs import initial_checkpoint, initial_state_bytes, job_seed, load_dataset
from consensus.seal import verify_trajectory
from pouw.commit import anchored_segments, challenge_segments, trajectory_points
from pouw.families import get_family
from pouw.spec import JobSpec
from pouw.state import serialize_state, state_hash
from tests.consensus.sim import simulate
from tests.pouw.protocol_doc import VectorBlock, document_vectors, fmt, render, value

INPUTS = ("spec", "job_id", "template", "coinbase", "k", "m", "budget", "difficulty")


def block_vector(block: VectorBlock) -> dict[str, str]:
    """Every line of the document's ``block`` vector, as the code computes it."""
    spec = JobSpec.from_dict(json.loads(block["spec"]))
    job_id, k, m, budget, difficulty = (json.loads(block[key]) for key in ("job_id", "k", "m", "budget", "difficulty"))
    w = get_family(spec.family).work_units(spec)
    ds = load_dataset(spec, None, 1 << 30)
    s0 = initial_state_bytes(job_id, spec)
    tr = simulate(spec, ds, backend_for("cpu"), s0, k=k, m=m, budget=budget, difficulty=difficulty, work_units=w,
                  template_hash=value(block["template"]), coinbase=value(block["coinbase"]), job_id=job_id)
    claim, payload = tr.claim, tr.payload
    checkpoint = verify_trajectory(claim, payload, spec, s0, ds, k, backend_for("cpu"))  # the consensus checks pass
    assert state_hash(serialize_state(spec, checkpoint)) == claim.final_state
    points = trajectory_points(claim.step_count, m, budget)
    n = len(points)
    j_r = points.index(budget) + 1 if budget in points and budget < claim.step_count else None
    out = {key: block[key] for key in INPUTS}
    out["spec"] = spec.canonical_bytes().decode("ascii")
    computed = {
        "work_units": w,
        "init_seed": job_seed(job_id, spec),
        "h_0": initial_checkpoint(job_id, spec),
        "seal_seed": claim.seed(m),
        "t": claim.step_count,
        "n": n,
        "first_points": points[:4],
        "budget_segment": j_r,
        "c_1": payload.commitments[0],
        "c_n": payload.commitments[-1],
        "A_n": claim.work_accumulator,
        "final_state": claim.final_state,
        "anchored": anchored_segments(n, j_r),
        "challenges": challenge_segments(claim.work_accumulator, n, k, j_r),
        "carried": [j for j, _ in payload.carried],
        "payload_length": len(payload.encode()),
        "payload_keccak": keccak(payload.encode()),
    }
    out.update({key: fmt(v) for key, v in computed.items()})
    return out


def test_block_vector_matches_the_document() -> None:
    block = document_vectors()["block"]
    got = block_vector(block)
    assert list(got) == list(block.entries), "the block's lines differ from what the checker computes"
    assert {key: v for key, v in got.items() if v != block[key]} == {}


if __name__ == "__main__":
    doc_block = document_vectors()["block"]
    print(render(doc_block, block_vector(doc_block)))

"""A fixed seal vector: pins the seed, accumulator, ticket, challenges and payload encoding
across refactors (an honest trajectory of the tiny job from its initial checkpoint)."""
from __future__ import annotations

from eth_utils import keccak

from consensus.engine import backend_for
from consensus.jobs import initial_checkpoint, initial_state_bytes, load_dataset
from consensus.seal import verify_trajectory
from pouw.spec import JobSpec
from tests.consensus.helpers import tiny_spec, tiny_work_units
from tests.consensus.sim import simulate

VECTOR = {
    "template_hash": "22" * 32,
    "coinbase": "c0" * 20,
    "job_id": 1,
    "k": 3,
    "difficulty": "4 * w",
    "h0": "46bba877276f139e9be38a57fd6d87e1868a8fede4fd67ddcf3dfa40cd1279c8",
    "seed": "3806a5a1e6740b1b89437fbb96e2a717b44c3083b8080407eb18ec7b9a452e45",
    "t": 7,
    "h_t": "6d12f6f7ddcebceba668cb586b9906a935ff5ae3e4db95e9c23f983b9bf3c9b8",
    "a_t": "f9d9beef0dd531cc1ffdc93ec341242c4f262c3a1975a308c779408767292ad8",
    "carried": [1, 3, 6, 7],
    "payload_keccak": "e7a4933f974d5bb76adde02e37c24606d3dcd08ce019e486245baecfd4bfb597",
}


def test_seal_vector() -> None:
    spec = JobSpec.from_dict(tiny_spec())
    w = tiny_work_units()
    ds = load_dataset(spec, None, 1 << 30)
    assert initial_checkpoint(1, spec).hex() == VECTOR["h0"]
    tr = simulate(spec, ds, backend_for("cpu"), initial_state_bytes(1, spec), k=3, difficulty=4 * w, work_units=w,
                  template_hash=bytes.fromhex(VECTOR["template_hash"]), coinbase=bytes.fromhex(VECTOR["coinbase"]),
                  job_id=1, min_t=6)
    c = tr.claim
    assert c.seed.hex() == VECTOR["seed"]
    assert (c.step_count, c.final_state.hex(), c.work_accumulator.hex()) == (VECTOR["t"], VECTOR["h_t"], VECTOR["a_t"])
    assert [i for i, _ in tr.payload.carried] == VECTOR["carried"]
    assert keccak(tr.payload.encode()).hex() == VECTOR["payload_keccak"]
    verify_trajectory(c, tr.payload, spec, ds, 3, backend_for("cpu"))

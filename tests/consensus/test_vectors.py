"""A fixed seal vector: pins the seed, segments, accumulator, ticket, challenges and payload
encoding across refactors (an honest trajectory of the tiny job from its initial
checkpoint, segment length 2, a budget point inside the block)."""
from __future__ import annotations

from eth_utils import keccak

from consensus.engine import backend_for
from consensus.jobs import initial_checkpoint, initial_state_bytes, load_dataset
from consensus.seal import verify_trajectory
from pouw.spec import JobSpec
from pouw.state import serialize_state, state_hash
from tests.consensus.helpers import tiny_spec, tiny_work_units
from tests.consensus.sim import simulate

VECTOR = {
    "template_hash": "22" * 32,
    "coinbase": "c0" * 20,
    "job_id": 1,
    "k": 3,
    "m": 2,
    "budget": 5,
    "difficulty": "1100 * w",
    "h0": "615e156eeb173149512a5409e274ce2d4b784137ac7258bc0cb4a24d87a28929",
    "seed": "3771945da6b5bcf22a8f19ace3364b69415c831c984b9be74dc1ae5248214b68",
    "t": 808,
    "n": 405,
    "first_points": [2, 4, 5, 6],
    "final_state": "411623ab359239af4c2b895981e460ee676f7df229979dd7ee8f32f59747085b",  # c_3: the budget point 5
    "A_n": "36e87856a368f4a310f0a9fb3e92bbb5e87659bbff57196c9b349dda6939076d",
    "carried": [3, 34, 309, 370, 403, 404, 405],  # budget segment 3, challenges, anchors n-2..n
    "payload_keccak": "41a569d52e30c988800b6c1227db451a16a014c9264216701376a38f178e6742",
}


def seal_vector() -> dict:
    spec = JobSpec.from_dict(tiny_spec())
    w = tiny_work_units()
    ds = load_dataset(spec, None, 1 << 30)
    s0 = initial_state_bytes(1, spec)
    tr = simulate(spec, ds, backend_for("cpu"), s0, k=3, m=2, budget=5, difficulty=1100 * w, work_units=w,
                  template_hash=bytes.fromhex(VECTOR["template_hash"]), coinbase=bytes.fromhex(VECTOR["coinbase"]),
                  job_id=1)
    c = tr.claim
    checkpoint = verify_trajectory(c, tr.payload, spec, s0, ds, 3, backend_for("cpu"))
    assert state_hash(serialize_state(spec, checkpoint)) == c.final_state
    from pouw.commit import trajectory_points

    return {
        "h0": initial_checkpoint(1, spec).hex(),
        "seed": c.seed(2).hex(),
        "t": c.step_count,
        "n": len(trajectory_points(c.step_count, 2, 5)),
        "first_points": trajectory_points(c.step_count, 2, 5)[:4],
        "final_state": c.final_state.hex(),
        "A_n": c.work_accumulator.hex(),
        "carried": [j for j, _ in tr.payload.carried],
        "payload_keccak": keccak(tr.payload.encode()).hex(),
    }


def test_seal_vector() -> None:
    got = seal_vector()
    assert got == {key: VECTOR[key] for key in got}


if __name__ == "__main__":
    for key, value in seal_vector().items():
        print(f"{key:15s} {value}")

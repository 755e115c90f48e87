"""Fixed test vectors: a small MLP job, a synthetic dataset, a seal seed -> c_1, c_10, c_100.

These pin the whole recomputed path (PRNG, dataset bytes, init, exact step, state
encoding and hash, accumulator and the batches chained to it; segment
length m = 1, so every step is a point). Any change to them is a consensus change. The same values are
in docs/protocol.md ("Test vectors"). Regenerate with
``python -m tests.pouw.test_vectors`` only on a deliberate protocol change.
"""
from __future__ import annotations

import pytest
import torch

from pouw.arith import select_backend
from pouw.commit import seal_seed
from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, synthetic_blobs
from pouw.families import get_family
from pouw.spec import JobSpec
from pouw.state import serialize_state, state_hash
from pouw.trainer import Trainer

DATASET_SEED = b"\x05" * 32  # synthetic_blobs(DATASET_SEED, 64, 16, (12,), num_classes=4)
INIT_SEED = b"\x07" * 32  # get_family("mlp").init_state(spec, INIT_SEED)
TEMPLATE_HASH = b"\x11" * 32
COINBASE = b"\x22" * 20
JOB_ID = 1
M = 1

SPEC_JSON = (
    '{"act_frac_bits":16,"batch_size":8,'
    '"dataset":"0xa551a93cccf78f37bfff3e5dc48746bbfcb5364fd5f7a1273a4ba5856de0f283",'
    '"family":"mlp","hidden":[16],"input_frac_bits":7,"input_shape":[12],"kernel_size":3,'
    '"lr_shift":4,"momentum_shift":3,"num_classes":4,"steps":100,"stride":1,"weight_frac_bits":24}'
)

EXPECTED = {
    "dataset": "0xa551a93cccf78f37bfff3e5dc48746bbfcb5364fd5f7a1273a4ba5856de0f283",
    "spec_hash": "5e9a4d0ea6ce76836e548ed47739100914591106982896e445dfab04c56f7141",
    "h0": "9eb33e2d9edc57bfa516f5336b2236df7f17541395df09cc5cc033dc5b53bdb3",
    "seal_seed": "e2a32c69beabd860f9a7a03ad80b8e477aaae045b01e0d03642e078897410d06",
    "c1": "538f69ed0c5a24b0ddd9123250ceb0dc2f279e151a753fdb4427b2112d7c4089",
    "c10": "1836a92b9614a3dd9a727d5bc8ea4fb138ee57df84ad212eedc48e6478065a8e",
    "c100": "c97196c47022c5bd66ebf0a95072fc49ddcef408a9c85a2573c1c0a2fbfc3c18",
    "A100": "06b13901de8b24368d266778905488cba61d287ee487290283a4c7e253b46066",
}


def vectors(device: str = "cpu", gemm: str = "int8") -> dict[str, str]:
    import json

    ds: Dataset = synthetic_blobs(DATASET_SEED, 64, 16, (12,), num_classes=4)
    spec = JobSpec.from_dict(json.loads(SPEC_JSON))
    s0 = get_family("mlp").init_state(spec, INIT_SEED)
    h0 = state_hash(serialize_state(spec, s0))
    seed = seal_seed(TEMPLATE_HASH, COINBASE, JOB_ID, h0, M)
    tr = Trainer(spec, ds, s0, seed, select_backend(device, gemm), m=M)
    tr.run()
    return {
        "dataset": dataset_id(dataset_to_bytes(ds)),
        "spec_hash": spec.spec_hash().hex(),
        "h0": h0.hex(),
        "seal_seed": seed.hex(),
        "c1": tr.points[0].c.hex(),
        "c10": tr.points[9].c.hex(),
        "c100": tr.points[99].c.hex(),
        "A100": tr.points[99].a.hex(),
    }


def test_spec_json_is_canonical() -> None:
    import json

    assert JobSpec.from_dict(json.loads(SPEC_JSON)).canonical_bytes().decode() == SPEC_JSON


@pytest.mark.parametrize("gemm", ["int8", "fp32"])
def test_vectors_cpu(gemm: str) -> None:
    assert vectors("cpu", gemm) == EXPECTED


def test_vectors_one_thread() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert vectors("cpu", "int8") == EXPECTED
    finally:
        torch.set_num_threads(threads)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("gemm", ["int8", "fp32"])
def test_vectors_cuda(gemm: str) -> None:
    assert vectors("cuda", gemm) == EXPECTED


if __name__ == "__main__":
    for key, value in vectors().items():
        print(f"{key:10s} {value}")

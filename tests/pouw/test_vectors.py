"""Fixed test vectors: a small MLP job, a synthetic dataset, a seal seed -> h_1, h_10, h_100.

These pin the whole recomputed path (PRNG, dataset bytes, init, exact step, state
encoding, accumulator). Any change to them is a consensus change. The same values are
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

SPEC_JSON = (
    '{"act_frac_bits":16,"batch_size":8,'
    '"dataset":"0xa551a93cccf78f37bfff3e5dc48746bbfcb5364fd5f7a1273a4ba5856de0f283",'
    '"family":"mlp","hidden":[16],"input_frac_bits":7,"input_shape":[12],"kernel_size":3,'
    '"lr_shift":4,"momentum_shift":3,"num_classes":4,"steps":100,"stride":1,"weight_frac_bits":24}'
)

EXPECTED = {
    "dataset": "0xa551a93cccf78f37bfff3e5dc48746bbfcb5364fd5f7a1273a4ba5856de0f283",
    "spec_hash": "5e9a4d0ea6ce76836e548ed47739100914591106982896e445dfab04c56f7141",
    "h0": "276c86b449f933c526b424c6bce77ec8dc1ce525f9b194b84065a9f3a58c913f",
    "seal_seed": "1e28e7e68a82e08d23284274d31289e190d3e74ec1332fcc545a3a94dd3c844b",
    "h1": "a9583fd3c1130f55c3ee95b61d19c607543e85b8a6d12d52716a14552fb3b5f7",
    "h10": "810f2c5a60ffcf5bff500338fc8b3938ea9764a9640b0e46a1adbbd4737b09a1",
    "h100": "0bffdef6494d9e118ef9a5756ae4b83bd942371030b0feb63833eedb157b8d26",
    "a100": "fbb6b1d0dadcd531cd6beae453fafcb415b212cf75987706905b9a41868636d4",
}


def vectors(device: str = "cpu", gemm: str = "int8") -> dict[str, str]:
    import json

    ds: Dataset = synthetic_blobs(DATASET_SEED, 64, 16, (12,), num_classes=4)
    spec = JobSpec.from_dict(json.loads(SPEC_JSON))
    s0 = get_family("mlp").init_state(spec, INIT_SEED)
    h0 = state_hash(serialize_state(spec, s0))
    seed = seal_seed(TEMPLATE_HASH, COINBASE, JOB_ID, h0)
    tr = Trainer(spec, ds, s0, seed, select_backend(device, gemm))
    tr.run()
    return {
        "dataset": dataset_id(dataset_to_bytes(ds)),
        "spec_hash": spec.spec_hash().hex(),
        "h0": h0.hex(),
        "seal_seed": seed.hex(),
        "h1": tr.records[0].h.hex(),
        "h10": tr.records[9].h.hex(),
        "h100": tr.records[99].h.hex(),
        "a100": tr.records[99].a.hex(),
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

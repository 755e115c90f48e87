"""The training vectors of docs/protocol.md §12, read from the document, on every backend.

Each ``train-*`` block gives a dataset, a job spec, an initial-state seed and the seal
inputs; the trajectory's dataset id, spec hash, h_0, seal seed, state hashes c_j,
accumulators A_j and exact metrics are recomputed here (tests/pouw/protocol_doc.py reads
the block) on both GEMM paths, on one thread and on CUDA when present: they pin the PRNG,
dataset bytes, initialisation, the exact step of both families, the state encoding and
hash, the accumulator and the batches chained to it, and evaluation. Any change to them
is a consensus change; ``python -m tests.pouw.protocol_doc train-mlp ...`` prints the
blocks as the code computes them.
"""
from __future__ import annotations

import pytest
import torch

from pouw.arith import select_backend
from tests.pouw.protocol_doc import compute_block, document_vectors
from tests.pouw.test_protocol_doc import TRAINING, assert_block_matches

BLOCKS = document_vectors()


def test_the_document_has_the_training_vectors() -> None:
    assert set(TRAINING) <= set(BLOCKS)
    families = {BLOCKS[name]["spec"].split('"family":"')[1].split('"')[0] for name in TRAINING}
    assert families == {"mlp", "cnn"}


@pytest.mark.parametrize("gemm", ["int8", "fp32"])
@pytest.mark.parametrize("name", TRAINING)
def test_vectors_cpu(name: str, gemm: str) -> None:
    assert_block_matches(BLOCKS[name], compute_block(BLOCKS[name], select_backend("cpu", gemm)))


@pytest.mark.parametrize("name", TRAINING)
def test_vectors_one_thread(name: str) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert_block_matches(BLOCKS[name], compute_block(BLOCKS[name], select_backend("cpu", "int8")))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", TRAINING)
def test_vectors_device_shift_form(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The form of the step a GPU runs (shifts kept as device tensors), here on CPU."""
    import pouw.arith

    monkeypatch.setattr(pouw.arith, "HOST_SHIFTS_ON_CPU", False)
    assert_block_matches(BLOCKS[name], compute_block(BLOCKS[name], select_backend("cpu", "int8")))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("gemm", ["int8", "fp32"])
@pytest.mark.parametrize("name", TRAINING)
def test_vectors_cuda(name: str, gemm: str) -> None:
    assert_block_matches(BLOCKS[name], compute_block(BLOCKS[name], select_backend("cuda", gemm)))

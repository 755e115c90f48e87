"""pouw.engine: the step is pure, reproducible across thread counts and GEMM paths."""
from __future__ import annotations

import pytest
import torch

from pouw.arith import select_backend
from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, synthetic_blobs
from pouw.engine import batch_for_step, check_compatible, compute_step, device_tensors
from pouw.errors import DatasetError
from pouw.families import get_family
from pouw.prng import batch_indices
from pouw.spec import JobSpec
from pouw.state import serialize_state, state_hash

SEED = b"\x42" * 32


def small_job(batch_size: int = 8) -> tuple[JobSpec, Dataset]:
    ds = synthetic_blobs(b"\x05" * 32, 64, 16, (12,), num_classes=4)
    spec = JobSpec.from_dict(
        {
            "family": "mlp",
            "dataset": dataset_id(dataset_to_bytes(ds)),
            "input_shape": [12],
            "num_classes": 4,
            "hidden": [16],
            "batch_size": batch_size,
            "lr_shift": 4,
            "momentum_shift": 3,
            "steps": 50,
        }
    )
    return spec, ds


@pytest.fixture(scope="module")
def job() -> tuple[JobSpec, Dataset]:
    return small_job()


def _h(spec: JobSpec, state: dict[str, torch.Tensor]) -> bytes:
    return state_hash(serialize_state(spec, state))


def test_batch_is_drawn_by_the_prng(job: tuple[JobSpec, Dataset]) -> None:
    spec, ds = job
    x, y = batch_for_step(ds, SEED, 3, spec.batch_size, torch.device("cpu"))
    idx = batch_indices(SEED, 3, spec.batch_size, len(ds))
    assert torch.equal(x, ds.x_train[idx]) and torch.equal(y, ds.y_train[idx])
    assert x.dtype == torch.int8 and y.dtype == torch.int64


def test_step_matches_family_step_and_is_pure(job: tuple[JobSpec, Dataset]) -> None:
    spec, ds = job
    backend = select_backend("cpu")
    fam = get_family("mlp")
    s0 = fam.init_state(spec, SEED)
    before = serialize_state(spec, s0)
    s1 = compute_step(spec, ds, s0, SEED, 1, backend)
    assert serialize_state(spec, s0) == before
    idx = batch_indices(SEED, 1, spec.batch_size, len(ds))
    manual = fam.step(spec, s0, ds.x_train[idx], ds.y_train[idx], backend)
    assert _h(spec, s1) == _h(spec, manual)
    assert _h(spec, s1) != _h(spec, compute_step(spec, ds, s0, SEED, 2, backend))
    assert _h(spec, s1) != _h(spec, compute_step(spec, ds, s0, b"\x43" * 32, 1, backend))


def _trajectory(spec: JobSpec, ds: Dataset, gemm: str, steps: int = 5) -> list[bytes]:
    backend = select_backend("cpu", gemm)
    state = get_family("mlp").init_state(spec, SEED)
    out = []
    for i in range(1, steps + 1):
        state = compute_step(spec, ds, state, SEED, i, backend)
        out.append(_h(spec, state))
    return out


def test_same_bits_for_thread_counts_and_gemm_paths(job: tuple[JobSpec, Dataset]) -> None:
    spec, ds = job
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _trajectory(spec, ds, "int8")
        torch.set_num_threads(2)
        two = _trajectory(spec, ds, "int8")
    finally:
        torch.set_num_threads(threads)
    assert one == two == _trajectory(spec, ds, "fp32")


def test_dataset_is_copied_to_a_device_once(job: tuple[JobSpec, Dataset]) -> None:
    _, ds = job
    a = device_tensors(ds, torch.device("cpu"))
    b = device_tensors(ds, torch.device("cpu"))
    assert a[0] is b[0] and a[1] is b[1]


def test_invalid_step_index(job: tuple[JobSpec, Dataset]) -> None:
    spec, ds = job
    with pytest.raises(ValueError):
        batch_for_step(ds, SEED, 0, spec.batch_size, torch.device("cpu"))


def test_invalid_dataset_for_spec(job: tuple[JobSpec, Dataset]) -> None:
    spec, _ = job
    with pytest.raises(DatasetError, match="input shape"):
        check_compatible(spec, synthetic_blobs(1, 8, 2, (13,), num_classes=4))
    with pytest.raises(DatasetError, match="class count"):
        check_compatible(spec, synthetic_blobs(1, 8, 2, (12,), num_classes=5))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_matches_cpu(job: tuple[JobSpec, Dataset]) -> None:
    spec, ds = job
    cpu = _trajectory(spec, ds, "int8")
    for gemm in ("int8", "fp32"):
        backend = select_backend("cuda", gemm)
        state = get_family("mlp").init_state(spec, SEED)
        got = []
        for i in range(1, 6):
            state = compute_step(spec, ds, state, SEED, i, backend)
            got.append(_h(spec, state))
        assert got == cpu, gemm


def test_cnn_job_runs_through_the_engine() -> None:
    ds = synthetic_blobs(b"\x06" * 32, 32, 8, (1, 6, 6), num_classes=3)
    spec = JobSpec.from_dict(
        {
            "family": "cnn",
            "dataset": dataset_id(dataset_to_bytes(ds)),
            "input_shape": [1, 6, 6],
            "num_classes": 3,
            "hidden": [4],
            "batch_size": 4,
            "lr_shift": 4,
            "momentum_shift": None,
            "steps": 3,
        }
    )
    runs = []
    for gemm in ("int8", "fp32"):
        backend = select_backend("cpu", gemm)
        state = get_family("cnn").init_state(spec, SEED)
        hashes = []
        for i in (1, 2, 3):
            state = compute_step(spec, ds, state, SEED, i, backend)
            hashes.append(_h(spec, state))
        runs.append(hashes)
    assert runs[0] == runs[1] and len(set(runs[0])) == 3

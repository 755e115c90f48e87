"""MLP family: determinism (GEMM paths, threads, runs, devices), purity, cost, usefulness."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pouw.arith import select_backend
from pouw.datasets import Dataset, load_digits
from pouw.errors import PouwError
from pouw.families import get_family
from pouw.prng import prng_bytes
from pouw.spec import JobSpec
from pouw.state import state_hash

DATASET = "0x" + "11" * 32
MLP = get_family("mlp")
CPU_INT8 = select_backend("cpu", "int8")
CPU_FP32 = select_backend("cpu", "fp32")


def small_spec(**over: object) -> JobSpec:
    d: dict = dict(family="mlp", dataset=DATASET, input_shape=[40], num_classes=7, hidden=[48, 24],
                   batch_size=16, lr_shift=3, momentum_shift=None, steps=100)
    d.update(over)
    return JobSpec.from_dict(d)


def prng_batches(spec: JobSpec, steps: int, label: bytes = b"test") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches from the portable PRNG, so pinned hashes never depend on torch's generators."""
    n = spec.batch_size * spec.input_shape[0]
    out = []
    for i in range(steps):
        raw = prng_bytes(label + i.to_bytes(4, "big"), n + spec.batch_size)
        x = torch.frombuffer(bytearray(raw[:n]), dtype=torch.int8).reshape(spec.batch_size, -1)
        y = torch.tensor([b % spec.num_classes for b in raw[n:]], dtype=torch.int64)
        out.append((x.clamp(-127, 127), y))
    return out


def run(spec: JobSpec, backend, steps: int = 12) -> list[bytes]:  # type: ignore[no-untyped-def]
    state = MLP.init_state(spec, b"seed")
    hashes = []
    for x, y in prng_batches(spec, steps):
        state = MLP.step(spec, state, x, y, backend)
        hashes.append(state_hash(state))
    return hashes


def test_init_deterministic_and_bounded() -> None:
    spec = small_spec()
    a, b, c = MLP.init_state(spec, b"seed"), MLP.init_state(spec, b"seed"), MLP.init_state(spec, b"other")
    assert state_hash(a) == state_hash(b) != state_hash(c)
    bound = int((3 * 2 ** (2 * spec.weight_frac_bits) // 40) ** 0.5) + 1
    assert int(a["w0"].abs().max()) <= bound and int(a["w0"].abs().max()) > bound // 2
    assert int(a["b0"].abs().max()) == 0
    assert a["w0"].dtype == torch.int32 and a["w0"].shape == (40, 48)


def test_step_is_pure_and_moves_weights() -> None:
    spec = small_spec()
    state = MLP.init_state(spec, b"seed")
    before = {k: v.clone() for k, v in state.items()}
    x, y = prng_batches(spec, 1)[0]
    new = MLP.step(spec, state, x, y, CPU_INT8)
    for k in state:
        assert torch.equal(state[k], before[k])
        assert new[k].dtype == state[k].dtype and new[k].shape == state[k].shape
    assert any(not torch.equal(new[k], state[k]) for k in state)
    assert list(new) == list(state)


@pytest.mark.parametrize("momentum", [None, 3])
def test_gemm_paths_bitwise_identical(momentum: int | None) -> None:
    spec = small_spec(momentum_shift=momentum)
    assert run(spec, CPU_INT8) == run(spec, CPU_FP32)


def test_large_k_chunked_fp32_identical() -> None:
    spec = small_spec(input_shape=[1500], hidden=[20], batch_size=8)  # K = 1500 > one fp32 chunk
    assert run(spec, CPU_INT8, 4) == run(spec, CPU_FP32, 4)


def test_repeated_runs_and_threads_identical() -> None:
    spec = small_spec()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(spec, CPU_INT8)
        torch.set_num_threads(2)
        two = run(spec, CPU_INT8)
    finally:
        torch.set_num_threads(old)
    assert one == two == run(spec, CPU_INT8)


def test_fresh_process_single_thread_identical() -> None:
    """A separate interpreter with one thread reproduces the same final hash."""
    spec = small_spec()
    want = run(spec, CPU_FP32, 6)[-1].hex()
    code = textwrap.dedent(
        """
        import torch
        torch.set_num_threads(1)
        from tests.pouw.test_mlp import run, small_spec, CPU_INT8
        print(run(small_spec(), CPU_INT8, 6)[-1].hex())
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == want


def test_pinned_trajectory_hash() -> None:
    """Pins the arithmetic: any change to rounding, quantisation or layout changes this hash."""
    spec = small_spec(momentum_shift=2)
    assert run(spec, CPU_INT8, 5)[-1].hex() == PINNED_MLP_HASH


PINNED_MLP_HASH = "c6a957539c389029f438afd1a8d8c05ad64ef28ceb3564b83cb86b1af7a6b3be"  # BLAKE3 state hash (keccak of the same bytes: 6d9ad5e8...)


def test_logits_independent_of_batch_mates() -> None:
    spec = small_spec()
    state = MLP.init_state(spec, b"seed")
    x, _ = prng_batches(spec, 1)[0]
    full = MLP.logits(spec, state, x, CPU_INT8)
    assert full.dtype == torch.int32 and full.shape == (16, 7)
    for i in (0, 5, 15):
        assert torch.equal(MLP.logits(spec, state, x[i : i + 1], CPU_FP32)[0], full[i])


def test_invalid_batch_shape() -> None:
    spec = small_spec()
    state = MLP.init_state(spec, b"seed")
    x, y = prng_batches(spec, 1)[0]
    with pytest.raises(PouwError):
        MLP.step(spec, state, x[:-1], y[:-1], CPU_INT8)
    with pytest.raises(PouwError):
        MLP.step(spec, state, x.to(torch.int32), y, CPU_INT8)
    with pytest.raises(PouwError):
        MLP.step(spec, state, x, y.to(torch.int32), CPU_INT8)


def test_work_units_formula() -> None:
    spec = small_spec()  # dims 40 -> 48 -> 24 -> 7, B = 16, no momentum
    b = 16
    layers = [(40, 48, 4), (48, 24, 6), (24, 7, 6)]
    flops = 4 * b * 7 + sum(m * b * k * n + 2 * b * n + 2 * (k * n + n) for k, n, m in layers)
    acts = sum(b * (k + n) for k, n, _ in layers)
    params = sum(k * n + n for k, n, _ in layers)
    fixed = 76_000_000 * 3 + 88_000_000  # docs/protocol.md §6
    want = flops + 1900 * acts + 940 * params + fixed
    assert MLP.work_units(spec) == want
    spec_m = small_spec(momentum_shift=4)  # momentum: 2 more flops and one more state element per parameter
    assert MLP.work_units(spec_m) == want + (2 + 940) * params
    big = small_spec(input_shape=[784], hidden=[1024, 1024], num_classes=10, batch_size=256)
    assert MLP.work_units(big) == 6_899_580_876  # the example of §6


def shuffled_digits(seed: int = 1) -> Dataset:
    """sklearn digits with a seeded shuffle: 1497 train / 300 test (the file's tail split is
    harder than the rest of the set; even float32 tops out near 93% on it)."""
    ds = load_digits()
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    p = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return Dataset(x[p[:1497]], y[p[:1497]], x[p[1497:]], y[p[1497:]], 10)


@pytest.mark.slow
def test_digits_useful_and_close_to_float32() -> None:
    ds = shuffled_digits()
    steps, bsz = 1500, 32
    spec = JobSpec.from_dict(dict(family="mlp", dataset=DATASET, input_shape=[64], num_classes=10, hidden=[128],
                                  batch_size=bsz, lr_shift=2, momentum_shift=None, steps=steps))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 1497, (bsz,), generator=gen) for _ in range(steps)]
    state = MLP.init_state(spec, b"digits")
    for ix in batches:
        state = MLP.step(spec, state, ds.x_train[ix], ds.y_train[ix], CPU_INT8)
    exact_acc = float((MLP.logits(spec, state, ds.x_test, CPU_INT8).argmax(1) == ds.y_test).float().mean())

    model = MLP.to_torch(spec, MLP.init_state(spec, b"digits"))  # same initial weights, float32
    opt = torch.optim.SGD(model.parameters(), lr=2.0**-spec.lr_shift)
    xs, xt = ds.x_train.float() / 128, ds.x_test.float() / 128
    for ix in batches:
        loss = torch.nn.functional.cross_entropy(model(xs[ix]), ds.y_train[ix])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        float_acc = float((model(xt).argmax(1) == ds.y_test).float().mean())
    print(f"\ndigits MLP 64-128-10, {steps} steps, batch {bsz}: exact {exact_acc:.4f}, float32 {float_acc:.4f}")
    assert exact_acc >= 0.95
    assert abs(exact_acc - float_acc) <= 0.02


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("gemm", ["int8", "fp32"])
def test_cuda_matches_cpu(gemm: str) -> None:
    spec = small_spec(momentum_shift=3)
    assert run(spec, select_backend("cuda", gemm)) == run(spec, CPU_INT8)
    big = small_spec(input_shape=[784], hidden=[1024, 1024], num_classes=10, batch_size=64)
    assert run(big, select_backend("cuda", gemm), 3) == run(big, CPU_INT8, 3)

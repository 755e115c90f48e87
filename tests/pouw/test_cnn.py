"""CNN family: im2col exactness, determinism across paths/threads/devices, learning on digits."""
from __future__ import annotations

import pytest
import torch

from pouw.arith import select_backend
from pouw.datasets import Dataset, load_digits
from pouw.families import get_family
from pouw.prng import prng_bytes
from pouw.spec import JobSpec
from pouw.state import state_hash

DATASET = "0x" + "22" * 32
CNN = get_family("cnn")
CPU_INT8 = select_backend("cpu", "int8")
CPU_FP32 = select_backend("cpu", "fp32")


def small_spec(**over: object) -> JobSpec:
    d: dict = dict(family="cnn", dataset=DATASET, input_shape=[2, 7, 6], num_classes=5, hidden=[4, 6],
                   batch_size=8, lr_shift=3, momentum_shift=None, steps=100, kernel_size=3, stride=1)
    d.update(over)
    return JobSpec.from_dict(d)


def prng_batches(spec: JobSpec, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    n = spec.batch_size
    per = 1
    for d in spec.input_shape:
        per *= d
    out = []
    for i in range(steps):
        raw = prng_bytes(b"cnn" + i.to_bytes(4, "big"), n * per + n)
        x = torch.frombuffer(bytearray(raw[: n * per]), dtype=torch.int8).reshape(n, *spec.input_shape)
        y = torch.tensor([b % spec.num_classes for b in raw[n * per :]], dtype=torch.int64)
        out.append((x.clamp(-127, 127), y))
    return out


def run(spec: JobSpec, backend, steps: int = 8) -> list[bytes]:  # type: ignore[no-untyped-def]
    state = CNN.init_state(spec, b"seed")
    hashes = []
    for x, y in prng_batches(spec, steps):
        state = CNN.step(spec, state, x, y, backend)
        hashes.append(state_hash(state))
    return hashes


def test_layout_and_geometry() -> None:
    spec = small_spec(stride=2)
    assert CNN.geometry(spec) == [(7, 6, 2), (4, 3, 4), (2, 2, 6)]
    assert [(n, s) for n, _, s in CNN.layout(spec)] == [
        ("w0", (18, 4)), ("b0", (4,)), ("w1", (36, 6)), ("b1", (6,)), ("w2", (24, 5)), ("b2", (5,))
    ]


def test_exact_conv_matches_float_conv_on_integers() -> None:
    """With weights that quantise without rounding, the exact first-layer output equals F.conv2d."""
    spec = small_spec(hidden=[3], stride=2, weight_frac_bits=8, act_frac_bits=8, input_frac_bits=0)
    state = CNN.init_state(spec, b"seed")
    g = torch.Generator().manual_seed(3)
    w = torch.randint(-127, 128, state["w0"].shape, generator=g, dtype=torch.int32)
    w[0, 0] = 127  # max |w| = 127 -> shift 0, so w quantises to itself
    state["w0"] = w
    x = torch.randint(-5, 6, (2, 2, 7, 6), generator=g, dtype=torch.int8)
    x[0, 0, 0, 0] = 127
    model = CNN.to_torch(spec, state)
    conv = model.convs[0]
    want = torch.relu(conv(x.double().float()) * 256).round()  # value * 2**8 (act_frac_bits)
    _, saved, _ = CNN._forward(spec, state, x, CPU_INT8, per_row=False)
    got = torch.relu(saved[0][2]).permute(0, 3, 1, 2).to(torch.float64)
    assert torch.equal(got, want.to(torch.float64))


def test_update_direction_matches_float_autograd() -> None:
    """Every parameter's exact update points the same way as a float32 SGD step's."""
    spec = small_spec(stride=1, lr_shift=6)
    state = CNN.init_state(spec, b"seed")
    x, y = prng_batches(spec, 1)[0]
    new = CNN.step(spec, state, x, y, CPU_INT8)
    model = CNN.to_torch(spec, state)
    loss = torch.nn.functional.cross_entropy(model(x.float() / 2**spec.input_frac_bits), y)
    loss.backward()
    grads = [p.grad for conv in model.convs for p in (conv.weight, conv.bias)] + [model.head.weight.grad, model.head.bias.grad]
    names = ["w0", "b0", "w1", "b1", "w2", "b2"]
    k = spec.kernel_size
    for name, g in zip(names, grads):
        delta = (state[name] - new[name]).to(torch.float64)  # = lr * gradient, in weight units
        if name in ("w0", "w1"):
            cin = state[name].shape[0] // (k * k)
            g = g.permute(2, 3, 1, 0).reshape(k * k * cin, -1)
        elif name == "w2":
            g = g.t()
        cos = torch.nn.functional.cosine_similarity(delta.flatten(), g.to(torch.float64).flatten(), dim=0)
        assert cos > 0.97, (name, float(cos))


@pytest.mark.parametrize("momentum", [None, 2])
@pytest.mark.parametrize("stride", [1, 2])
def test_gemm_paths_bitwise_identical(momentum: int | None, stride: int) -> None:
    spec = small_spec(momentum_shift=momentum, stride=stride)
    assert run(spec, CPU_INT8) == run(spec, CPU_FP32)


def test_kernel_sizes_and_threads() -> None:
    old = torch.get_num_threads()
    for k in (1, 5):
        spec = small_spec(kernel_size=k)
        try:
            torch.set_num_threads(1)
            one = run(spec, CPU_FP32, 4)
            torch.set_num_threads(2)
            two = run(spec, CPU_INT8, 4)
        finally:
            torch.set_num_threads(old)
        assert one == two


def test_pinned_trajectory_hash() -> None:
    spec = small_spec(momentum_shift=3, stride=2)
    assert run(spec, CPU_INT8, 4)[-1].hex() == PINNED_CNN_HASH


PINNED_CNN_HASH = "7dc5ce151db42acc56b7d5f50364259cd49538808929db27bfddc374e576f4d8"


def test_logits_independent_of_batch_mates() -> None:
    spec = small_spec()
    state = CNN.init_state(spec, b"seed")
    x, _ = prng_batches(spec, 1)[0]
    full = CNN.logits(spec, state, x, CPU_INT8)
    for i in (0, 7):
        assert torch.equal(CNN.logits(spec, state, x[i : i + 1], CPU_FP32)[0], full[i])


def test_work_units_formula() -> None:
    spec = small_spec(stride=2)  # geometry (7,6,2) -> (4,3,4) -> (2,2,6); head 24 -> 5
    b = 8
    layers = [(b * 12, 18, 4, 4), (b * 4, 36, 6, 6), (b, 24, 5, 6)]
    flops = 4 * b * 5 + sum(mult * m * k * n + 2 * m * n + 2 * (k * n + n) for m, k, n, mult in layers)
    conv_acts = sum(m * (k + n) for m, k, n, _ in layers[:2])
    dense_acts = sum(m * (k + n) for m, k, n, _ in layers[2:])
    params = sum(k * n + n for m, k, n, _ in layers)
    want = (flops + 1900 * dense_acts + 2900 * conv_acts + 940 * params  # docs/protocol.md §6
            + 76_000_000 * 1 + 560_000_000 * 2 + 88_000_000)
    assert CNN.work_units(spec) == want


@pytest.mark.slow
def test_digits_cnn_learns() -> None:
    ds = load_digits((1, 8, 8))
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    p = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    ds = Dataset(x[p[:1497]], y[p[:1497]], x[p[1497:]], y[p[1497:]], 10)
    spec = JobSpec.from_dict(dict(family="cnn", dataset=DATASET, input_shape=[1, 8, 8], num_classes=10, hidden=[8, 16],
                                  batch_size=32, lr_shift=3, momentum_shift=None, steps=400, stride=2))
    gen = torch.Generator().manual_seed(0)
    state = CNN.init_state(spec, b"digits")
    for _ in range(spec.steps):
        ix = torch.randint(0, 1497, (32,), generator=gen)
        state = CNN.step(spec, state, ds.x_train[ix], ds.y_train[ix], CPU_INT8)
    acc = float((CNN.logits(spec, state, ds.x_test, CPU_INT8).argmax(1) == ds.y_test).float().mean())
    print(f"\ndigits CNN 8,16 stride 2, 400 steps: exact accuracy {acc:.4f}")
    assert acc >= 0.8


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("gemm", ["int8", "fp32"])
def test_cuda_matches_cpu(gemm: str) -> None:
    for spec in (small_spec(momentum_shift=2), small_spec(stride=2, kernel_size=5)):
        assert run(spec, select_backend("cuda", gemm)) == run(spec, CPU_INT8)

"""Exact evaluation: identical metrics on every path and chunking; export agrees with it."""
from __future__ import annotations

import math

import pytest
import torch

import pouw.evaluate as ev
from pouw.arith import select_backend
from pouw.datasets import Dataset, load_digits
from pouw.errors import PouwError
from pouw.evaluate import Metrics, evaluate, export_torch, predictions
from pouw.families import get_family
from pouw.spec import JobSpec

DATASET = "0x" + "33" * 32
CPU_INT8 = select_backend("cpu", "int8")
CPU_FP32 = select_backend("cpu", "fp32")


def digits(shape: tuple[int, ...]) -> Dataset:
    ds = load_digits(shape)
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    p = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    return Dataset(x[p[:1497]], y[p[:1497]], x[p[1497:]], y[p[1497:]], 10)


def trained(family: str, steps: int) -> tuple[JobSpec, dict, Dataset]:
    shape = (64,) if family == "mlp" else (1, 8, 8)
    spec = JobSpec.from_dict(dict(family=family, dataset=DATASET, input_shape=list(shape), num_classes=10,
                                  hidden=[64] if family == "mlp" else [8, 16], batch_size=32, lr_shift=3,
                                  momentum_shift=None, steps=steps, stride=2))
    ds = digits(shape)
    fam = get_family(family)
    state = fam.init_state(spec, b"eval")
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        ix = torch.randint(0, len(ds.y_train), (32,), generator=gen)
        state = fam.step(spec, state, ds.x_train[ix], ds.y_train[ix], CPU_INT8)
    return spec, state, ds


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def model(request: pytest.FixtureRequest) -> tuple[JobSpec, dict, Dataset]:
    return trained(request.param, 300)


def test_metrics_identical_on_both_paths_and_any_chunking(model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    spec, state, ds = model
    a = evaluate(spec, state, ds.x_test, ds.y_test, CPU_INT8)
    b = evaluate(spec, state, ds.x_test, ds.y_test, CPU_FP32)
    monkeypatch.setattr(ev, "EVAL_CHUNK", 7)
    c = evaluate(spec, state, ds.x_test, ds.y_test, CPU_INT8)
    assert a == b == c
    assert a.total == 300 and 0 <= a.correct <= 300
    assert a.accuracy_ppm == (a.correct * 10**6 + 150) // 300
    assert isinstance(a.accuracy_ppm, int) and isinstance(a.loss_milli, int)
    print(f"\n{spec.family}: {a.to_dict()}")
    assert a.accuracy > 0.8


def test_loss_close_to_float_cross_entropy(model) -> None:  # type: ignore[no-untyped-def]
    spec, state, ds = model
    m = evaluate(spec, state, ds.x_test, ds.y_test, CPU_INT8)
    z = get_family(spec.family).logits(spec, state, ds.x_test, CPU_INT8).to(torch.float64) / 2**spec.act_frac_bits
    float_loss = float(torch.nn.functional.cross_entropy(z, ds.y_test))
    assert m.loss == pytest.approx(float_loss, abs=0.02, rel=0.05)


def test_export_agrees_with_exact_argmax(model) -> None:  # type: ignore[no-untyped-def]
    spec, state, ds = model
    exact = predictions(get_family(spec.family).logits(spec, state, ds.x_test, CPU_INT8))
    net = export_torch(spec, state)
    with torch.no_grad():
        out = net(ds.x_test.float() / 2**spec.input_frac_bits)
    agree = float((out.argmax(1) == exact).float().mean())
    print(f"\n{spec.family}: export/exact argmax agreement {agree:.4f}")
    assert agree >= 0.98


def test_predictions_tie_break_first_index() -> None:
    z = torch.tensor([[3, 5, 5], [7, 7, 7], [-1, -2, -1]], dtype=torch.int32)
    assert predictions(z).tolist() == [1, 0, 0]


def test_loss_rule_examples() -> None:
    # uniform logits over 4 classes: loss = ln 4 exactly up to the fixed-point floor
    z = torch.zeros(2, 4, dtype=torch.int32)
    losses = ev.example_losses(z, torch.tensor([0, 3]), 16)
    assert all(abs(v / 2**20 - math.log(4)) < 1e-5 for v in losses.tolist())
    # a confidently wrong prediction: the target's table entry is 0 (clamped to 1) -> large but exact loss
    z = torch.tensor([[0, 100 << 16, 0], [5 << 16, 0, 0]], dtype=torch.int32)
    losses = ev.example_losses(z, torch.tensor([0, 1]), 16).tolist()
    assert abs(losses[0] / 2**20 - 30 * math.log(2)) < 1e-4  # ln(2**30 / 1)
    assert abs(losses[1] / 2**20 - math.log(math.exp(5) + 2)) < 1e-3  # logits (5, 0, 0), label 1


def test_invalid_empty_or_mismatched() -> None:
    spec, state, ds = trained("mlp", 1)
    with pytest.raises(PouwError):
        evaluate(spec, state, ds.x_test[:0], ds.y_test[:0], CPU_INT8)
    with pytest.raises(PouwError):
        evaluate(spec, state, ds.x_test[:5], ds.y_test[:4], CPU_INT8)


def test_metrics_float_views() -> None:
    m = Metrics(correct=3, total=4, accuracy_ppm=750000, loss_sum_q20=0, loss_micro=123456, loss_milli=123)
    assert m.accuracy == 0.75 and m.loss == 0.123456


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_metrics_match_cpu(model) -> None:  # type: ignore[no-untyped-def]
    spec, state, ds = model
    want = evaluate(spec, state, ds.x_test, ds.y_test, CPU_INT8)
    for gemm in ("int8", "fp32"):
        assert evaluate(spec, state, ds.x_test, ds.y_test, select_backend("cuda", gemm)) == want


def test_an_exported_model_with_a_feature_scale_takes_float_features() -> None:
    """export_torch(..., feature_scale) quantises float inputs exactly as quantize_int8 did
    (float64, round half to even, clipped), then runs the plain exported model."""
    import numpy as np

    from pouw.datasets import quantize_int8, quantization_scale
    from pouw.evaluate import FloatFeatures, export_torch
    from pouw.families import get_family
    from pouw.prng import derive_key
    from pouw.spec import JobSpec

    spec = JobSpec.from_dict({"family": "mlp", "dataset": "0x" + "00" * 32, "input_shape": [5], "num_classes": 3,
                              "hidden": [8], "batch_size": 4, "lr_shift": 3, "momentum_shift": None, "steps": 10})
    state = get_family("mlp").init_state(spec, derive_key(b"\x01" * 32, b"test"))
    rng = np.random.default_rng(5)
    train = rng.normal(size=(50, 5)) * 300.0
    scale = quantization_scale(train)
    ties = (np.arange(-6, 6) + 0.5)[:, None] / scale * np.ones((1, 5))  # x * scale lands on .5: half to even
    x = np.concatenate([rng.normal(size=(40, 5)) * 400.0, ties])  # some beyond the training range: clipped
    wrapped = export_torch(spec, state, feature_scale=scale)
    plain = export_torch(spec, state)
    assert isinstance(wrapped, FloatFeatures) and not isinstance(plain, FloatFeatures)
    q = quantize_int8(x, scale_from=train)
    with torch.no_grad():
        expected = plain(torch.from_numpy(q).float() * 2.0 ** -spec.input_frac_bits)
        got = wrapped(torch.from_numpy(x))
    assert torch.equal(got, expected)
    assert set(wrapped.state_dict()) == {"model." + k for k in plain.state_dict()}
    # one scale per feature element
    from pouw.datasets import feature_scales, quantize_features

    scales = feature_scales(train * np.array([1.0, 10.0, 100.0, 0.1, 0.01]))
    per = export_torch(spec, state, feature_scale=scales)
    q = quantize_features(x, scales)
    with torch.no_grad():
        assert torch.equal(per(torch.from_numpy(x)), plain(torch.from_numpy(q).float() * 2.0 ** -spec.input_frac_bits))

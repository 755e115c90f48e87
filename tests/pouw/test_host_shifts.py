"""Host-int shifts (the CPU form) against device-tensor shifts (the CUDA form), on CPU.

A CPU step reads its data-dependent shifts back as Python ints and takes shortcuts that
bounds allow (pouw.arith.host_shifts); CUDA keeps them as 0-dim device tensors. Both
must give the same bits: these tests run the tensor form on CPU and compare, step by
step and helper by helper, including extreme fixed-point formats where saturation,
negative shifts and capped shifts occur.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import pouw.arith as arith
import pouw.prng as prng
from pouw.arith import INT32_MAX, PARAM_MAX, quantize_int8, round_shift, round_shift_bounded, select_backend, sgd_update
from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, load_digits, synthetic_blobs
from pouw.engine import compute_step
from pouw.families import get_family
from pouw.spec import JobSpec
from pouw.state import serialize_state, state_hash

SEED = b"\x5e" * 32


def ref_round_shift(x: int, s: int) -> int:
    return x << -s if s <= 0 else (2 * x + (1 << s)) // (1 << (s + 1))


def _trajectory(spec: JobSpec, ds: Dataset, gemm: str, steps: int) -> list[bytes]:
    backend = select_backend("cpu", gemm)
    fam = get_family(spec.family)
    state = fam.init_state(spec, b"\x01" * 32)
    out = []
    for i in range(1, steps + 1):
        state = compute_step(spec, ds, state, SEED, i, backend)
        assert not any(t.is_inference() for t in state.values())  # ordinary tensors, modifiable in place
        out.append(state_hash(serialize_state(spec, state)))
    return out


SPECS = [
    dict(input_shape=[64], num_classes=10, hidden=[128], batch_size=32, lr_shift=3, momentum_shift=3),
    dict(input_shape=[64], num_classes=10, hidden=[32, 16], batch_size=24, lr_shift=1, momentum_shift=1,
         act_frac_bits=8, weight_frac_bits=8, input_frac_bits=0),
    dict(input_shape=[12], num_classes=4, hidden=[16], batch_size=7, lr_shift=0, momentum_shift=16,
         act_frac_bits=24, weight_frac_bits=28, input_frac_bits=15),
    dict(input_shape=[12], num_classes=4, hidden=[], batch_size=5, lr_shift=30, momentum_shift=None,
         act_frac_bits=20, weight_frac_bits=10),
    dict(input_shape=[12], num_classes=4, hidden=[9], batch_size=1, lr_shift=2, momentum_shift=2,
         act_frac_bits=9, weight_frac_bits=27),
    dict(input_shape=[12], num_classes=4, hidden=[16], batch_size=8, lr_shift=0, momentum_shift=1,
         act_frac_bits=8, weight_frac_bits=8),
]


@pytest.mark.parametrize("gemm", ["int8", "fp32"])
@pytest.mark.parametrize("which", range(len(SPECS)))
def test_step_host_and_tensor_shifts_identical(which: int, gemm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    over = SPECS[which]
    shape = tuple(over["input_shape"])
    ds = load_digits() if shape == (64,) else synthetic_blobs(b"\x07" * 32, 300, 50, shape, int(over["num_classes"]))
    spec = JobSpec.from_dict(dict(family="mlp", dataset=dataset_id(dataset_to_bytes(ds)), steps=100, **over))
    host = _trajectory(spec, ds, gemm, 40)
    monkeypatch.setattr(arith, "HOST_SHIFTS_ON_CPU", False)
    assert _trajectory(spec, ds, gemm, 40) == host


def test_round_shift_bounded_matches_reference() -> None:
    rng = random.Random(3)
    for dtype, top in ((torch.int32, INT32_MAX - 1), (torch.int64, 2**62)):
        for bound in (1, 127, 2**20, PARAM_MAX, top):
            vals = [rng.randint(-bound, bound) for _ in range(200)] + [bound, -bound, 0, 1, -1]
            x = torch.tensor(vals, dtype=dtype)
            for s in (1, 2, 5, 17, 30, 31, 32, 40, 62, 63, 70):
                got = round_shift_bounded(x, s, bound)
                assert got.dtype == dtype
                assert got.tolist() == [ref_round_shift(v, s) for v in vals]
                if s < (62 if dtype == torch.int64 else 31):
                    assert torch.equal(got, round_shift(x, s))
    x = torch.tensor([3, -3, 0], dtype=torch.int32)
    assert round_shift_bounded(x, -4, 3).tolist() == [48, -48, 0]
    y = round_shift_bounded(x, 0, 3)
    assert y.tolist() == x.tolist() and y.data_ptr() != x.data_ptr()  # always a new tensor


def test_quantize_int8_host_matches_tensor_form() -> None:
    rng = random.Random(5)
    cases = [torch.zeros(5, dtype=torch.int32), torch.tensor([INT32_MAX, -INT32_MAX], dtype=torch.int32),
             torch.tensor([2**62, -(2**62), 1], dtype=torch.int64)]
    for top in (1, 100, 255, 2**20, 2**31 - 1):
        cases.append(torch.tensor([rng.randint(-top, top) for _ in range(300)], dtype=torch.int32))
    for s in (1, 2, 9, 24):  # maxima just below, at and above the value that rounds up to 128
        edge = (1 << (s + 7)) - (1 << (s - 1))
        for m in (edge - 1, edge, edge + 1, (1 << (s + 7)) - 1):
            cases += [torch.tensor([m, -m, 3], dtype=torch.int32), torch.tensor([-m, 1], dtype=torch.int64)]
    for x in cases:
        q, s = quantize_int8(x)
        qh, sh = quantize_int8(x, host=True)
        assert isinstance(sh, int) and sh == int(s) and torch.equal(qh, q)


@pytest.mark.parametrize("batch", [1, 3, 4, 100, 256])
@pytest.mark.parametrize("frac", [-40, -20, 0, 5, 17, 40, 70])
@pytest.mark.parametrize("momentum", [None, 1, 7, 16])
def test_sgd_update_host_matches_tensor_form(batch: int, frac: int, momentum: int | None) -> None:
    rng = random.Random(batch * 1000 + frac)
    n = 300
    g = [rng.randint(-(127**2) * batch, 127**2 * batch) >> rng.randint(0, 20) for _ in range(n)]
    g += [-(127**2) * batch, 127**2 * batch, 0]
    w = [rng.randint(-PARAM_MAX, PARAM_MAX) >> rng.randint(0, 30) for _ in range(n)] + [PARAM_MAX, -PARAM_MAX, 5]
    v = [rng.randint(-PARAM_MAX, PARAM_MAX) >> rng.randint(0, 30) for _ in range(n)] + [-PARAM_MAX, PARAM_MAX, 0]
    wt, vt, gt = (torch.tensor(a, dtype=torch.int32) for a in (w, v, g))
    kw = dict(weight_frac_bits=24, lr_shift=3, batch_size=batch, momentum=None if momentum is None else vt,
              momentum_shift=momentum)
    want_p, want_v = sgd_update(wt, gt, torch.tensor(frac), **kw)  # type: ignore[arg-type]
    for bound in (None, 127**2 * batch, 2**31 - 1):
        got_p, got_v = sgd_update(wt, gt, frac, grad_bound=bound, **kw)  # type: ignore[arg-type]
        assert got_p.dtype == torch.int32 and torch.equal(got_p, want_p)
        assert (got_v is None) == (want_v is None)
        if want_v is not None:
            assert torch.equal(got_v, want_v)
    # inputs untouched
    assert wt.tolist() == w and vt.tolist() == v and gt.tolist() == g


def test_batch_indices_array_matches_list() -> None:
    for n in (1, 2, 3, 7, 1500, 2**20, 2**40 + 3, 2**63):
        for step in (1, 2, 99):
            arr = prng.batch_indices_array(SEED, step, 37, n)
            assert arr.dtype == np.int64 and arr.tolist() == prng.batch_indices(SEED, step, 37, n)


def test_batch_indices_array_after_a_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    # make rejections common: accept only words below 2**63 (about half of them)
    monkeypatch.setattr(prng, "_accept_limit", lambda n: (1 << 63) - ((1 << 63) % n))
    arr = prng.batch_indices_array(SEED, 4, 50, 1000)
    assert arr.tolist() == prng.batch_indices(SEED, 4, 50, 1000)


def test_stream_blocks_match_public_keccak() -> None:
    key = bytes(range(32))
    for first, last in ((0, 0), (0, 1), (0, 2), (5, 40), (2**64 - 3, 2**64 - 1)):
        want = b"".join(prng.keccak256(key + b.to_bytes(8, "big")) for b in range(first, last + 1))
        assert prng._stream_blocks(key, first, last) == want
    with pytest.raises(ValueError):
        prng._stream_blocks(key, 2**64 - 2, 2**64)

"""MLP classifier: dense ReLU layers and a softmax cross-entropy head (docs/protocol.md §4.1).

Layer sizes ``d_0 = prod(input_shape)``, ``d_1..d_L-1 = hidden``, ``d_L = num_classes``.
State, in canonical order: ``w0, b0, w1, b1, ...`` (``w_l`` int32 [d_l, d_l+1], ``b_l``
int32 [d_l+1], weight_frac_bits fractional bits), then with momentum ``vw0, vb0, ...``
of the same shapes. The dense building blocks here are shared with the CNN head.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import isqrt, prod

import torch
from torch import Tensor

from pouw.arith import (
    INT8_MAX,
    MAX_GEMM_K,
    PROB_FRAC_BITS,
    Backend,
    int_matmul,
    quantize_int8,
    rescale_sat32,
    round_shift,
    saturate32,
    sgd_update,
    softmax_xent_grad,
)
from pouw.errors import PouwError, SpecError
from pouw.families import State, TensorLayout
from pouw.prng import derive_key, uniform_below
from pouw.spec import JobSpec, Limits
from pouw.state import encoded_size

__all__ = ["MLP", "MLPFamily", "init_weight", "Quantised", "dense_forward", "dense_backward", "update_params", "check_batch"]

INIT_LABEL = b"pouw/init/"


# --------------------------------------------------------------------------------------
# Shared building blocks (also used by the CNN)
# --------------------------------------------------------------------------------------


def init_weight(seed: bytes, name: str, fan_in: int, shape: tuple[int, ...], frac_bits: int) -> Tensor:
    """Uniform integers in [-a, a], ``a = isqrt(3 * 2**(2F) // fan_in)`` (std ~ 1/sqrt(fan_in)).

    Drawn with ``uniform_below(derive_key(seed, b"pouw/init/" + name), 2a + 1, numel)``
    minus ``a``, filled row-major.
    """
    a = isqrt((3 << (2 * frac_bits)) // fan_in)
    numel = prod(shape)
    draws = uniform_below(derive_key(seed, INIT_LABEL + name.encode("ascii")), 2 * a + 1, numel)
    t = torch.tensor(draws, dtype=torch.int64) - a
    return t.reshape(shape).to(torch.int32)


@dataclass
class Quantised:
    """An int8 block-floating-point tensor: value = q * 2**-frac (frac broadcasts over q)."""

    q: Tensor
    frac: Tensor


def quantise(x: Tensor, frac: Tensor | int, per_row: bool) -> Quantised:
    """quantize_int8 per tensor (training) or per example (evaluation); track the fraction bits."""
    dims = tuple(range(1, x.dim())) if per_row else None
    q, s = quantize_int8(x, dims)
    return Quantised(q, frac - s)


def dense_forward(a: Quantised, w: Quantised, bias: Tensor, spec: JobSpec, backend: Backend) -> Tensor:
    """Pre-activation ``z = sat32(sat32(round_shift(P, fa + fw - A)) + round_shift(b, F - A))``.

    ``P = a.q @ w.q`` exactly (int32 [M, N]); A = act_frac_bits, F = weight_frac_bits.
    """
    p = int_matmul(a.q, w.q, backend)  # [M, N]
    z = rescale_sat32(p, a.frac + w.frac - spec.act_frac_bits)
    b = round_shift(bias.to(torch.int64), spec.weight_frac_bits - spec.act_frac_bits)
    return saturate32(z.to(torch.int64) + b)


def dense_backward(
    a: Quantised, w: Quantised, g: Quantised, backend: Backend, need_input_grad: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Batch-summed gradients of one dense layer from the quantised output gradient g.

    Returns ``dW = a.q^T @ g.q`` (int32, frac a.frac + g.frac), ``db = sum_rows g.q``
    (int64, frac g.frac) and, if asked, ``dA = g.q @ w.q^T`` (int32, frac g.frac + w.frac).
    """
    dw = int_matmul(a.q.t(), g.q, backend)
    db = g.q.to(torch.int64).sum(dim=0)
    da = int_matmul(g.q, w.q.t(), backend) if need_input_grad else None
    return dw, db, da


def update_params(
    spec: JobSpec, state: State, new: State, name_w: str, name_b: str, dw: Tensor, dw_frac: Tensor, db: Tensor, db_frac: Tensor
) -> None:
    """Apply sgd_update to one layer's weight and bias (and momentum buffers) into ``new``."""
    for name, grad, frac in ((name_w, dw, dw_frac), (name_b, db, db_frac)):
        mom = state.get("v" + name) if spec.momentum_shift is not None else None
        p, v = sgd_update(
            state[name],
            grad,
            frac,
            weight_frac_bits=spec.weight_frac_bits,
            lr_shift=spec.lr_shift,
            batch_size=spec.batch_size,
            momentum=None if mom is None else mom.to(grad.device),
            momentum_shift=spec.momentum_shift,
        )
        new[name] = p
        if v is not None:
            new["v" + name] = v


def input_quantised(x: Tensor, spec: JobSpec, per_row: bool) -> Quantised:
    """Examples enter as int8 clamped to [-127, 127] with input_frac_bits (no shift)."""
    q = x.clamp(-INT8_MAX, INT8_MAX).to(torch.int8)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1) if per_row else ()
    return Quantised(q, torch.full(shape, spec.input_frac_bits, dtype=torch.int64, device=x.device))


def dense_work(m: int, k: int, n: int, first: bool, momentum: bool) -> int:
    """Work units of one dense (or im2col) layer, M rows, K inputs, N outputs (§6)."""
    mult = 4 if first else 6
    upd = 4 if momentum else 2
    return mult * m * k * n + 2 * m * n + upd * (k * n + n)


def to_device(state: State, device: torch.device) -> State:
    return {k: v.to(device) for k, v in state.items()}


def check_batch(spec: JobSpec, x: Tensor, y: Tensor) -> None:
    """A step's batch must be int8 [batch_size, *input_shape] with int64 labels [batch_size]."""
    want = (spec.batch_size, *spec.input_shape)
    if x.dtype != torch.int8 or tuple(x.shape) != want:
        raise PouwError("batch examples have the wrong dtype or shape", expected=("int8", want), got=(str(x.dtype), tuple(x.shape)))
    if y.dtype != torch.int64 or tuple(y.shape) != (spec.batch_size,):
        raise PouwError("batch labels have the wrong dtype or shape", expected=("int64", (spec.batch_size,)), got=(str(y.dtype), tuple(y.shape)))


# --------------------------------------------------------------------------------------
# The family
# --------------------------------------------------------------------------------------


class MLPFamily:
    """Dense ReLU network; see the module docstring for shapes and state order."""

    name = "mlp"

    def dims(self, spec: JobSpec) -> list[int]:
        return [prod(spec.input_shape), *spec.hidden, spec.num_classes]

    def validate(self, spec: JobSpec, limits: Limits) -> None:
        if prod(spec.input_shape) > limits.max_width:
            raise SpecError("input_shape", "too many input features", expected=f"<= {limits.max_width}", got=prod(spec.input_shape))
        if spec.batch_size > MAX_GEMM_K:
            raise SpecError("batch_size", "exceeds the exact int32 accumulation bound", expected=f"<= {MAX_GEMM_K}", got=spec.batch_size)

    def layout(self, spec: JobSpec) -> TensorLayout:
        dims = self.dims(spec)
        out: TensorLayout = []
        for l in range(len(dims) - 1):
            out.append((f"w{l}", torch.int32, (dims[l], dims[l + 1])))
            out.append((f"b{l}", torch.int32, (dims[l + 1],)))
        if spec.momentum_shift is not None:
            out += [("v" + name, dt, shape) for name, dt, shape in list(out)]
        return out

    def init_state(self, spec: JobSpec, seed: bytes) -> State:
        dims = self.dims(spec)
        state: State = {}
        for name, dtype, shape in self.layout(spec):
            if name.startswith("w"):
                state[name] = init_weight(seed, name, dims[int(name[1:])], shape, spec.weight_frac_bits)
            else:
                state[name] = torch.zeros(shape, dtype=dtype)
        return state

    def _forward(
        self, spec: JobSpec, state: State, x: Tensor, backend: Backend, per_row: bool
    ) -> tuple[Tensor, list[tuple[Quantised, Quantised, Tensor]]]:
        n_layers = len(self.dims(spec)) - 1
        a = input_quantised(x.reshape(x.shape[0], -1), spec, per_row)
        saved = []
        z = torch.empty(0)
        for l in range(n_layers):
            w = quantise(state[f"w{l}"], spec.weight_frac_bits, per_row=False)
            z = dense_forward(a, w, state[f"b{l}"], spec, backend)  # [B, d_l+1]
            saved.append((a, w, z))
            if l < n_layers - 1:
                a = quantise(torch.relu(z), spec.act_frac_bits, per_row)
        return z, saved

    def step(self, spec: JobSpec, state: State, x: Tensor, y: Tensor, backend: Backend) -> State:
        check_batch(spec, x, y)
        dev = backend.device
        state = to_device(state, dev)
        x, y = x.to(dev), y.to(dev)
        logits, saved = self._forward(spec, state, x, backend, per_row=False)
        g = quantise(softmax_xent_grad(logits, y, spec.act_frac_bits), PROB_FRAC_BITS, per_row=False)
        new: State = {}
        for l in range(len(saved) - 1, -1, -1):
            a, w, _ = saved[l]
            dw, db, da = dense_backward(a, w, g, backend, need_input_grad=l > 0)
            update_params(spec, state, new, f"w{l}", f"b{l}", dw, a.frac + g.frac, db, g.frac)
            if da is not None:
                z_prev = saved[l - 1][2]
                da.masked_fill_(z_prev <= 0, 0)  # ReLU' (da is a fresh tensor)
                g = quantise(da, g.frac + w.frac, per_row=False)
        return {name: new[name] for name, _, _ in self.layout(spec)}

    def logits(self, spec: JobSpec, state: State, x: Tensor, backend: Backend) -> Tensor:
        z, _ = self._forward(spec, to_device(state, backend.device), x.to(backend.device), backend, per_row=True)
        return z

    def work_units(self, spec: JobSpec) -> int:
        dims = self.dims(spec)
        b = spec.batch_size
        total = 4 * b * spec.num_classes
        for l in range(len(dims) - 1):
            total += dense_work(b, dims[l], dims[l + 1], l == 0, spec.momentum_shift is not None)
        return total

    def state_bytes(self, spec: JobSpec) -> int:
        return encoded_size(self.layout(spec))

    def to_torch(self, spec: JobSpec, state: State) -> torch.nn.Module:
        dims = self.dims(spec)
        scale = 2.0 ** -spec.weight_frac_bits
        layers: list[torch.nn.Module] = [torch.nn.Flatten()]
        for l in range(len(dims) - 1):
            lin = torch.nn.Linear(dims[l], dims[l + 1])
            with torch.no_grad():
                lin.weight.copy_((state[f"w{l}"].cpu().to(torch.float64) * scale).t().to(torch.float32))
                lin.bias.copy_((state[f"b{l}"].cpu().to(torch.float64) * scale).to(torch.float32))
            layers.append(lin)
            if l < len(dims) - 2:
                layers.append(torch.nn.ReLU())
        return torch.nn.Sequential(*layers).eval()


MLP = MLPFamily()

"""MLP classifier: dense ReLU layers and a softmax cross-entropy head (docs/protocol.md §4.1).

Layer sizes ``d_0 = prod(input_shape)``, ``d_1..d_L-1 = hidden``, ``d_L = num_classes``.
State, in canonical order: ``w0, b0, w1, b1, ...`` (``w_l`` int32 [d_l, d_l+1], ``b_l``
int32 [d_l+1], weight_frac_bits fractional bits), then with momentum ``vw0, vb0, ...``
of the same shapes. The dense building blocks here are shared with the CNN head.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import isqrt, prod

import torch
from torch import Tensor

from pouw.arith import (
    INT8_MAX,
    INT32_MAX,
    MAX_GEMM_K,
    PARAM_MAX,
    PROB_FRAC_BITS,
    Backend,
    as_dtype,
    host_shifts,
    int_matmul,
    quantize_int8,
    rescale_sat32,
    round_shift_bounded,
    scalar_like,
    sgd_update,
    softmax_xent_grad,
)
from pouw.errors import PouwError, SpecError
from pouw.families import State, TensorLayout, costs
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
    """An int8 block-floating-point tensor: value = q * 2**-frac (frac broadcasts over q).

    ``frac`` is a Python int where the step keeps its shifts on the host
    (:func:`pouw.arith.host_shifts`), else an int64 tensor on q's device.
    """

    q: Tensor
    frac: Tensor | int


def quantise(x: Tensor, frac: Tensor | int, per_row: bool, host: bool = False) -> Quantised:
    """quantize_int8 per tensor (training) or per example (evaluation); track the fraction bits.

    With ``host`` (per tensor only) the shift, hence the new ``frac``, is a Python int.
    """
    dims = tuple(range(1, x.dim())) if per_row else None
    q, s = quantize_int8(x, dims, host=host and not per_row)
    return Quantised(q, frac - s)


def quantise_relu(z: Tensor, frac: Tensor | int, per_row: bool, host: bool = False) -> Quantised:
    """``quantise(relu(z), frac, per_row, host)`` for int32 pre-activations ``z``.

    With host shifts the ReLU is folded into the clamp: for s >= 1 round_shift is
    monotone with round_shift(0) = 0, so ``clamp(round_shift(z, s), 0, 127)`` equals
    ``clamp(round_shift(relu(z), s), -127, 127)``. Adding ``2**(s-1)`` cannot overflow
    negative values, and is checked against the maximum m for the positive ones.
    """
    if not host or per_row:
        return quantise(torch.relu(z), frac, per_row, host)
    m = max(int(z.max()), 0)  # max |relu(z)|
    s = m.bit_length() - 7
    if s >= 1:
        if m + (1 << (s - 1)) <= INT32_MAX:
            r = (z + scalar_like(1 << (s - 1), z)).bitwise_right_shift_(scalar_like(s, z))
        else:
            one = scalar_like(1, z)
            r = (z >> scalar_like(s - 1, z)).add_(one).bitwise_right_shift_(one)
        q = r.clamp_(0, INT8_MAX).to(torch.int8)
    else:
        q = z.clamp(min=0).bitwise_left_shift_(scalar_like(-s, z)).clamp_(max=INT8_MAX).to(torch.int8)
    return Quantised(q, frac - s)


def dense_forward(a: Quantised, w: Quantised, bias: Tensor, spec: JobSpec, backend: Backend) -> Tensor:
    """Pre-activation ``z = sat32(sat32(round_shift(P, fa + fw - A)) + round_shift(b, F - A))``.

    ``P = a.q @ w.q`` exactly (int32 [M, N]); A = act_frac_bits, F = weight_frac_bits.
    """
    p = int_matmul(a.q, w.q, backend)  # [M, N]
    s = a.frac + w.frac - spec.act_frac_bits
    fb = spec.weight_frac_bits - spec.act_frac_bits
    if not isinstance(s, int):
        z = rescale_sat32(p, s)
    else:
        # host shifts: bound both terms from |P| <= 127**2 * K and |b| <= PARAM_MAX
        p_bound = INT8_MAX * INT8_MAX * a.q.shape[1]  # < 2**31 - 1 (K <= MAX_GEMM_K)
        z_bound = (p_bound >> s) + 1 if s > 0 else p_bound << -s
        b_bound = (PARAM_MAX >> fb) + 1 if fb > 0 else PARAM_MAX << -fb
        if z_bound + b_bound <= INT32_MAX:
            # nothing can overflow int32 and neither saturation can bind: stay in int32
            z = round_shift_bounded(p, s, p_bound)
            return z.add_(round_shift_bounded(as_dtype(bias, torch.int32), fb, PARAM_MAX))
        if s >= 0:  # a right shift of P never needs saturating
            z = round_shift_bounded(p, s, p_bound)
        else:  # |P| < 2**31: shifting by up to 31 fits int64; a non-zero P shifted further saturates anyway
            p64 = p.to(torch.int64)
            z = (p64 << scalar_like(min(-s, 31), p64)).clamp_(-INT32_MAX, INT32_MAX)
    b = round_shift_bounded(bias.to(torch.int64), fb, PARAM_MAX)
    return (z + b).clamp_(-INT32_MAX, INT32_MAX).to(torch.int32)  # int32/int64 + int64 -> int64


def dense_backward(
    a: Quantised, w: Quantised, g: Quantised, backend: Backend, need_input_grad: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Batch-summed gradients of one dense layer from the quantised output gradient g.

    Returns ``dW = a.q^T @ g.q`` (int32, frac a.frac + g.frac), ``db = sum_rows g.q``
    (int32, exact: at most 127 * MAX_GEMM_K in magnitude; frac g.frac) and, if asked,
    ``dA = g.q @ w.q^T`` (int32, frac g.frac + w.frac).
    """
    dw = int_matmul(a.q.t(), g.q, backend)
    db = g.q.sum(dim=0, dtype=torch.int32)
    da = int_matmul(g.q, w.q.t(), backend) if need_input_grad else None
    return dw, db, da


def update_params(
    spec: JobSpec,
    state: State,
    new: State,
    name_w: str,
    name_b: str,
    dw: Tensor,
    dw_frac: Tensor | int,
    db: Tensor,
    db_frac: Tensor | int,
    rows: int | None = None,
) -> None:
    """Apply sgd_update to one layer's weight and bias (and momentum buffers) into ``new``.

    ``rows``: the number of rows M the gradients sum over (dW = a^T g, db = sum of g's
    rows), when known; it bounds them (``127**2 * M``, ``127 * M``) for sgd_update.
    """
    bounds = (None, None) if rows is None else (INT8_MAX * INT8_MAX * rows, INT8_MAX * rows)
    for name, grad, frac, bound in ((name_w, dw, dw_frac, bounds[0]), (name_b, db, db_frac, bounds[1])):
        mom = state.get("v" + name) if spec.momentum_shift is not None else None
        p, v = sgd_update(
            state[name],
            grad,
            frac,
            weight_frac_bits=spec.weight_frac_bits,
            lr_shift=spec.lr_shift,
            batch_size=spec.batch_size,
            momentum=mom,  # on the device already: the family step moved the state there
            momentum_shift=spec.momentum_shift,
            grad_bound=bound,
        )
        new[name] = p
        if v is not None:
            new["v" + name] = v


def input_quantised(x: Tensor, spec: JobSpec, per_row: bool, host: bool = False) -> Quantised:
    """Examples enter as int8 clamped to [-127, 127] with input_frac_bits (no shift)."""
    q = as_dtype(x.clamp(-INT8_MAX, INT8_MAX), torch.int8)
    if host and not per_row:
        return Quantised(q, spec.input_frac_bits)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1) if per_row else ()
    return Quantised(q, torch.full(shape, spec.input_frac_bits, dtype=torch.int64, device=x.device))


def to_device(state: State, device: torch.device) -> State:
    """The state's tensors on ``device`` (the same tensors where they are there already)."""
    return {k: v if v.device == device else v.to(device) for k, v in state.items()}


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
        self, spec: JobSpec, state: State, x: Tensor, backend: Backend, per_row: bool, host: bool = False
    ) -> tuple[Tensor, list[tuple[Quantised, Quantised, Tensor]]]:
        n_layers = len(spec.hidden) + 1
        a = input_quantised(x.reshape(x.shape[0], -1), spec, per_row, host)
        saved = []
        for l in range(n_layers):
            w = quantise(state[f"w{l}"], spec.weight_frac_bits, per_row=False, host=host)
            z = dense_forward(a, w, state[f"b{l}"], spec, backend)  # [B, d_l+1]
            saved.append((a, w, z))
            if l < n_layers - 1:
                a = quantise_relu(z, spec.act_frac_bits, per_row, host)
        return saved[-1][2], saved

    def step(self, spec: JobSpec, state: State, x: Tensor, y: Tensor, backend: Backend) -> State:
        check_batch(spec, x, y)
        dev = backend.device
        host = host_shifts(dev)
        state = to_device(state, dev)
        if x.device != dev or y.device != dev:
            x, y = x.to(dev), y.to(dev)
        # Forward and backward produce only intermediates: inference mode spares every
        # operation its autograd bookkeeping. The update runs outside it, so the new
        # state holds ordinary tensors (modifiable in place by callers, like any other).
        grads = []
        with torch.inference_mode():
            logits, saved = self._forward(spec, state, x, backend, per_row=False, host=host)
            g = quantise(softmax_xent_grad(logits, y, spec.act_frac_bits), PROB_FRAC_BITS, per_row=False, host=host)
            for l in range(len(saved) - 1, -1, -1):
                a, w, _ = saved[l]
                dw, db, da = dense_backward(a, w, g, backend, need_input_grad=l > 0)
                grads.append((l, dw, a.frac + g.frac, db, g.frac))
                if da is not None:
                    z_prev = saved[l - 1][2]
                    da.mul_(z_prev.clamp(0, 1))  # ReLU': zero where z_prev <= 0 (da is a fresh tensor)
                    g = quantise(da, g.frac + w.frac, per_row=False, host=host)
        new: State = {}
        for l, dw, dw_frac, db, db_frac in grads:
            update_params(spec, state, new, f"w{l}", f"b{l}", dw, dw_frac, db, db_frac, rows=x.shape[0])
        return {name: new[name] for name in _state_names(self, spec)}

    def logits(self, spec: JobSpec, state: State, x: Tensor, backend: Backend) -> Tensor:
        z, _ = self._forward(spec, to_device(state, backend.device), x.to(backend.device), backend, per_row=True)
        return z

    def work_units(self, spec: JobSpec) -> int:
        return costs.work_units(spec)

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


@lru_cache(maxsize=64)
def _state_names(family: MLPFamily, spec: JobSpec) -> tuple[str, ...]:
    """The state's tensor names in canonical order (per spec, computed once)."""
    return tuple(name for name, _, _ in family.layout(spec))


MLP = MLPFamily()

"""Small CNN: exact conv layers via im2col gathers, then a dense head (docs/protocol.md §4.2).

Input ``(C, H, W)``; conv layer l has ``hidden[l]`` output channels, a square
``kernel_size`` kernel k, zero padding ``p = k // 2`` and ``stride``; ReLU after every
conv. Activations are kept channels-last ``[B, H, W, C]``. The head is one dense layer
from the flattened last activation (order h, w, c) to the classes.

State, in canonical order: ``w0, b0, ..., w{L-1}, b{L-1}`` for the conv layers
(``w_l`` int32 [k*k*C_l, C_l+1], rows ordered (ki, kj, c); ``b_l`` int32 [C_l+1]), then
``w{L}, b{L}`` for the head (``[H_L*W_L*C_L, num_classes]``, ``[num_classes]``), then
with momentum ``v``-prefixed buffers of the same shapes in the same order.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from pouw.arith import (
    MAX_GEMM_K,
    PROB_FRAC_BITS,
    Backend,
    int_matmul,
    rescale_sat32,
    round_shift,
    saturate32,
    softmax_xent_grad,
)
from pouw.errors import SpecError
from pouw.families import State, TensorLayout, costs
from pouw.families.mlp import (
    Quantised,
    check_batch,
    dense_backward,
    dense_forward,
    init_weight,
    input_quantised,
    quantise,
    to_device,
    update_params,
)
from pouw.spec import JobSpec, Limits
from pouw.state import encoded_size

__all__ = ["CNN", "CNNFamily"]


@lru_cache(maxsize=64)
def _im2col_index(h: int, w: int, c: int, k: int, stride: int, device: torch.device) -> Tensor:
    """idx[o, r]: flat position in the padded [Hp, Wp, C] input of column r of output o.

    ``o = oh * Wo + ow``, ``r = (ki * k + kj) * C + ci``,
    ``idx = ((oh*stride + ki) * Wp + (ow*stride + kj)) * C + ci``.
    """
    p = k // 2
    wp = w + 2 * p
    ho, wo = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    oh = torch.arange(ho).view(ho, 1, 1, 1, 1) * stride
    ow = torch.arange(wo).view(1, wo, 1, 1, 1) * stride
    ki = torch.arange(k).view(1, 1, k, 1, 1)
    kj = torch.arange(k).view(1, 1, 1, k, 1)
    ci = torch.arange(c).view(1, 1, 1, 1, c)
    idx = ((oh + ki) * wp + (ow + kj)) * c + ci
    return idx.reshape(ho * wo, k * k * c).to(device)


class CNNFamily:
    """Conv layers (im2col) + dense head; see the module docstring."""

    name = "cnn"

    def geometry(self, spec: JobSpec) -> list[tuple[int, int, int]]:
        """(H, W, C) of the input and of every conv layer's output."""
        c, h, w = spec.input_shape
        k, p, st = spec.kernel_size, spec.kernel_size // 2, spec.stride
        out = [(h, w, c)]
        for ch in spec.hidden:
            h, w = (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
            out.append((h, w, ch))
        return out

    def validate(self, spec: JobSpec, limits: Limits) -> None:
        if len(spec.input_shape) != 3:
            raise SpecError("input_shape", "cnn input must be (C, H, W)", got=spec.input_shape)
        if len(spec.hidden) < 1:
            raise SpecError("hidden", "cnn needs at least one conv layer", got=spec.hidden)
        geo = self.geometry(spec)
        k2 = spec.kernel_size**2
        for l, (h, w, c) in enumerate(geo[:-1]):
            if k2 * c > MAX_GEMM_K:
                raise SpecError(f"hidden[{l - 1}]" if l else "input_shape", "too many channels for one exact GEMM")
            ho, wo, _ = geo[l + 1]
            if ho < 1 or wo < 1:
                raise SpecError("stride", "spatial size shrinks below 1", got=(ho, wo))
            if spec.batch_size * ho * wo > MAX_GEMM_K:
                raise SpecError(
                    "batch_size", "batch x positions exceeds the exact int32 accumulation bound",
                    expected=f"<= {MAX_GEMM_K}", got=spec.batch_size * ho * wo,
                )
        h, w, c = geo[-1]
        if h * w * c > limits.max_width or h * w * c > MAX_GEMM_K:
            raise SpecError("hidden", "flattened conv output too wide for the head", expected=f"<= {limits.max_width}", got=h * w * c)

    def layout(self, spec: JobSpec) -> TensorLayout:
        geo = self.geometry(spec)
        k2 = spec.kernel_size**2
        out: TensorLayout = []
        for l in range(len(spec.hidden)):
            out.append((f"w{l}", torch.int32, (k2 * geo[l][2], geo[l + 1][2])))
            out.append((f"b{l}", torch.int32, (geo[l + 1][2],)))
        h, w, c = geo[-1]
        n = len(spec.hidden)
        out.append((f"w{n}", torch.int32, (h * w * c, spec.num_classes)))
        out.append((f"b{n}", torch.int32, (spec.num_classes,)))
        if spec.momentum_shift is not None:
            out += [("v" + name, dt, shape) for name, dt, shape in list(out)]
        return out

    def init_state(self, spec: JobSpec, seed: bytes) -> State:
        state: State = {}
        for name, dtype, shape in self.layout(spec):
            if name.startswith("w"):
                state[name] = init_weight(seed, name, shape[0], shape, spec.weight_frac_bits)
            else:
                state[name] = torch.zeros(shape, dtype=dtype)
        return state

    # ---- exact forward / backward ---------------------------------------------------

    def _forward(self, spec: JobSpec, state: State, x: Tensor, backend: Backend, per_row: bool):
        geo = self.geometry(spec)
        k, st, p = spec.kernel_size, spec.stride, spec.kernel_size // 2
        b = x.shape[0]
        a = input_quantised(x.permute(0, 2, 3, 1), spec, per_row)  # [B, H, W, C]
        saved = []
        for l in range(len(spec.hidden)):
            h, w, c = geo[l]
            ho, wo, cout = geo[l + 1]
            idx = _im2col_index(h, w, c, k, st, a.q.device)
            padded = F.pad(a.q, (0, 0, p, p, p, p)).reshape(b, -1)  # [B, Hp*Wp*C]
            cols = padded[:, idx].reshape(b * ho * wo, k * k * c)  # im2col
            wq = quantise(state[f"w{l}"], spec.weight_frac_bits, per_row=False)
            prod_ = int_matmul(cols, wq.q, backend).view(b, ho, wo, cout)
            z = rescale_sat32(prod_, a.frac + wq.frac - spec.act_frac_bits)
            bias = round_shift(state[f"b{l}"].to(torch.int64), spec.weight_frac_bits - spec.act_frac_bits)
            z = saturate32(z.to(torch.int64) + bias)  # [B, Ho, Wo, Cout]
            saved.append((Quantised(cols, a.frac), wq, z))
            a = quantise(torch.relu(z), spec.act_frac_bits, per_row)
        n = len(spec.hidden)
        frac = a.frac
        flat = Quantised(a.q.reshape(b, -1), frac.reshape(-1, 1) if per_row and isinstance(frac, Tensor) else frac)
        wq = quantise(state[f"w{n}"], spec.weight_frac_bits, per_row=False)
        logits = dense_forward(flat, wq, state[f"b{n}"], spec, backend)
        return logits, saved, (flat, wq)

    def step(self, spec: JobSpec, state: State, x: Tensor, y: Tensor, backend: Backend) -> State:
        check_batch(spec, x, y)
        dev = backend.device
        state = to_device(state, dev)
        x, y = x.to(dev), y.to(dev)
        geo = self.geometry(spec)
        k, p = spec.kernel_size, spec.kernel_size // 2
        b = x.shape[0]
        n = len(spec.hidden)
        logits, saved, (flat, wq) = self._forward(spec, state, x, backend, per_row=False)
        g = quantise(softmax_xent_grad(logits, y, spec.act_frac_bits), PROB_FRAC_BITS, per_row=False)
        new: State = {}
        dw, db, da = dense_backward(flat, wq, g, backend, need_input_grad=True)
        update_params(spec, state, new, f"w{n}", f"b{n}", dw, flat.frac + g.frac, db, g.frac)
        assert da is not None
        z_last = saved[-1][2]
        da = da.view(z_last.shape).masked_fill_(z_last <= 0, 0)  # ReLU'
        g = quantise(da, g.frac + wq.frac, per_row=False)
        for l in range(n - 1, -1, -1):
            cols, wl, _ = saved[l]
            ho, wo, cout = geo[l + 1]
            g2 = g.q.reshape(b * ho * wo, cout)
            dw = int_matmul(cols.q.t(), g2, backend)
            db = g2.to(torch.int64).sum(dim=0)
            update_params(spec, state, new, f"w{l}", f"b{l}", dw, cols.frac + g.frac, db, g.frac)
            if l == 0:
                break
            h, w, c = geo[l]
            dcols = int_matmul(g2, wl.q.t(), backend).to(torch.int64).reshape(b, -1)  # [B, Ho*Wo*k*k*C]
            idx = _im2col_index(h, w, c, k, spec.stride, dev)
            dpad = torch.zeros(b, (h + 2 * p) * (w + 2 * p) * c, dtype=torch.int64, device=dev)
            dpad.index_add_(1, idx.reshape(-1), dcols)  # col2im: exact integer scatter-add
            da4 = dpad.view(b, h + 2 * p, w + 2 * p, c)[:, p : p + h, p : p + w, :]
            z_prev = saved[l - 1][2]
            g = quantise(torch.where(z_prev > 0, da4, 0), g.frac + wl.frac, per_row=False)
        return {name: new[name] for name, _, _ in self.layout(spec)}

    def logits(self, spec: JobSpec, state: State, x: Tensor, backend: Backend) -> Tensor:
        z, _, _ = self._forward(spec, to_device(state, backend.device), x.to(backend.device), backend, per_row=True)
        return z

    # ---- cost, size, export ---------------------------------------------------------

    def work_units(self, spec: JobSpec) -> int:
        return costs.work_units(spec)

    def state_bytes(self, spec: JobSpec) -> int:
        return encoded_size(self.layout(spec))

    def to_torch(self, spec: JobSpec, state: State) -> torch.nn.Module:
        return _ExportedCNN(spec, state, self.geometry(spec))


class _ExportedCNN(torch.nn.Module):
    """Float32 twin of the exact CNN: NCHW convs, channels-last flatten, linear head."""

    def __init__(self, spec: JobSpec, state: State, geo: list[tuple[int, int, int]]) -> None:
        super().__init__()
        k = spec.kernel_size
        scale = 2.0 ** -spec.weight_frac_bits

        def f(t: Tensor) -> Tensor:
            return (t.cpu().to(torch.float64) * scale).to(torch.float32)

        self.convs = torch.nn.ModuleList()
        for l in range(len(spec.hidden)):
            cin, cout = geo[l][2], geo[l + 1][2]
            conv = torch.nn.Conv2d(cin, cout, k, stride=spec.stride, padding=k // 2)
            with torch.no_grad():
                conv.weight.copy_(f(state[f"w{l}"]).reshape(k, k, cin, cout).permute(3, 2, 0, 1))
                assert conv.bias is not None
                conv.bias.copy_(f(state[f"b{l}"]))
            self.convs.append(conv)
        n = len(spec.hidden)
        h, w, c = geo[-1]
        self.head = torch.nn.Linear(h * w * c, spec.num_classes)
        with torch.no_grad():
            self.head.weight.copy_(f(state[f"w{n}"]).t())
            self.head.bias.copy_(f(state[f"b{n}"]))
        self.eval()

    def forward(self, x: Tensor) -> Tensor:  # x: float [B, C, H, W]
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.head(x.permute(0, 2, 3, 1).flatten(1))


CNN = CNNFamily()

"""Exact integer arithmetic of the training step (docs/protocol.md, section 3).

Every quantity on the recomputed path is an integer tensor. A real value ``v`` is held
as an integer ``n`` with ``f`` *fractional bits*: ``v = n * 2**-f``. Scaling is by powers
of two with one rounding rule, **round half up** (towards +infinity):

    round_shift(n, s) = floor(n / 2**s + 1/2)   for s >= 1
                      = n * 2**-s               for s <= 0 (exact left shift)

Matrix products take int8 operands in ``[-127, 127]`` and give the exact integer
product, by one of two paths that return the same bits:

* ``int8``: ``torch._int_mm`` (int8 x int8 -> int32 accumulation);
* ``fp32``: an fp32 GEMM of the integer-valued operands with the inner dimension cut
  into chunks of at most ``FP32_CHUNK_K`` (= 1024) so that every partial sum, in any
  summation order, is an integer below ``1024 * 127**2 < 2**24`` and therefore exact
  in fp32; chunks are converted to int32 and added as integers. TF32 and reduced
  precision are switched off.

Integer addition is associative, so the result depends neither on the BLAS kernel's
summation order, nor on the thread count, nor on the device.

No function here calls ``.item()``: per-tensor shift amounts are kept as 0-dim int64
tensors on the device, so a step runs without host synchronisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import torch
from torch import Tensor

from pouw.errors import DeviceError

__all__ = [
    "Backend",
    "select_backend",
    "int_matmul",
    "round_shift",
    "rescale_sat32",
    "saturate32",
    "bitlen",
    "quantize_int8",
    "round_div",
    "exp_lut",
    "EXP_LUT_FRAC_BITS",
    "EXP_LUT_SIZE",
    "EXP_LUT_ONE_BITS",
    "PROB_FRAC_BITS",
    "INT8_MAX",
    "INT32_MAX",
    "PARAM_MAX",
    "MAX_GEMM_K",
    "FP32_CHUNK_K",
    "RECIP_BITS",
    "softmax_exp",
    "softmax_xent_grad",
    "recip_batch",
    "sgd_update",
    "log2_fixed",
]

INT8_MAX: Final = 127
"""Quantised operands are clamped to [-127, 127] (symmetric; -128 never occurs)."""

INT32_MAX: Final = 2**31 - 1
"""Activations and logits saturate to [-INT32_MAX, INT32_MAX] (symmetric; -2**31 never occurs)."""

PARAM_MAX: Final = 2**30 - 1
"""Master weights, biases and momentum buffers stay in [-PARAM_MAX, PARAM_MAX] (§3.8)."""

MAX_GEMM_K: Final = INT32_MAX // (INT8_MAX * INT8_MAX)
"""Largest inner dimension whose int8 products cannot overflow int32 accumulation (133143)."""

FP32_CHUNK_K: Final = 1024
"""Inner-dimension chunk of the fp32 path: 1024 * 127**2 = 16 516 096 < 2**24."""

PROB_FRAC_BITS: Final = 16
"""Fractional bits of softmax probabilities and of the loss gradient dL/dlogits."""

EXP_LUT_FRAC_BITS: Final = 6
"""Resolution of the exp table: its index is a logit gap in units of 2**-6."""

EXP_LUT_SIZE: Final = 1024
"""Table entries cover gaps d in [0, 16); larger gaps read the appended 0 entry."""

EXP_LUT_ONE_BITS: Final = 30
"""Table entries are round(2**30 * exp(-k / 64))."""

EXP_SERIES_TERMS: Final = 80
"""Terms of the exp Taylor series used to build the table (exact rationals)."""

RECIP_BITS: Final = 32
"""Division by the batch size is multiplication by round(2**32 / B) then a shift."""

_POW2_BITS: Final = 63


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """Where and how a step computes its matrix products. Both paths give the same bits."""

    device: torch.device
    """cpu or cuda:N."""
    gemm: str
    """"int8" (torch._int_mm, int32 accumulation) or "fp32" (chunked exact fp32 GEMM)."""


def _force_exact_float() -> None:
    """Switch off every reduced-precision fp32 matmul mode (TF32, bf16 internals)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if torch.get_float32_matmul_precision() != "highest":
        torch.set_float32_matmul_precision("highest")


def select_backend(device: str = "auto", gemm: str = "auto") -> Backend:
    """Pick a device and GEMM path; refuse (DeviceError) what this machine cannot do.

    ``device``: "auto" (cuda:0 when available, else cpu), "cpu", "cuda" or "cuda:N".
    ``gemm``: "auto" (int8), "int8" or "fp32".
    """
    if device == "auto":
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("CUDA is not available on this machine", expected="cpu", got=device)
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise DeviceError(
                "no such CUDA device", expected=f"index < {torch.cuda.device_count()}", got=index
            )
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise DeviceError("unsupported device type", expected="cpu or cuda", got=device)
    if gemm == "auto":
        gemm = "int8"
    if gemm not in ("int8", "fp32"):
        raise DeviceError("unknown GEMM path", expected="int8 or fp32", got=gemm)
    _force_exact_float()
    return Backend(device=dev, gemm=gemm)


# --------------------------------------------------------------------------------------
# Exact matrix product
# --------------------------------------------------------------------------------------


def _int_mm(a: Tensor, b: Tensor, pad: bool | None = None) -> Tensor:
    """torch._int_mm; with ``pad`` (default: on CUDA) the CUDA kernel's shape rules
    (M > 16, K and N multiples of 8) are met by zero padding, which adds nothing."""
    if pad is None:
        pad = a.device.type == "cuda"
    if pad:
        m, k = a.shape
        n = b.shape[1]
        mp, kp, np_ = max(m, 17), -(-k // 8) * 8, -(-n // 8) * 8
        if (mp, kp, np_) != (m, k, n):
            a = torch.nn.functional.pad(a, (0, kp - k, 0, mp - m))
            b = torch.nn.functional.pad(b, (0, np_ - n, 0, kp - k))
            return torch._int_mm(a.contiguous(), b.contiguous())[:m, :n].contiguous()
    return torch._int_mm(a.contiguous(), b.contiguous())


def int_matmul(a: Tensor, b: Tensor, backend: Backend) -> Tensor:
    """Exact integer product ``a @ b`` of int8 matrices ``[M, K] x [K, N] -> int32 [M, N]``.

    Operands must lie in [-127, 127] and K <= MAX_GEMM_K (the families' validation
    guarantees both). Both GEMM paths return identical bits.
    """
    k = a.shape[1]
    if k > MAX_GEMM_K:
        raise ValueError(f"inner dimension {k} exceeds MAX_GEMM_K={MAX_GEMM_K}")
    if a.shape[0] == 0 or b.shape[1] == 0 or k == 0:
        return torch.zeros(a.shape[0], b.shape[1], dtype=torch.int32, device=a.device)
    if backend.gemm == "int8":
        return _int_mm(a, b)
    _force_exact_float()
    af = a.to(torch.float32)
    bf = b.to(torch.float32)
    if k <= FP32_CHUNK_K:
        return torch.mm(af, bf).to(torch.int32)
    out = torch.zeros(a.shape[0], b.shape[1], dtype=torch.int32, device=a.device)
    for lo in range(0, k, FP32_CHUNK_K):
        hi = min(lo + FP32_CHUNK_K, k)
        out += torch.mm(af[:, lo:hi], bf[lo:hi, :]).to(torch.int32)
    return out


# --------------------------------------------------------------------------------------
# Shifts, rounding, saturation
# --------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _pow2(device: torch.device) -> Tensor:
    return torch.tensor([1 << i for i in range(_POW2_BITS)], dtype=torch.int64, device=device)


def bitlen(m: Tensor) -> Tensor:
    """Bit length of non-negative int64 values (0 -> 0, 1 -> 1, 127 -> 7, 128 -> 8).

    Computed as the number of powers of two ``2**i`` (i < 63) that are <= m: exact
    integer comparisons only.
    """
    return (m.to(torch.int64).unsqueeze(-1) >= _pow2(m.device)).sum(-1)


def round_shift(x: Tensor, s: int | Tensor) -> Tensor:
    """``floor(x / 2**s + 1/2)`` for s >= 1, ``x * 2**-s`` for s <= 0 (dtype of x).

    ``s`` is a Python int or an integer tensor broadcastable against ``x``. Computed as
    ``((x >> (s-1)) + 1) >> 1`` (no intermediate can overflow) with arithmetic shifts.
    The caller guarantees that a left shift does not overflow x's dtype.
    """
    if isinstance(s, int):
        if s >= 1:
            return (x >> (s - 1)).add_(1).bitwise_right_shift_(1)
        return x << (-s) if s < 0 else x
    s = s.to(torch.int64)
    r = (s >= 1).to(torch.int64)
    u = x >> (s - 1).clamp(min=0)  # new tensor; the rest is in place
    u.add_(r.to(u.dtype))
    u.bitwise_right_shift_(r.to(u.dtype))
    return u.bitwise_left_shift_((-s).clamp(min=0).to(u.dtype))


def saturate32(x: Tensor) -> Tensor:
    """Clamp to [-INT32_MAX, INT32_MAX] and return int32."""
    return x.clamp(-INT32_MAX, INT32_MAX).to(torch.int32)


def rescale_sat32(x: Tensor, s: int | Tensor) -> Tensor:
    """``saturate32(round_shift(x, s))`` with exact semantics for any shift.

    ``|x| < 2**61`` is required. Right shifts are clamped at 62 and left shifts at 31,
    and the value is saturated before a left shift: none of this changes the result
    (a non-zero value shifted left by 31 or more saturates anyway).
    """
    if isinstance(s, int) and s >= 0:
        return saturate32(round_shift(x.to(torch.int64), min(s, 62)))
    return _rescale_sat_(x.to(torch.int64, copy=True), s).to(torch.int32)


def _rescale_sat_(x: Tensor, s: int | Tensor) -> Tensor:
    """In-place ``rescale_sat32`` on an int64 tensor the caller owns (result stays int64).

    Right part ``((x >> a) + r) >> r`` with ``a = clamp(s-1, 0, 61)``, ``r = [s >= 1]``,
    then clamp to +-2**31, left shift by ``clamp(-s, 0, 31)``, clamp to +-INT32_MAX.
    """
    s = torch.as_tensor(s, dtype=torch.int64, device=x.device)
    r = (s >= 1).to(torch.int64)
    x.bitwise_right_shift_((s - 1).clamp(0, 61))
    x.add_(r)
    x.bitwise_right_shift_(r)
    x.clamp_(-(2**31), 2**31)
    x.bitwise_left_shift_((-s).clamp(0, 31))
    return x.clamp_(-INT32_MAX, INT32_MAX)


def quantize_int8(x: Tensor, dims: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Block-floating-point int8 quantisation: ``q = clamp(round_shift(x, s), -127, 127)``.

    ``s = bitlen(max |x|) - 7`` over the whole tensor (``dims=None``, s is 0-dim) or
    over ``dims`` per leading index (s keeps the reduced dims with size 1). s may be
    negative (small values are shifted left to use the full int8 range; all-zero
    gives s = -7). Returns ``(q int8, s int64)``; the represented value is q * 2**s
    times x's unit. ``x`` must be int32 or int64 with ``|x| <= 2**62``.
    """
    if dims is None:
        lo, hi = torch.aminmax(x)
        m = torch.maximum(hi.to(torch.int64), -lo.to(torch.int64))
    else:
        m = x.to(torch.int64).abs().amax(dim=dims, keepdim=True)
    s = bitlen(m) - 7
    q = round_shift(x, s).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return q, s


def round_div(num: Tensor, den: int | Tensor) -> Tensor:
    """``floor(num / den + 1/2)`` for den > 0: round half up, exact integer division."""
    return torch.div(num + den // 2, den, rounding_mode="floor")


# --------------------------------------------------------------------------------------
# Softmax cross-entropy through an exact exp table
# --------------------------------------------------------------------------------------


def _exp_neg_entry(k: int) -> int:
    """round_half_up(2**30 / S) with S the exact 80-term Taylor sum of exp(k/64).

    ``S = sum_{n=0}^{79} x**n / n!`` with ``x = k/64``. Over the common denominator
    ``D = 64**79 * 79!`` the numerator is ``N = sum_n k**n * 64**(79-n) * 79!/n!``, so
    ``S = N / D`` and the entry is ``floor(2**30 * D / N + 1/2)
    = (2 * 2**30 * D + N) // (2 * N)``: integers only.
    """
    last = EXP_SERIES_TERMS - 1
    base = 1 << EXP_LUT_FRAC_BITS
    fact_last = 1
    for i in range(2, last + 1):
        fact_last *= i
    num = 0
    ratio = fact_last  # last! / n!, starting at n = 0
    for n in range(EXP_SERIES_TERMS):
        if n:
            ratio //= n
        num += k**n * base ** (last - n) * ratio
    den = base**last * fact_last
    return (2 * (1 << EXP_LUT_ONE_BITS) * den + num) // (2 * num)


@lru_cache(maxsize=1)
def _exp_lut_list() -> tuple[int, ...]:
    return tuple(_exp_neg_entry(k) for k in range(EXP_LUT_SIZE)) + (0,)


@lru_cache(maxsize=None)
def exp_lut(device: torch.device = torch.device("cpu")) -> Tensor:
    """The exp table (EXP_LUT_SIZE + 1 int64 entries, the last one 0) on ``device``."""
    return torch.tensor(_exp_lut_list(), dtype=torch.int64, device=device)


def softmax_exp(logits: Tensor, frac_bits: int) -> Tensor:
    """Unnormalised softmax numerators ``e[b, j] = LUT[min(idx, 1024)]`` (int64).

    ``idx = round_shift(max_j z[b, j] - z[b, j], frac_bits - 6)`` with z the logits
    holding ``frac_bits`` fractional bits.
    """
    z = logits.to(torch.int64)
    gap = z.amax(dim=1, keepdim=True) - z
    idx = round_shift(gap, frac_bits - EXP_LUT_FRAC_BITS).clamp_(max=EXP_LUT_SIZE)
    return exp_lut(logits.device)[idx]


def softmax_xent_grad(logits: Tensor, y: Tensor, frac_bits: int) -> Tensor:
    """dL/dlogits of softmax cross-entropy, summed loss, PROB_FRAC_BITS fractional bits.

    ``p = round_div(e << 16, sum_j e)``; ``g = p - (onehot(y) << 16)`` (int64 [B, C]).
    """
    e = softmax_exp(logits, frac_bits)
    total = e.sum(dim=1, keepdim=True)
    p = round_div(e << PROB_FRAC_BITS, total)
    onehot = torch.zeros_like(p)
    onehot.scatter_(1, y.to(torch.int64).view(-1, 1), 1 << PROB_FRAC_BITS)
    return p - onehot


_LOG2_MANT_BITS: Final = 30


def log2_fixed(n: Tensor, frac_bits: int = 20) -> Tensor:
    """``floor(log2(n) * 2**frac_bits)`` for int64 n >= 1, by exact repeated squaring.

    Integer part: ``bitlen(n) - 1``. Fraction: normalise the mantissa to
    ``y in [2**30, 2**31)``, then ``frac_bits`` times: ``y = (y*y) >> 30``; if
    ``y >= 2**31``: emit bit 1 and ``y >>= 1``, else emit bit 0. (Truncating squaring;
    a deterministic integer definition, not a correctly rounded logarithm.)
    """
    n = n.to(torch.int64)
    e = bitlen(n) - 1
    y = _normalise(n, e)
    out = e << frac_bits
    for i in range(frac_bits):
        y = (y * y) >> _LOG2_MANT_BITS
        bit = (y >= (1 << (_LOG2_MANT_BITS + 1))).to(torch.int64)
        y = y >> bit
        out = out + (bit << (frac_bits - 1 - i))
    return out


def _normalise(n: Tensor, e: Tensor) -> Tensor:
    """Mantissa of n truncated to 31 bits: ``floor(n * 2**(30 - e))``."""
    shift = e - _LOG2_MANT_BITS
    return torch.where(shift >= 0, n >> shift.clamp(min=0), n << (-shift).clamp(min=0))


# --------------------------------------------------------------------------------------
# Parameter update
# --------------------------------------------------------------------------------------


def recip_batch(batch_size: int) -> int:
    """``round_half_up(2**32 / batch_size)``: the integer reciprocal used for batch means."""
    return ((1 << (RECIP_BITS + 1)) + batch_size) // (2 * batch_size)


def sgd_update(
    param: Tensor,
    grad_sum: Tensor,
    grad_frac: Tensor | int,
    *,
    weight_frac_bits: int,
    lr_shift: int,
    batch_size: int,
    momentum: Tensor | None = None,
    momentum_shift: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """One SGD(-momentum) update of an int32 fixed-point parameter.

    ``grad_sum`` is the batch *sum* of the gradient as an integer with ``grad_frac``
    fractional bits (``|grad_sum| <= 127**2 * MAX_GEMM_K``). Parameters and momentum
    buffers live in ``[-PARAM_MAX, PARAM_MAX]``, ``PARAM_MAX = 2**30 - 1``. The update
    in parameter units (``weight_frac_bits`` = F) is

        t = grad_frac + 32 + lr_shift - F
        u = clamp(round_shift(grad_sum * R_B, t), -2**30, 2**30)

    with ``R_B = recip_batch(B)`` (so ``u ~= 2**-lr_shift * mean gradient``), then
    ``W' = clamp(W - u, +-PARAM_MAX)`` without momentum; with momentum shift m
    ``v' = clamp(v - round_shift(v, m) + u, +-PARAM_MAX)``, ``W' = clamp(W - v', +-PARAM_MAX)``
    (heavy ball with beta = 1 - 2**-m). The bounds make every intermediate fit int32.
    """
    r_b = recip_batch(batch_size)
    t = torch.as_tensor(grad_frac + (RECIP_BITS + lr_shift - weight_frac_bits), dtype=torch.int64, device=grad_sum.device)
    if r_b & (r_b - 1) == 0:
        # power-of-two batch: R_B = 2**k, so round_shift(g * R_B, t) = round_shift(g, t - k): stay in int32
        g = grad_sum.to(torch.int32)
        t = t - (r_b.bit_length() - 1)
        a_cap = 31  # |g| < 2**31: (g >> 31) is 0 or -1, which then rounds to 0, as any larger shift
    else:
        g = grad_sum.to(torch.int64) * r_b  # |g * R_B| < 2**61
        a_cap = 62
    u = _update_step(g, t, a_cap)
    if momentum is None:
        return _sub_clamp(param, u), None
    assert momentum_shift is not None
    old_v = momentum.to(torch.int32)
    v = round_shift(old_v, momentum_shift).neg_().add_(old_v)  # v - round_shift(v, m), fresh tensor
    v.add_(u).clamp_(-PARAM_MAX, PARAM_MAX)
    return torch.sub(param.to(torch.int32), v, out=u).clamp_(-PARAM_MAX, PARAM_MAX), v


def _update_step(g: Tensor, t: Tensor, a_cap: int) -> Tensor:
    """``clamp(round_shift(g, t), -2**30, 2**30)`` as int32, without host synchronisation.

    Right part ``((g >> a) + r) >> r`` with ``a = clamp(t - 1, 0, a_cap)`` and
    ``r = [t >= 1]``; left part: with ``l = clamp(-t, 0, 30)``, clamp to ``+-(2**30 >> l)``
    then shift left by ``l`` (exact saturation: a non-zero value shifted by 30 or more
    saturates anyway). At most one of the two parts shifts.
    """
    r = (t >= 1).to(g.dtype)
    u = g >> (t - 1).clamp(0, a_cap).to(g.dtype)
    u.add_(r).bitwise_right_shift_(r)
    left = (-t).clamp(0, 30)
    lim = torch.bitwise_right_shift(torch.tensor(1 << 30, dtype=torch.int64, device=g.device), left)
    lim = lim.to(u.dtype)
    u.clamp_(-lim, lim)
    u = u.to(torch.int32)
    return u.bitwise_left_shift_(left.to(torch.int32))


def _sub_clamp(param: Tensor, u: Tensor) -> Tensor:
    """``clamp(param - u, +-PARAM_MAX)`` in int32 (|param| < 2**30, |u| <= 2**30: no overflow)."""
    # in place into u (a fresh tensor owned by the update): avoids a large allocation
    return torch.sub(param.to(torch.int32), u, out=u).clamp_(-PARAM_MAX, PARAM_MAX)

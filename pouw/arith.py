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

Data-dependent shift amounts (the quantisation shifts of §3.3 and the fraction bits
derived from them) are either 0-dim int64 tensors on the device, so that a CUDA step
runs without host synchronisation, or, where reading a value back costs nothing (CPU,
see :func:`host_shifts`), plain Python ints: every shift is then a constant and a step
needs far fewer (and smaller) tensor operations. Both forms give the same bits.
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
    "host_shifts",
    "as_dtype",
    "scalar_like",
    "round_shift_bounded",
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


HOST_SHIFTS_ON_CPU = True
"""Use host-int shifts on CPU (see :func:`host_shifts`); tests turn it off to run the
device-tensor form, the one CUDA uses, on CPU and compare."""


def host_shifts(device: torch.device) -> bool:
    """Whether a step on ``device`` reads its data-dependent shifts back as Python ints.

    True on CPU, where ``int(tensor)`` is a plain memory read; False on CUDA, where it
    would stall the stream (shifts stay 0-dim device tensors there).
    """
    return device.type == "cpu" and HOST_SHIFTS_ON_CPU


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
    return torch._int_mm(a, b)  # the CPU kernel takes strided (e.g. transposed) operands


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


@lru_cache(maxsize=4096)
def _const(value: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(value, dtype=dtype, device=device)


def scalar_like(value: int, x: Tensor) -> Tensor:
    """``value`` as a cached 0-dim tensor of x's dtype and device, for use as an operand.

    Same result as the Python int, but an elementwise op with a 0-dim tensor operand
    skips wrapping the scalar anew on every call (about half the per-op cost of a small
    op on CPU). The cached tensors are shared: never modify one in place.
    """
    return _const(value, x.dtype, x.device)


@lru_cache(maxsize=None)
def _shift_consts(dtype: torch.dtype, device: torch.device) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """0-dim operands for :func:`round_shift_bounded`: shift amounts ``0 .. bits-1`` and
    powers of two ``2**0 .. 2**(bits-2)`` of one dtype and device (cached, never modified)."""
    bits = torch.iinfo(dtype).bits
    amounts = tuple(torch.tensor(k, dtype=dtype, device=device) for k in range(bits))
    powers = tuple(torch.tensor(1 << k, dtype=dtype, device=device) for k in range(bits - 1))
    return amounts, powers


def as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, skipping the call (not free for small tensors) when x already has it."""
    return x if x.dtype is dtype else x.to(dtype)


_DTYPE_MAX: Final = {torch.int8: 2**7 - 1, torch.int16: 2**15 - 1, torch.int32: 2**31 - 1, torch.int64: 2**63 - 1}


def round_shift_bounded(x: Tensor, s: int, bound: int) -> Tensor:
    """``round_shift(x, s)`` for a Python int ``s`` and ``|x| <= bound``; a new tensor.

    Same result as :func:`round_shift`, in as few operations as the bound allows: a
    right shift ``s >= 1`` is ``(x + 2**(s-1)) >> s`` (equal to ``floor(x / 2**s + 1/2)``)
    when that sum cannot overflow x's dtype, else ``((x >> (s-1)) + 1) >> 1``; shifts
    past the bound's bit length give 0 either way and are capped. The caller guarantees
    that a left shift (``s < 0``) does not overflow, and for ``s = 1`` that the bound is
    below the dtype's maximum (as for :func:`round_shift`, ``x + 1`` must fit).
    """
    if s <= 0:
        return x << scalar_like(-s, x) if s < 0 else x.clone()
    s = min(s, bound.bit_length() + 1)  # |x| < 2**(s-1): the result is 0 from here on
    amounts, powers = _shift_consts(x.dtype, x.device)
    if bound + (1 << (s - 1)) <= _DTYPE_MAX[x.dtype]:  # then s - 1 <= bits - 2
        return (x + powers[s - 1]).bitwise_right_shift_(amounts[s])
    # s - 1 <= bound.bit_length() <= bits - 1 (the bound fits the dtype)
    return (x >> amounts[s - 1]).add_(amounts[1]).bitwise_right_shift_(amounts[1])


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


def quantize_int8(
    x: Tensor, dims: tuple[int, ...] | None = None, *, host: bool = False
) -> tuple[Tensor, Tensor | int]:
    """Block-floating-point int8 quantisation: ``q = clamp(round_shift(x, s), -127, 127)``.

    ``s = bitlen(max |x|) - 7`` over the whole tensor (``dims=None``, s is 0-dim) or
    over ``dims`` per leading index (s keeps the reduced dims with size 1). s may be
    negative (small values are shifted left to use the full int8 range; all-zero
    gives s = -7). Returns ``(q int8, s int64)``; the represented value is q * 2**s
    times x's unit. ``x`` must be int32 or int64 with ``|x| <= 2**62``.

    With ``host`` (per tensor only; see :func:`host_shifts`) s is a Python int.
    """
    if host and dims is None:
        lo_h, hi_h = torch.aminmax(x)
        m_int = max(int(hi_h), -int(lo_h))
        s_int = m_int.bit_length() - 7
        q_h = round_shift_bounded(x, s_int, m_int)
        # |q| <= round_shift(m, s), which is 128 only when m rounds up to 2**(s+7)
        if s_int >= 1 and m_int + (1 << (s_int - 1)) >= 1 << (s_int + 7):
            q_h.clamp_(-INT8_MAX, INT8_MAX)
        return q_h.to(torch.int8), s_int
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
    gap = z.amax(dim=1, keepdim=True) - z  # 0 <= gap < 2**32
    idx = round_shift_bounded(gap, frac_bits - EXP_LUT_FRAC_BITS, 1 << 32).clamp_(max=EXP_LUT_SIZE)
    return torch.take(exp_lut(logits.device), idx)


def softmax_xent_grad(logits: Tensor, y: Tensor, frac_bits: int) -> Tensor:
    """dL/dlogits of softmax cross-entropy, summed loss, PROB_FRAC_BITS fractional bits.

    ``p = round_div(e << 16, sum_j e)``; ``g = p - (onehot(y) << 16)`` (int64 [B, C]).
    """
    e = softmax_exp(logits, frac_bits)
    total = e.sum(dim=1, keepdim=True)  # > 0: the largest logit reads LUT[0] = 2**30
    # round_div(e << 16, total), in place: (num + total // 2) // total
    p = (e << scalar_like(PROB_FRAC_BITS, e)).add_(total >> scalar_like(1, total)).div_(total, rounding_mode="floor")
    return p.scatter_add_(1, as_dtype(y, torch.int64).view(-1, 1), _minus_one_hot(p.shape[0], p.device))


@lru_cache(maxsize=64)
def _minus_one_hot(rows: int, device: torch.device) -> Tensor:
    """``-(1 << PROB_FRAC_BITS)`` as an int64 [rows, 1] tensor: the one-hot term of the gradient."""
    return torch.full((rows, 1), -(1 << PROB_FRAC_BITS), dtype=torch.int64, device=device)


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
    grad_bound: int | None = None,
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

    ``grad_bound``, when given, is a bound on ``|grad_sum|`` the caller knows (tighter
    than 2**31); with a Python-int ``grad_frac`` it lets some operations be skipped.
    """
    if isinstance(grad_frac, int):
        t_int = grad_frac + (RECIP_BITS + lr_shift - weight_frac_bits)
        bound = INT32_MAX if grad_bound is None else min(grad_bound, INT32_MAX)
        return _sgd_update_host(param, grad_sum, t_int, batch_size, momentum, momentum_shift, bound)
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


def _sgd_update_host(
    param: Tensor,
    grad_sum: Tensor,
    t: int,
    batch_size: int,
    momentum: Tensor | None,
    momentum_shift: int | None,
    bound: int,
) -> tuple[Tensor, Tensor | None]:
    """:func:`sgd_update` with the shift ``t`` a Python int and ``|grad_sum| <= bound``:
    the same values, fewer operations (clamps that the bounds show cannot bind are skipped)."""
    r_b = recip_batch(batch_size)
    u_bound = 1 << 30  # |u| <= u_bound
    if r_b & (r_b - 1) == 0:
        # power-of-two batch: round_shift(g * 2**k, t) = round_shift(g, t - k) in int32 (|g| < 2**31)
        g = as_dtype(grad_sum, torch.int32)
        t -= r_b.bit_length() - 1
        if t >= 1:
            # |g| < 2**31 makes |u| <= 2**30: the clamp to +-2**30 cannot bind
            if bound < INT32_MAX:
                # |round_shift(g, t)| <= round_shift(bound, t): 0 when bound < 2**(t-1)
                u_bound = (bound + (1 << (t - 1))) >> t
                u = round_shift_bounded(g, t, bound) if u_bound else None
            else:  # ((g >> (t-1)) + 1) >> 1, shift capped at 31 as any larger one gives the same
                one = scalar_like(1, g)
                u = (g >> scalar_like(min(t - 1, 31), g)).add_(one).bitwise_right_shift_(one)
        elif bound << -t <= 1 << 30:  # the clamp cannot bind and the shift cannot overflow
            u = g << scalar_like(-t, g)
            u_bound = bound << -t
        else:
            u = _left_shift_sat30(g, -t)
    else:
        g = grad_sum.to(torch.int64)
        g = g * scalar_like(r_b, g)  # |g| < 2**31 and R_B < 2**31: |g * R_B| < 2**62
        if t >= 1:
            u = round_shift_bounded(g, t, (1 << 62) - 1).clamp_(-(1 << 30), 1 << 30).to(torch.int32)
        else:
            u = _left_shift_sat30(g, -t).to(torch.int32)
    # u is None where the bounds show the step rounds to 0 for every element
    param = as_dtype(param, torch.int32)
    if momentum is None:
        return (param.clamp(-PARAM_MAX, PARAM_MAX) if u is None else _sub_clamp(param, u)), None
    assert momentum_shift is not None
    v = as_dtype(momentum, torch.int32)
    # v - round_shift(v, m) + u; |v| < 2**30 and m <= 16: (v + 2**(m-1)) >> m cannot overflow
    new_v = round_shift_bounded(v, momentum_shift, PARAM_MAX)
    torch.sub(v, new_v, out=new_v)
    if u is not None:
        new_v.add_(u)
    if u_bound > _momentum_headroom(momentum_shift):
        new_v.clamp_(-PARAM_MAX, PARAM_MAX)
    new_p = torch.sub(param, new_v) if u is None else torch.sub(param, new_v, out=u)
    return new_p.clamp_(-PARAM_MAX, PARAM_MAX), new_v


@lru_cache(maxsize=None)
def _momentum_headroom(m: int) -> int:
    """The largest |u| for which ``v - round_shift(v, m) + u`` stays in [-PARAM_MAX, PARAM_MAX]
    for every |v| <= PARAM_MAX (so the clamp cannot bind).

    ``f(v) = v - round_shift(v, m)`` is non-decreasing (round_shift grows by 0 or 1 when
    v grows by 1), so it ranges over ``[f(-PARAM_MAX), f(PARAM_MAX)]``.
    """
    half = 1 << (m - 1)
    hi = PARAM_MAX - ((PARAM_MAX + half) >> m)  # f(PARAM_MAX)
    lo = -PARAM_MAX - ((-PARAM_MAX + half) >> m)  # f(-PARAM_MAX)
    return min(PARAM_MAX - hi, lo + PARAM_MAX)


def _left_shift_sat30(g: Tensor, left: int) -> Tensor:
    """``clamp(g << left, -2**30, 2**30)`` for ``left >= 0`` without overflow (clamp first)."""
    left = min(left, 30)  # a non-zero value shifted by 30 or more saturates anyway
    lim = (1 << 30) >> left
    return g.clamp(-lim, lim).bitwise_left_shift_(scalar_like(left, g))


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
    return torch.sub(as_dtype(param, torch.int32), u, out=u).clamp_(-PARAM_MAX, PARAM_MAX)

"""Exact held-out metrics of a state, and export to an ordinary float model (docs/protocol.md §7).

``evaluate`` runs the family's exact forward pass with per-example quantisation, so an
example's logits (and therefore every metric) do not depend on how the evaluation set is
cut into chunks, on the device, or on the GEMM path: the numbers are consensus-grade
integers that a job's result can quote.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import torch
from torch import Tensor

from pouw.arith import Backend, log2_fixed, softmax_exp
from pouw.errors import PouwError
from pouw.families import State, get_family
from pouw.spec import JobSpec

__all__ = ["Metrics", "evaluate", "export_torch", "FloatFeatures", "LOSS_FRAC_BITS", "EVAL_CHUNK"]

LOSS_FRAC_BITS: Final = 20
"""Per-example losses are integers in units of 2**-20 nat."""

EVAL_CHUNK: Final = 1024
"""Examples per forward pass (any value gives the same metrics)."""

_LN2_Q30: Final = 744261118  # round(ln(2) * 2**30); log2 values < 2**26, so the product < 2**56


@dataclass(frozen=True)
class Metrics:
    """Exact integer metrics of a model state on a labelled set, with float views."""

    correct: int
    """Examples whose predicted class (first index of the maximal logit) equals the label."""
    total: int
    """Examples evaluated."""
    accuracy_ppm: int
    """round_half_up(correct * 10**6 / total)."""
    loss_sum_q20: int
    """Sum over examples of the cross-entropy in units of 2**-20 nat (see loss rule)."""
    loss_micro: int
    """round_half_up(mean loss * 10**6)."""
    loss_milli: int
    """round_half_up(mean loss * 10**3)."""

    @property
    def accuracy(self) -> float:
        return self.accuracy_ppm / 1e6

    @property
    def loss(self) -> float:
        return self.loss_micro / 1e6

    def to_dict(self) -> dict[str, int]:
        return {
            "correct": self.correct,
            "total": self.total,
            "accuracy_ppm": self.accuracy_ppm,
            "loss_sum_q20": self.loss_sum_q20,
            "loss_micro": self.loss_micro,
            "loss_milli": self.loss_milli,
        }


def _round_div(num: int, den: int) -> int:
    return (num + den // 2) // den


def predictions(logits: Tensor) -> Tensor:
    """First index of the maximal logit per row (explicit tie-break, exact on every device)."""
    c = logits.shape[1]
    cols = torch.arange(c, device=logits.device).expand_as(logits)
    is_max = logits == logits.amax(dim=1, keepdim=True)
    return torch.where(is_max, cols, c).amin(dim=1)


def example_losses(logits: Tensor, y: Tensor, act_frac_bits: int) -> Tensor:
    """Cross-entropy per example in 2**-20 nat, from the same exp table as training.

    ``e = softmax_exp(z)``, ``S = sum_j e_j``, ``t = max(e_y, 1)``;
    ``loss = floor((log2_fixed(S) - log2_fixed(t)) * round(ln2 * 2**30) / 2**30)``.
    """
    e = softmax_exp(logits, act_frac_bits)
    total = e.sum(dim=1)
    target = e.gather(1, y.to(torch.int64).view(-1, 1)).squeeze(1).clamp(min=1)
    l2 = log2_fixed(total, LOSS_FRAC_BITS) - log2_fixed(target, LOSS_FRAC_BITS)
    return (l2 * _LN2_Q30) >> 30


def evaluate(spec: JobSpec, state: State, x: Tensor, y: Tensor, backend: Backend) -> Metrics:
    """Exact accuracy and cross-entropy of ``state`` on (x int8 [N, *input_shape], y int64 [N])."""
    n = int(x.shape[0])
    if n == 0 or int(y.shape[0]) != n:
        raise PouwError("evaluation set must be non-empty with one label per example", expected=n, got=int(y.shape[0]))
    family = get_family(spec.family)
    state = {k: v.to(backend.device) for k, v in state.items()}
    correct = 0
    loss_sum = 0
    for lo in range(0, n, EVAL_CHUNK):
        xb = x[lo : lo + EVAL_CHUNK].to(backend.device)
        yb = y[lo : lo + EVAL_CHUNK].to(backend.device)
        z = family.logits(spec, state, xb, backend)
        correct += int((predictions(z) == yb).sum().item())
        loss_sum += int(example_losses(z, yb, spec.act_frac_bits).sum().item())
    den = n << LOSS_FRAC_BITS
    return Metrics(
        correct=correct,
        total=n,
        accuracy_ppm=_round_div(correct * 10**6, n),
        loss_sum_q20=loss_sum,
        loss_micro=_round_div(loss_sum * 10**6, den),
        loss_milli=_round_div(loss_sum * 10**3, den),
    )


class FloatFeatures(torch.nn.Module):
    """A trained model that takes the original float features of its dataset.

    It quantises them exactly as the dataset was made (``q = clip(rint(x * feature_scale),
    -127, 127)`` in float64, round half to even, with one scale for all features or one
    per feature element of the flattened example, as ``pouw.datasets.quantize_features``),
    then feeds ``q * 2**-input_frac_bits`` to ``model``: the same int8 inputs the job
    trained on.
    """

    feature_scale: Tensor  # float64: a scalar, or one per feature element

    def __init__(self, model: torch.nn.Module, feature_scale: float | Sequence[float], input_frac_bits: int) -> None:
        super().__init__()
        self.model = model
        self.per_feature = not isinstance(feature_scale, (int, float))
        scale = torch.tensor(feature_scale, dtype=torch.float64)
        self.register_buffer("feature_scale", scale, persistent=False)  # not in state_dict: the file's tensors stay the model's
        self.input_scale = 2.0 ** -input_frac_bits

    def forward(self, x: Tensor) -> Tensor:
        x64 = x.to(torch.float64)
        flat = x64.reshape(x64.shape[0], -1) if self.per_feature else x64
        q = torch.clamp(torch.round(flat * self.feature_scale), -127, 127).reshape(x64.shape)
        return self.model((q * self.input_scale).to(torch.float32))

    def extra_repr(self) -> str:
        return f"per_feature={self.per_feature}, input_scale={self.input_scale!r}"


def export_torch(spec: JobSpec, state: State, feature_scale: float | Sequence[float] | None = None) -> torch.nn.Module:
    """A float32 torch model with the state's weights (value = integer * 2**-weight_frac_bits).

    Without ``feature_scale``, feed it ``x_int8.float() * 2**-input_frac_bits``. With the
    dataset's ``feature_scale`` (a dataset made by ``pouw-node dataset make`` records it),
    it is wrapped in :class:`FloatFeatures` and takes the original float features. It
    computes the same architecture without the int8 quantisation of the exact path, so
    its argmax agrees with the exact evaluation on nearly all examples (measured in
    tests/pouw/test_evaluate.py). Its ``state_dict`` keys are the family's own only
    without the wrapper (the wrapper's are prefixed ``model.``).
    """
    model = get_family(spec.family).to_torch(spec, state)
    if feature_scale is None:
        return model
    return FloatFeatures(model, feature_scale, spec.input_frac_bits)

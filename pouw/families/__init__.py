"""The task catalogue: each family turns a JobSpec into an exact, pure training step.

A family is a small object with the methods of :class:`TaskFamily`. Everything a
validator recomputes goes through ``init_state`` and ``step``; ``logits`` and
``to_torch`` serve evaluation and export. States are ``dict[str, Tensor]`` of integer
tensors whose names, dtypes and shapes (``layout``) are fixed by the spec.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from pouw.errors import SpecError

if TYPE_CHECKING:
    from pouw.arith import Backend
    from pouw.spec import JobSpec, Limits

__all__ = ["State", "TensorLayout", "TaskFamily", "get_family"]

State = dict[str, Tensor]
"""Integer tensors of one model state, in the family's canonical name order."""

TensorLayout = list[tuple[str, torch.dtype, tuple[int, ...]]]
"""(name, dtype, shape) of every state tensor, in canonical order."""


class TaskFamily(Protocol):
    """What every task family provides. All methods are deterministic functions of their inputs."""

    name: str

    def validate(self, spec: "JobSpec", limits: "Limits") -> None:
        """Family-specific shape rules; raises SpecError naming the field."""

    def layout(self, spec: "JobSpec") -> TensorLayout:
        """Names, dtypes and shapes of the state tensors, in canonical order."""

    def init_state(self, spec: "JobSpec", seed: bytes) -> State:
        """Deterministic initial state from ``seed`` via pouw.prng (CPU tensors)."""

    def step(self, spec: "JobSpec", state: State, x: Tensor, y: Tensor, backend: "Backend") -> State:
        """One exact SGD step on batch ``x`` (int8 [B, *input_shape]), ``y`` (int64 [B]).

        Pure: returns a new state on ``backend.device`` and never modifies ``state``.
        """

    def logits(self, spec: "JobSpec", state: State, x: Tensor, backend: "Backend") -> Tensor:
        """Exact int32 logits [B, C] (act_frac_bits fractional bits), per-example quantisation.

        Each example's logits do not depend on the other examples of ``x``.
        """

    def work_units(self, spec: "JobSpec") -> int:
        """Cost of one step: the documented FLOP count of forward + backward + update."""

    def state_bytes(self, spec: "JobSpec") -> int:
        """Length of the serialised state (pouw.state)."""

    def to_torch(self, spec: "JobSpec", state: State) -> torch.nn.Module:
        """An ordinary float32 model with the state's weights (inputs scaled by 2**-input_frac_bits)."""


def get_family(name: str) -> TaskFamily:
    """The family named ``name``; SpecError("family") for a name not in the catalogue."""
    if name == "mlp":
        from pouw.families.mlp import MLP

        return MLP
    if name == "cnn":
        from pouw.families.cnn import CNN

        return CNN
    raise SpecError("family", "unknown task family", expected=["mlp", "cnn"], got=name)

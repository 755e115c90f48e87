"""One training step of a job, as miners run it and validators recompute it.

``compute_step`` is the whole recomputed path in three lines: draw the batch indices of
step ``i`` from its batch seed (an accumulator value of the trajectory, :mod:`pouw.commit`;
the PRNG is :mod:`pouw.prng`), gather those rows of the training set, apply the task
family's exact step. Nothing else may influence the result. ``run_segment`` chains it
over the steps of one segment.
"""
from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

import torch

from pouw.datasets import Dataset
from pouw.errors import DatasetError
from pouw.prng import batch_indices_array

if TYPE_CHECKING:  # the arithmetic core; imported lazily at run time
    from pouw.arith import Backend
    from pouw.spec import JobSpec
    from pouw.state import State

__all__ = [
    "compute_step",
    "run_segment",
    "check_compatible",
    "device_tensors",
    "batch_for_step",
    "state_to_device",
]


# dataset -> {device string: (x_train, y_train) on that device}. Weak keys: a dataset that
# nobody holds any more drops its device copies with it.
_DEVICE_CACHE: weakref.WeakKeyDictionary[Dataset, dict[str, tuple[torch.Tensor, torch.Tensor]]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_LOCK = threading.Lock()


def check_compatible(spec: JobSpec, dataset: Dataset) -> None:
    """Refuse a dataset whose input shape or class count differs from the spec's."""
    want_shape = tuple(int(d) for d in spec.input_shape)
    if dataset.input_shape != want_shape:
        raise DatasetError("dataset input shape differs from the job spec", expected=want_shape, got=dataset.input_shape)
    if dataset.num_classes != int(spec.num_classes):
        raise DatasetError("dataset class count differs from the job spec", expected=int(spec.num_classes), got=dataset.num_classes)


def device_tensors(dataset: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_train, y_train)`` on ``device``, copied there once per (dataset, device)."""
    key = str(torch.device(device))
    with _CACHE_LOCK:
        per_dataset = _DEVICE_CACHE.setdefault(dataset, {})
        cached = per_dataset.get(key)
        if cached is None:
            cached = (dataset.x_train.to(device).contiguous(), dataset.y_train.to(device).contiguous())
            per_dataset[key] = cached
    return cached


def batch_for_step(
    dataset: Dataset, seed: bytes, i: int, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of step ``i``: rows ``batch_indices(seed, i, B, N)`` of the training set.

    Returns ``x`` int8 ``[B, *input_shape]`` and ``y`` int64 ``[B]`` on ``device``.
    """
    if i < 1:
        raise ValueError(f"step index must be >= 1, got {i}")
    x_all, y_all = device_tensors(dataset, device)
    idx = batch_indices_array(seed, i, batch_size, int(x_all.shape[0]))
    idx_t = torch.from_numpy(idx)
    if x_all.device.type != "cpu":
        idx_t = idx_t.to(x_all.device, non_blocking=True)
    return x_all.index_select(0, idx_t), y_all.index_select(0, idx_t)


def state_to_device(state: State, device: torch.device) -> State:
    """The state's tensors on ``device`` (no copy for tensors already there)."""
    return {name: t.to(device) for name, t in state.items()}


def compute_step(spec: JobSpec, dataset: Dataset, state: State, seed: bytes, i: int, backend: Backend) -> State:
    """State ``s_i`` from ``s_{i-1}``: the exact step on the batch drawn for step ``i``.

    Pure: ``state`` is not modified. Bit-identical on every device, thread count and
    backend (the families' arithmetic guarantees it; the batch comes from keccak).
    """
    from pouw.families import get_family

    family = get_family(spec.family)
    x, y = batch_for_step(dataset, seed, i, int(spec.batch_size), backend.device)
    return family.step(spec, state, x, y, backend)  # the family moves the state to the device


def run_segment(
    spec: JobSpec, dataset: Dataset, state: State, seed: bytes, first: int, last: int, backend: Backend
) -> State:
    """Steps ``first .. last`` (inclusive) from ``state`` = ``s_{first-1}``, every batch drawn
    from ``seed``: one segment of a trajectory (docs/protocol.md §14), as the miner runs it
    and a validator recomputes it."""
    if not 1 <= first <= last:
        raise ValueError(f"segment steps must satisfy 1 <= first <= last, got {first}..{last}")
    for i in range(first, last + 1):
        state = compute_step(spec, dataset, state, seed, i, backend)
    return state

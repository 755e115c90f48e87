"""The cost model: work units of one training step, fixed per-step costs included (§6).

A step's work units are what its lottery draw is worth, so they must track what a step
costs a miner: not only the matrix products (multiply-adds), but what every step pays
whatever its size, and what scales with activations and with the state:

* ``flops``  -- 2 per multiply-add of the step's matrix products (forward, weight and
  input gradients) plus the bias and update arithmetic (:func:`dense_work`);
* ``acts``   -- elements the step touches outside the products: for each matrix layer
  with M rows, K inputs and N outputs, ``M * (K + N)`` (gathering, rescaling, ReLU,
  quantising activations and gradients; for the CNN, the im2col gather and col2im
  scatter);
* ``params`` -- state elements (weights, biases, momentum): quantised, updated and
  hashed once per step (the miner's commitment at segment length 1);
* ``layers`` -- matrix layers (each costs a fixed number of kernel launches);
* ``fixed``  -- 1: the batch draw, the accumulator and ticket, and the per-step launches.

``work_units = flops + ACT_UNITS * acts + PARAM_UNITS * params + LAYER_UNITS * layers
+ FIXED_UNITS``, with integer coefficients measured on the reference CPU miner
(``bench/bench_work_units.py --fit``): the flop-equivalents a step spends on each. A
work unit is thus "one flop of the reference machine's matrix products, or the time it
takes"; every admissible spec then earns about the same work units per second (the
benchmark prints the spread), so neither a tiny job nor a huge one moves the chain's
block time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pouw.spec import JobSpec

ACT_UNITS: Final = 1_200
PARAM_UNITS: Final = 1_600
LAYER_UNITS: Final = 3_000_000
FIXED_UNITS: Final = 40_000_000

__all__ = ["dense_work", "layer_shapes", "cost_features", "work_units", "ACT_UNITS", "PARAM_UNITS",
           "LAYER_UNITS", "FIXED_UNITS"]


def dense_work(m: int, k: int, n: int, first: bool, momentum: bool) -> int:
    """Flops of one dense (or im2col) layer, M rows, K inputs, N outputs (§6)."""
    mult = 4 if first else 6
    upd = 4 if momentum else 2
    return mult * m * k * n + 2 * m * n + upd * (k * n + n)


def layer_shapes(spec: "JobSpec") -> list[tuple[int, int, int]]:
    """``(M, K, N)`` of every matrix layer of the step, in order."""
    from math import prod

    b = spec.batch_size
    if spec.family == "mlp":
        dims = [prod(spec.input_shape), *spec.hidden, spec.num_classes]
        return [(b, dims[i], dims[i + 1]) for i in range(len(dims) - 1)]
    if spec.family == "cnn":
        from pouw.families import get_family

        geo = get_family("cnn").geometry(spec)  # type: ignore[attr-defined]
        k2 = spec.kernel_size**2
        out = [(b * geo[l + 1][0] * geo[l + 1][1], k2 * geo[l][2], geo[l + 1][2]) for l in range(len(spec.hidden))]
        h, w, c = geo[-1]
        out.append((b, h * w * c, spec.num_classes))
        return out
    raise ValueError(f"unknown family {spec.family!r}")


def cost_features(spec: "JobSpec") -> dict[str, int]:
    """The cost model's counts for one step of ``spec`` (see the module docstring)."""
    shapes = layer_shapes(spec)
    momentum = spec.momentum_shift is not None
    flops = 4 * spec.batch_size * spec.num_classes + sum(
        dense_work(m, k, n, i == 0, momentum) for i, (m, k, n) in enumerate(shapes)
    )
    params = sum(k * n + n for _, k, n in shapes) * (2 if momentum else 1)
    return {
        "fixed": 1,
        "layers": len(shapes),
        "flops": flops,
        "acts": sum(m * (k + n) for m, k, n in shapes),
        "params": params,
    }


def work_units(spec: "JobSpec") -> int:
    """Work units of one step of ``spec``: an exact integer, the same on every node."""
    f = cost_features(spec)
    return (
        f["flops"]
        + ACT_UNITS * f["acts"]
        + PARAM_UNITS * f["params"]
        + LAYER_UNITS * f["layers"]
        + FIXED_UNITS * f["fixed"]
    )

"""The cost model: work units of one training step, fixed per-step costs included (§6).

A step's work units are what its lottery draw is worth, so they must track what a step
costs a miner: not only the matrix products, but what every step pays whatever its
size, and what scales with activations and with the state. **One work unit is one
picosecond of the reference CPU miner's full step** (the exact step, the batch draw,
the state hash and accumulator at every step), predicted from counts that are exact
integers of the spec:

* ``flops``       -- 2 per multiply-add of the step's matrix products (forward, weight
  and input gradients) plus the bias and update arithmetic (:func:`dense_work`);
* ``dense_acts``  -- for each dense layer with M rows, K inputs and N outputs,
  ``M * (K + N)``: the activation and gradient elements it gathers, rescales, masks and
  quantises;
* ``conv_acts``   -- the same for each conv layer (its im2col rows: the gather, the
  col2im scatter-add in int64 and the wider tensors cost more per element);
* ``params``      -- state elements (weights, biases, momentum): quantised, updated and
  hashed once per step;
* ``dense_layers``, ``conv_layers`` -- each costs a fixed number of kernel launches;
* ``fixed``       -- 1: the batch draw, the accumulator and ticket, the per-step launches.

``work_units = sum(COEFFICIENT * count)``; the coefficients below were fitted on the
reference machine (``bench/bench_work_units.py --fit``: least squares on measured step
times over 19 specs, the per-flop cost measured apart on a large product). Every
admissible spec then earns about the same work units per second on that machine
(``bench/bench_work_units.py`` prints the spread against the standing job), so neither
a tiny job nor a huge one moves the chain's block time, and a job's price per work unit
is a price per second of a miner's time.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pouw.spec import JobSpec

# Picoseconds of the reference CPU miner (2-core AMD EPYC with AVX-512 VNNI, torch 2.13
# CPU build, 2 threads, machine idle), rounded from `bench/bench_work_units.py --fit`
# (2026-12-02):
FLOP_UNITS: Final = 1  # measured 0.89 ps per flop of the exact int8 GEMM
DENSE_ACT_UNITS: Final = 1_900
CONV_ACT_UNITS: Final = 2_900
PARAM_UNITS: Final = 940
DENSE_LAYER_UNITS: Final = 76_000_000
CONV_LAYER_UNITS: Final = 560_000_000
FIXED_UNITS: Final = 88_000_000

__all__ = ["dense_work", "layer_shapes", "cost_features", "work_units", "FLOP_UNITS", "DENSE_ACT_UNITS", "CONV_ACT_UNITS", "PARAM_UNITS",
           "DENSE_LAYER_UNITS", "CONV_LAYER_UNITS", "FIXED_UNITS"]


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
    conv = len(spec.hidden) if spec.family == "cnn" else 0
    return {
        "fixed": 1,
        "dense_layers": len(shapes) - conv,
        "conv_layers": conv,
        "flops": flops,
        "dense_acts": sum(m * (k + n) for m, k, n in shapes[conv:]),
        "conv_acts": sum(m * (k + n) for m, k, n in shapes[:conv]),
        "params": params,
    }


def work_units(spec: "JobSpec") -> int:
    """Work units of one step of ``spec``: an exact integer, the same on every node."""
    f = cost_features(spec)
    return (
        FLOP_UNITS * f["flops"]
        + DENSE_ACT_UNITS * f["dense_acts"]
        + CONV_ACT_UNITS * f["conv_acts"]
        + PARAM_UNITS * f["params"]
        + DENSE_LAYER_UNITS * f["dense_layers"]
        + CONV_LAYER_UNITS * f["conv_layers"]
        + FIXED_UNITS * f["fixed"]
    )

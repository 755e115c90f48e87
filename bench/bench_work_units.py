"""Do work units measure cost? Work units per second of the reference CPU miner across specs.

    python bench/bench_work_units.py [--quick] [--fit]

For a spread of admissible specs, from the smallest (a 4-2 logistic regression, batch 1)
to the largest the default genesis admits, it times the miner's full step (exact step,
batch draw, state hash and accumulator at every step: segment length 1, the most the
protocol ever asks) and prints the work units per second each spec earns, as a ratio to
the standing job's (genesis/default.json) measured in the same run. The protocol's goal
(docs/protocol.md §6): every spec within a factor of 2, so that no job, however small or
large, slows the chain or pays a miner more per second than another.

``--fit`` refits the cost model's coefficients (least squares on the measured times,
relative error) and prints them: how the constants in ``pouw/families/costs.py`` were
derived on the reference machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pouw.arith import select_backend  # noqa: E402
from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, load_digits, synthetic_blobs  # noqa: E402
from pouw.families import get_family  # noqa: E402
from pouw.families.costs import cost_features  # noqa: E402
from pouw.spec import JobSpec  # noqa: E402
from pouw.trainer import KeepPolicy, Trainer  # noqa: E402

SEED = b"\x5e" * 32


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    input_shape: tuple[int, ...]
    classes: int
    hidden: list[int]
    batch: int
    momentum: int | None = None
    kernel: int = 3
    stride: int = 1


CASES = [
    Case("standing job (64-64-10, b32)", "mlp", (64,), 10, [64], 32),
    Case("smallest: logistic 4-2, b1", "mlp", (4,), 2, [], 1),
    Case("iris-like 4-16-3, b8", "mlp", (4,), 3, [16], 8),
    Case("64-128-10, b32, momentum", "mlp", (64,), 10, [128], 32, 3),
    Case("deep 64-8x32-10, b16", "mlp", (64,), 10, [32] * 8, 16),
    Case("wide batch 64-64-10, b1024", "mlp", (64,), 10, [64], 1024),
    Case("784-256-10, b128", "mlp", (784,), 10, [256], 128),
    Case("784-512-10, b256, momentum", "mlp", (784,), 10, [512], 256, 3),
    Case("64-[256,256]-10, b64", "mlp", (64,), 10, [256, 256], 64),
    Case("cnn 1x8x8 [8], b32", "cnn", (1, 8, 8), 10, [8], 32),
    Case("cnn 1x8x8 [16,16], b16", "cnn", (1, 8, 8), 10, [16, 16], 16),
    Case("cnn 3x16x16 [8], stride 2, b64", "cnn", (3, 16, 16), 10, [8], 64, None, 3, 2),
    Case("cnn 1x28x28 [8,16], b32, momentum", "cnn", (1, 28, 28), 10, [8, 16], 32, 3),
    Case("cnn 1x8x8 [4], k1, b4", "cnn", (1, 8, 8), 10, [4], 4, None, 1),
    Case("cnn 3x32x32 [16,32], b32", "cnn", (3, 32, 32), 10, [16, 32], 32),
]
CALIBRATION = [  # more shapes for the fit, near the default genesis's limits
    Case("1000-500-10, b1 (2 MB state)", "mlp", (1000,), 10, [500], 1),
    Case("64-64-10, b4096", "mlp", (64,), 10, [64], 4096),
    Case("cnn 1x32x32 [32], b64", "cnn", (1, 32, 32), 10, [32], 64),
    Case("cnn 4x16x16 [8,8,8], b128", "cnn", (4, 16, 16), 10, [8, 8, 8], 128),
]


def make(case: Case) -> tuple[JobSpec, Dataset]:
    if case.input_shape == (64,) and case.classes == 10:
        ds = load_digits()
    elif case.input_shape == (1, 8, 8):
        dig = load_digits()
        ds = Dataset(dig.x_train.reshape(-1, 1, 8, 8), dig.y_train, dig.x_test.reshape(-1, 1, 8, 8), dig.y_test,
                     10, "digits-2d")
    else:
        ds = synthetic_blobs(b"\x09" * 32, 2048, 64, case.input_shape, case.classes)
    spec = JobSpec.from_dict({
        "family": case.family, "dataset": dataset_id(dataset_to_bytes(ds)), "input_shape": list(case.input_shape),
        "num_classes": case.classes, "hidden": case.hidden, "batch_size": case.batch, "lr_shift": 4,
        "momentum_shift": case.momentum, "steps": 10**6, "kernel_size": case.kernel, "stride": case.stride,
    })
    return spec, ds


class MinerLoop:
    """The miner's full step at segment length 1 on one spec, timed in short rounds."""

    def __init__(self, spec: JobSpec, ds: Dataset) -> None:
        backend = select_backend("cpu")
        s0 = get_family(spec.family).init_state(spec, b"\x01" * 32)
        self.tr = Trainer(spec, ds, s0, SEED, backend, m=1, keep=KeepPolicy(every=1 << 30))
        self.tr.run(max_steps=3)  # warm-up
        t0 = time.perf_counter()
        self.tr.run(max_steps=3)
        self.n = max(2, int(0.1 / max(1e-6, (time.perf_counter() - t0) / 3)))  # steps per ~0.1 s round
        self.best = float("inf")

    def round(self) -> None:
        t0 = time.perf_counter()
        self.tr.run(max_steps=self.n)
        self.best = min(self.best, (time.perf_counter() - t0) / self.n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing per spec")
    ap.add_argument("--fit", action="store_true", help="refit the cost coefficients and print them")
    ap.add_argument("--json", help="write the measurements to this file")
    args = ap.parse_args(argv)
    rounds = 8 if args.quick else 25
    print(f"work units per second of the CPU miner (segment length 1), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    cases = CASES + (CALIBRATION if args.fit else [])
    made = [make(case) for case in cases]
    loops = [MinerLoop(spec, ds) for spec, ds in made]
    for _ in range(rounds):  # interleaved short rounds, best of each: load from other processes hits all alike
        for loop in loops:
            loop.round()
    rows = [(case.name, spec, loop.best, get_family(spec.family).work_units(spec))
            for case, (spec, _), loop in zip(cases, made, loops)]
    base = rows[0][3] / rows[0][2]
    print(f"{'spec':38s} {'ms/step':>9s} {'work units/step':>16s} {'work units/s':>14s} {'vs standing':>12s}")
    ratios = []
    for name, spec, per_step, w in rows:
        rate = w / per_step
        if any(c.name == name for c in CASES):
            ratios.append(rate / base)
        print(f"{name:38s} {per_step * 1e3:9.3f} {w:16,d} {rate:14.4g} {rate / base:12.2f}")
    spread = max(ratios) / min(ratios)
    print(f"spread: min {min(ratios):.2f}, max {max(ratios):.2f} of the standing job's rate "
          f"(max/min {spread:.2f}); goal: every spec within 0.5 .. 2.0")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"name": n, "seconds": t, "features": cost_features(s)} for n, s, t, _ in rows], f, indent=1)
    if args.fit:
        fit(rows)
    return 0


def gemm_seconds_per_flop() -> float:
    """The exact int8 matrix product's cost per flop (2 per multiply-add), measured on a
    product large enough that nothing else counts: the ``flops`` coefficient. (Within the
    default genesis's limits no step is dominated by its products on this CPU, so a fit
    over steps cannot see it.)"""
    from pouw.arith import int_matmul

    backend = select_backend("cpu")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (4096, 2048), generator=g, dtype=torch.int8)
    b = torch.randint(-127, 128, (2048, 2048), generator=g, dtype=torch.int8)
    int_matmul(a, b, backend)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        int_matmul(a, b, backend)
        best = min(best, time.perf_counter() - t0)
    return best / (2 * 4096 * 2048 * 2048)


def fit(rows: list) -> None:  # type: ignore[type-arg]
    """Least squares of per-step time on the cost features (the flops coefficient measured
    apart), weighted to relative error; coefficients in picoseconds (the work unit)."""
    names = list(cost_features(rows[0][1]))
    flop_s = gemm_seconds_per_flop()
    X = np.array([[cost_features(spec)[k] for k in names] for _, spec, _, _ in rows], dtype=np.float64)
    y_all = np.array([t for _, _, t, _ in rows])
    fi = names.index("flops")
    y = y_all - X[:, fi] * flop_s
    X = np.delete(X, fi, axis=1)
    names_wo = [k for k in names if k != "flops"]
    Xw, yw = X / y_all[:, None], y / y_all
    coef, *_ = np.linalg.lstsq(Xw, yw, rcond=None)
    for _ in range(10):  # non-negative: drop negative coefficients and refit
        neg = coef < 0
        if not neg.any():
            break
        coef[neg] = 0
        keep = ~neg
        sub, *_ = np.linalg.lstsq(Xw[:, keep], yw, rcond=None)
        coef[keep] = sub
    print(f"\nint8 GEMM: {flop_s * 1e12:.3f} ps per flop ({1 / flop_s / 1e9:.0f} Gflop/s)")
    print("fitted cost per feature unit, in picoseconds of this machine (= work units):")
    print(f"  {'flops':12s} {flop_s * 1e12:14,.3f} ps  (measured apart)")
    for k, c in zip(names_wo, coef):
        print(f"  {k:12s} {c * 1e12:14,.1f} ps")
    pred = X @ coef + np.array([cost_features(spec)["flops"] for _, spec, _, _ in rows]) * flop_s
    for (name, _, t, _), p in zip(rows, pred):  # noqa: B007
        print(f"  {name:38s} measured {t * 1e3:8.3f} ms  model {p * 1e3:8.3f} ms  ({p / t:.2f})")


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the exact training step against an ordinary float32 torch step.

    python bench/bench_pouw.py [--device cpu|cuda] [--quick]

Prints, for a small MLP (64-128-10, batch 32, digits) and a large MLP
(784-1024-1024-10, batch 256, synthetic data):

* steps/s of the bare exact step (``compute_step``: keccak batch draw + exact step), of a
  float32 torch step of the same architecture, batch and device (plain SGD, softmax
  cross-entropy), and of the miner's full step (``Trainer``: everything the protocol asks
  per step: the step, the BLAKE3 state hash and accumulator at every point, the ticket
  check) at segment lengths m = 1 (the most hashing the protocol can ask; also pipelined:
  the hash of point j overlaps segment j+1), 2, 4 and 16 (the miner's default); the
  ratios miner/exact are the protocol's efficiency (target: >= 0.8 on the large MLP,
  >= 0.7 on the small one);
* on CUDA, the GPU utilisation NVML reports while each loop runs;
* where the time goes: the keccak batch draw and the state hash per step;
* operating points: for 5 s blocks on a network of 1, 4 or 16 machines like this one,
  the segment length a miner may use (``min(16, max_segment_steps(D, w, k))``), its
  measured efficiency there, and the validator's cost for such a block (recomputing its
  k + 5 segments, the most any block asks) as a % of the block's mining work (target:
  <= 2%);
* the digits usefulness figure: held-out accuracy of the exact model and of the
  float32 model trained with the same steps and batches.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from math import prod
from collections.abc import Callable
from dataclasses import dataclass

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pouw.arith import Backend, select_backend  # noqa: E402
from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, load_digits, synthetic_blobs  # noqa: E402
from pouw.engine import batch_for_step, compute_step, device_tensors  # noqa: E402
from pouw.evaluate import evaluate  # noqa: E402
from pouw.families import get_family  # noqa: E402
from pouw.prng import batch_indices  # noqa: E402
from pouw.spec import JobSpec  # noqa: E402
from pouw.commit import max_segment_steps  # noqa: E402
from pouw.state import state_hash  # noqa: E402
from pouw.telemetry import NoGpu, UtilizationSampler, gpu_snapshot  # noqa: E402
from pouw.trainer import KeepPolicy, Trainer  # noqa: E402
from pouw.verifier import Ok, SegmentClaim, verify_segment  # noqa: E402

SEED = b"\x5e" * 32
INIT_SEED = b"\x01" * 32
K_CHALLENGES = 8
TRAJECTORY = 1000
TARGET_BLOCK_S = 5  # genesis/default.json's targetBlockTime
DEFAULT_SEGMENT_STEPS = 16  # consensus/miner.py's default


@dataclass
class Config:
    name: str
    hidden: list[int]
    batch_size: int
    make_data: Callable[[], Dataset]
    steps: dict[str, int]  # timed steps per (device, quick) key


def _sync(backend: Backend) -> None:
    if backend.device.type == "cuda":
        torch.cuda.synchronize(backend.device)


def make_spec(ds: Dataset, hidden: list[int], batch_size: int) -> JobSpec:
    return JobSpec.from_dict(
        {
            "family": "mlp",
            "dataset": dataset_id(dataset_to_bytes(ds)),
            "input_shape": list(ds.input_shape),
            "num_classes": ds.num_classes,
            "hidden": hidden,
            "batch_size": batch_size,
            "lr_shift": 3,
            "momentum_shift": 3,
            "steps": TRAJECTORY,
        }
    )


ROUNDS = 5


class Loop:
    """A timed loop: ``run_n(n)`` runs the next ``n`` steps; keeps the best rate over rounds."""

    def __init__(self, backend: Backend, run_n: Callable[[int], None], warmup: int = 3) -> None:
        self.backend, self.run_n = backend, run_n
        self.best = 0.0
        self.util: list[float] = []
        self.run(warmup, timed=False)

    @classmethod
    def per_step(cls, backend: Backend, fn: Callable[[int], None]) -> "Loop":
        counter = {"i": 0}

        def run_n(n: int) -> None:
            for _ in range(n):
                counter["i"] += 1
                fn(counter["i"])

        return cls(backend, run_n)

    def run(self, n: int, timed: bool = True) -> None:
        _sync(self.backend)
        sampler = UtilizationSampler(index=self.backend.device.index or 0, interval_s=0.05)
        with sampler if timed and self.backend.device.type == "cuda" else _Null():
            t0 = time.perf_counter()
            self.run_n(n)
            _sync(self.backend)
            dt = time.perf_counter() - t0
        if timed:
            self.best = max(self.best, n / dt)
            if sampler.mean() is not None:
                self.util.append(sampler.mean())  # type: ignore[arg-type]

    def utilisation(self) -> float | None:
        return max(self.util) if self.util else None


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def float_model(spec: JobSpec, s0: dict[str, torch.Tensor], device: torch.device) -> torch.nn.Module:
    """The same architecture and initial weights in float32."""
    return get_family("mlp").to_torch(spec, s0).to(device).train()


def bench_config(cfg: Config, backend: Backend, quick: bool) -> None:
    ds = cfg.make_data()
    spec = make_spec(ds, cfg.hidden, cfg.batch_size)
    fam = get_family("mlp")
    s0 = fam.init_state(spec, INIT_SEED)
    key = f"{backend.device.type}{'-quick' if quick else ''}"
    n = cfg.steps[key]
    w = fam.work_units(spec)
    dims = "-".join(str(d) for d in [prod(spec.input_shape), *spec.hidden, spec.num_classes])
    print(f"\n== {cfg.name}: MLP {dims}, batch {spec.batch_size}, {len(ds)} training examples, "
          f"state {fam.state_bytes(spec) / 1e6:.2f} MB, {w / 1e6:.1f} M work units/step")

    device_tensors(ds, backend.device)
    box = {"s": {k: v.to(backend.device) for k, v in s0.items()}}

    def exact(i: int) -> None:  # the bare exact step: keccak batch draw + family step
        box["s"] = compute_step(spec, ds, box["s"], SEED, i, backend)

    # the segment lengths measured: 1 (the most hashing the protocol can ask), 2, 4 and the
    # miner's default; which one a miner may use depends on the block size (the consensus
    # bound max_segment_steps), printed below for networks of 1, 4 and 16 such machines
    warm = Loop.per_step(backend, exact)
    warm.run(max(2, n // ROUNDS))
    keep = KeepPolicy(every=1 << 30)  # the miner keeps few states; keeping costs nothing per step
    pipelined = backend.device.type != "cpu"
    lengths = [1, 2, 4, DEFAULT_SEGMENT_STEPS]
    miners = {f"m={m}": Trainer(spec, ds, s0, SEED, backend, m=m, keep=keep, pipeline=pipelined) for m in lengths}
    if not pipelined:
        miners["m=1 pipelined"] = Trainer(spec, ds, s0, SEED, backend, m=1, keep=keep, pipeline=True)

    model = float_model(spec, s0, backend.device)
    opt = torch.optim.SGD(model.parameters(), lr=2.0 ** -spec.lr_shift)
    x_all, y_all = device_tensors(ds, backend.device)
    x_all_f = x_all.to(torch.float32) * 2.0 ** -spec.input_frac_bits
    gen = torch.Generator(device=backend.device).manual_seed(0)

    def float_step(i: int) -> None:  # float32 baseline: same architecture, batch, device
        idx = torch.randint(0, x_all.shape[0], (spec.batch_size,), device=backend.device, generator=gen)
        loss = torch.nn.functional.cross_entropy(model(x_all_f.index_select(0, idx)), y_all.index_select(0, idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # a validator recomputing a segment from its carried start state (decode, steps, hash)
    # a validator recomputing a segment of m steps from its carried start state (decode,
    # m steps, hash), for each segment length measured
    claims = {}
    for m in lengths:
        tr_v = Trainer(spec, ds, s0, SEED, backend, m=m, keep=KeepPolicy(every=1))
        tr_v.run(max_steps=2 * m)
        claims[m] = SegmentClaim(2, m + 1, 2 * m, tr_v.batch_seed(2), tr_v.point_bytes(1), tr_v.points[1].c)
        assert isinstance(verify_segment(spec, ds, claims[m], backend), Ok)

    def verify_n(m: int, n_steps: int) -> None:
        for _ in range(max(1, n_steps // m)):
            verify_segment(spec, ds, claims[m], backend)

    loops = {
        "float": Loop.per_step(backend, float_step),
        "exact": Loop.per_step(backend, exact),
        **{name: Loop(backend, functools.partial(_run_trainer, tr)) for name, tr in miners.items()},
        **{f"verify m={m}": Loop(backend, functools.partial(verify_n, m), warmup=m) for m in lengths},
    }
    per_round = max(DEFAULT_SEGMENT_STEPS, n // ROUNDS)
    per_round -= per_round % DEFAULT_SEGMENT_STEPS  # whole segments for every segment length measured
    for _ in range(ROUNDS):
        for name, loop in loops.items():
            loop.run(per_round)
    float_sps, exact_sps = loops["float"].best, loops["exact"].best

    # parts of the step -------------------------------------------------------------------
    t0 = time.perf_counter()
    for i in range(1, 51):
        batch_indices(SEED, i, spec.batch_size, len(ds))
    prng_us = (time.perf_counter() - t0) / 50 * 1e6
    t0 = time.perf_counter()
    for _ in range(5):
        state_hash(box["s"], spec)
    hash_ms = (time.perf_counter() - t0) / 5 * 1e3

    print(f"  float32 torch step          {float_sps:10.1f} steps/s   (baseline)")
    print(f"  exact step (compute_step)   {exact_sps:10.1f} steps/s   exact/float32 = {exact_sps / float_sps:.3f}")
    for name in miners:
        rate = loops[name].best
        print(f"  miner step, {name:15s} {rate:10.1f} steps/s   miner/exact = {rate / exact_sps:.3f}   "
              f"miner/float32 = {rate / float_sps:.3f}")
    if backend.device.type == "cuda":
        fmt = lambda u: "n/a" if u is None else f"{u:.0f}%"  # noqa: E731
        print(f"  NVML GPU utilisation while training: exact {fmt(loops['exact'].utilisation())}, "
              f"float32 {fmt(loops['float'].utilisation())}, miner {fmt(loops[f'm={DEFAULT_SEGMENT_STEPS}'].utilisation())}")
    print(f"  parts: keccak batch draw {prng_us:.0f} us/step; BLAKE3 state hash {hash_ms:.2f} ms per point")

    # operating points: 5 s blocks on a network of N machines like this one ------------
    print(f"  at {TARGET_BLOCK_S} s blocks (k = {K_CHALLENGES}; a validator recomputes at most {K_CHALLENGES + 5} "
          "segments of m steps):")
    for machines in (1, 4, 16):
        steps_per_block = max(1, int(warm.best * TARGET_BLOCK_S * machines))
        bound = max_segment_steps(steps_per_block * w, w, K_CHALLENGES)
        m = max(x for x in lengths if x <= min(DEFAULT_SEGMENT_STEPS, bound))
        rate = loops[f"m={m}"].best
        miner_block_s = (steps_per_block + m) / (rate * machines)  # point 1 never wins: one segment more
        verify_block_s = (K_CHALLENGES + 5) * m / loops[f"verify m={m}"].best
        print(f"    {machines:2d} machine(s): D = {steps_per_block:6d} steps, bound m <= {bound:3d}, m = {m:2d}: "
              f"miner/exact = {rate / exact_sps:.3f}; validator {verify_block_s * 1e3:7.1f} ms = "
              f"{100 * verify_block_s / (miner_block_s * machines):.2f}% of the block's work (target <= 2%)")


def _run_trainer(tr: Trainer, n: int) -> None:
    tr.run(max_steps=n)


def digits_usefulness(backend: Backend) -> None:
    ds = load_digits()
    spec = make_spec(ds, [128], 32)
    fam = get_family("mlp")
    s0 = fam.init_state(spec, INIT_SEED)
    state = {k: v.to(backend.device) for k, v in s0.items()}
    for i in range(1, TRAJECTORY + 1):  # the exact steps on the same batches as the float model below
        state = compute_step(spec, ds, state, SEED, i, backend)
    x_test = ds.x_test.to(backend.device)
    exact_acc = evaluate(spec, state, x_test, ds.y_test.to(backend.device), backend).accuracy_ppm / 1e6

    model = float_model(spec, s0, backend.device)
    assert spec.momentum_shift is not None
    opt = torch.optim.SGD(model.parameters(), lr=2.0 ** -spec.lr_shift, momentum=1 - 2.0 ** -spec.momentum_shift)
    for i in range(1, TRAJECTORY + 1):
        x, y = batch_for_step(ds, SEED, i, spec.batch_size, backend.device)
        loss = torch.nn.functional.cross_entropy(model(x.to(torch.float32) * 2.0 ** -spec.input_frac_bits), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = model(x_test.to(torch.float32) * 2.0 ** -spec.input_frac_bits)
    float_acc = (logits.argmax(1).cpu() == ds.y_test).double().mean().item()
    print(f"\n== usefulness: digits MLP 64-128-10, batch 32, lr 2^-3, momentum 1-2^-3, {TRAJECTORY} steps, "
          f"{len(ds.y_test)} held-out examples")
    print(f"  held-out accuracy: exact {100 * exact_acc:.2f}%   float32 {100 * float_acc:.2f}%   "
          f"difference {100 * (exact_acc - float_acc):+.2f} points")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--gemm", choices=["int8", "fp32"], default="int8")
    ap.add_argument("--quick", action="store_true", help="fewer timed steps")
    args = ap.parse_args(argv)
    backend = select_backend(args.device, args.gemm)
    snap = gpu_snapshot()
    gpu = snap.reason if isinstance(snap, NoGpu) else ", ".join(f"{g.name} ({g.memory_total or 0} B)" for g in snap)
    print(f"pouw benchmark: device {backend.device}, gemm {backend.gemm}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads; GPU: {gpu}")
    configs = [
        Config("small", [128], 32, load_digits,
               {"cpu": 3200, "cpu-quick": 800, "cuda": 3200, "cuda-quick": 800}),
        Config("large", [1024, 1024], 256, lambda: synthetic_blobs(b"\x07" * 32, 4096, 512, (784,), 10),
               {"cpu": 160, "cpu-quick": 80, "cuda": 800, "cuda-quick": 160}),
    ]
    for cfg in configs:
        bench_config(cfg, backend, args.quick)
    digits_usefulness(backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

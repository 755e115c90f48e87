"""Benchmark of the exact training step against an ordinary float32 torch step.

    python bench/bench_pouw.py [--device cpu|cuda] [--quick]

Prints, for a small MLP (64-128-10, batch 32, digits) and a large MLP
(784-1024-1024-10, batch 256, synthetic data):

* steps/s of the exact step (``compute_step``: keccak batch draw + exact step), of the
  miner's full step (``Trainer``: + state serialisation + keccak state hash + accumulator;
  serial, and pipelined with the hash in a worker thread), and of a float32 torch step of the same architecture, batch and device (plain SGD,
  softmax cross-entropy); the ratios are against the float32 step measured in this run;
* on CUDA, the GPU utilisation NVML reports while each loop runs;
* where the time goes: the keccak batch draw and the state hash per step;
* the cost of verifying a block (ticket step + k = 8 challenged steps, with state
  decoding and hashing) as a % of a 1000-step trajectory;
* the digits usefulness figure: held-out accuracy of the exact model and of the
  float32 model trained with the same steps and batches.
"""
from __future__ import annotations

import argparse
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
from pouw.state import serialize_state, state_hash  # noqa: E402
from pouw.telemetry import NoGpu, UtilizationSampler, gpu_snapshot  # noqa: E402
from pouw.trainer import KeepPolicy, Trainer  # noqa: E402
from pouw.verifier import Claim, all_ok, verify_steps  # noqa: E402

SEED = b"\x5e" * 32
INIT_SEED = b"\x01" * 32
K_CHALLENGES = 8
TRAJECTORY = 1000


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
    dims = "-".join(str(d) for d in [prod(spec.input_shape), *spec.hidden, spec.num_classes])
    print(f"\n== {cfg.name}: MLP {dims}, batch {spec.batch_size}, {len(ds)} training examples, "
          f"state {fam.state_bytes(spec) / 1e6:.2f} MB, {fam.work_units(spec) / 1e6:.1f} M work units/step")

    # the three loops, timed in interleaved rounds (best round each), so that load from
    # other processes hits them alike -----------------------------------------------------
    device_tensors(ds, backend.device)
    box = {"s": {k: v.to(backend.device) for k, v in s0.items()}}

    def exact(i: int) -> None:  # exact step: keccak batch draw + family step
        box["s"] = compute_step(spec, ds, box["s"], SEED, i, backend)

    # the miner: + serialise, keccak state hash, accumulator; serial, and with the hash of
    # state i in a worker thread while step i+1 computes
    keep = KeepPolicy(every=max(1, TRAJECTORY // 10))
    tr = Trainer(spec, ds, s0, SEED, backend, keep=keep)
    tr_pipe = Trainer(spec, ds, s0, SEED, backend, keep=keep, pipeline=True)

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

    # verification: a validator's claims (ticket step + k challenges) from a short run
    tr_v = Trainer(spec, ds, s0, SEED, backend, keep=KeepPolicy(every=1))
    tr_v.run(max_steps=2 * K_CHALLENGES + 2)
    claims = [Claim(i, prev, tr_v.records[i - 1].h) for i, prev in sorted(tr_v.seal_payload(K_CHALLENGES).items())]
    assert len(claims) == K_CHALLENGES + 1 and all_ok(verify_steps(spec, ds, SEED, claims, backend))

    def verify_n(n_claims: int) -> None:
        for j in range(n_claims):
            verify_steps(spec, ds, SEED, [claims[j % len(claims)]], backend)

    loops = {
        "float": Loop.per_step(backend, float_step),
        "exact": Loop.per_step(backend, exact),
        "miner": Loop(backend, lambda n: None if tr.run(max_steps=n) else None),
        "pipelined": Loop(backend, lambda n: None if tr_pipe.run(max_steps=n) else None),
        "verify": Loop(backend, verify_n, warmup=1),
    }
    per_round = max(1, n // ROUNDS)
    for _ in range(ROUNDS):
        for loop in loops.values():
            loop.run(per_round)
    float_sps, exact_sps, trainer_sps, pipe_sps, verify_cps = (
        loops[k].best for k in ("float", "exact", "miner", "pipelined", "verify")
    )
    float_util, exact_util = loops["float"].utilisation(), loops["exact"].utilisation()

    # parts of the step -------------------------------------------------------------------
    t0 = time.perf_counter()
    for i in range(1, 51):
        batch_indices(SEED, i, spec.batch_size, len(ds))
    prng_us = (time.perf_counter() - t0) / 50 * 1e6
    t0 = time.perf_counter()
    for _ in range(5):
        state_hash(serialize_state(spec, box["s"]))
    hash_ms = (time.perf_counter() - t0) / 5 * 1e3

    print(f"  float32 torch step        {float_sps:10.1f} steps/s   (baseline)")
    print(f"  exact step (compute_step) {exact_sps:10.1f} steps/s   ratio exact/float32 = {exact_sps / float_sps:.3f}"
          f"  (float32 is {float_sps / exact_sps:.2f}x faster)")
    print(f"  miner step (Trainer)      {trainer_sps:10.1f} steps/s   ratio miner/float32 = {trainer_sps / float_sps:.3f}")
    print(f"  miner step, pipelined     {pipe_sps:10.1f} steps/s   ratio miner/float32 = {pipe_sps / float_sps:.3f}"
          "  (hash of s_i overlaps step i+1)")
    print(f"  parts: keccak batch draw {prng_us:.0f} us/step; serialise + keccak state hash {hash_ms:.2f} ms/step")
    if backend.device.type == "cuda":
        fmt = lambda u: "n/a" if u is None else f"{u:.0f}%"  # noqa: E731
        print(f"  NVML GPU utilisation while training: exact {fmt(exact_util)}, float32 {fmt(float_util)}")

    # verification cost: ticket step + k challenges against a 1000-step trajectory, both
    # from the interleaved rates above (decode + step + encode + hash per claim)
    ver_s = (K_CHALLENGES + 1) / verify_cps
    traj_s = TRAJECTORY / max(trainer_sps, pipe_sps)
    print(f"  verify ticket + k={K_CHALLENGES} steps: {ver_s * 1e3:.1f} ms = {100 * ver_s / traj_s:.2f}% of a "
          f"{TRAJECTORY}-step trajectory ({traj_s:.2f} s at the miner's best rate); target < 2%")


def digits_usefulness(backend: Backend) -> None:
    ds = load_digits()
    spec = make_spec(ds, [128], 32)
    fam = get_family("mlp")
    s0 = fam.init_state(spec, INIT_SEED)
    tr = Trainer(spec, ds, s0, SEED, backend, keep=KeepPolicy(every=TRAJECTORY))
    tr.run(max_steps=TRAJECTORY)
    x_test = ds.x_test.to(backend.device)
    exact_acc = evaluate(spec, tr.state, x_test, ds.y_test.to(backend.device), backend).accuracy_ppm / 1e6

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
               {"cpu": 500, "cpu-quick": 150, "cuda": 1000, "cuda-quick": 200}),
        Config("large", [1024, 1024], 256, lambda: synthetic_blobs(b"\x07" * 32, 4096, 512, (784,), 10),
               {"cpu": 30, "cpu-quick": 8, "cuda": 300, "cuda-quick": 60}),
    ]
    for cfg in configs:
        bench_config(cfg, backend, args.quick)
    digits_usefulness(backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The work is useful: the default digits MLP trained through the engine reaches >= 95%
held-out accuracy, within 2 points of float32 torch trained with the same steps and batches."""
from __future__ import annotations

import torch

from pouw.arith import select_backend
from pouw.datasets import dataset_id, dataset_to_bytes, load_digits
from pouw.engine import batch_for_step
from pouw.evaluate import evaluate
from pouw.families import get_family
from pouw.spec import JobSpec
from pouw.trainer import KeepPolicy, Trainer

SEED = b"\x5e" * 32
INIT_SEED = b"\x01" * 32
STEPS = 1000


def test_digits_exact_vs_float32() -> None:
    ds = load_digits()
    spec = JobSpec.from_dict(
        {
            "family": "mlp",
            "dataset": dataset_id(dataset_to_bytes(ds)),
            "input_shape": [64],
            "num_classes": 10,
            "hidden": [128],
            "batch_size": 32,
            "lr_shift": 3,
            "momentum_shift": 3,
            "steps": STEPS,
        }
    )
    backend = select_backend("cpu")
    fam = get_family("mlp")
    s0 = fam.init_state(spec, INIT_SEED)

    tr = Trainer(spec, ds, s0, SEED, backend, keep=KeepPolicy(every=STEPS))
    assert tr.run().steps_run == STEPS
    metrics = evaluate(spec, tr.state, ds.x_test, ds.y_test, backend)  # the chain's own exact metric
    exact_acc = metrics.accuracy_ppm / 1e6

    # float32: same architecture, same initial weights, same batches, same lr and momentum
    # (torch's SGD momentum v = beta v + g, W -= lr v equals the exact rule up to scaling of v)
    model = fam.to_torch(spec, s0).train()
    opt = torch.optim.SGD(model.parameters(), lr=2.0**-spec.lr_shift, momentum=1 - 2.0**-spec.momentum_shift)
    scale = 2.0**-spec.input_frac_bits
    for i in range(1, STEPS + 1):
        x, y = batch_for_step(ds, SEED, i, spec.batch_size, torch.device("cpu"))
        loss = torch.nn.functional.cross_entropy(model(x.to(torch.float32) * scale), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        float_acc = (model(ds.x_test.to(torch.float32) * scale).argmax(1) == ds.y_test).double().mean().item()

    print(f"\ndigits held-out accuracy after {STEPS} steps: exact {100 * exact_acc:.2f}%, float32 {100 * float_acc:.2f}%")
    assert exact_acc >= 0.95
    assert abs(exact_acc - float_acc) <= 0.02

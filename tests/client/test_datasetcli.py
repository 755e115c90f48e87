"""``pouw-node dataset make`` (client/datasetcli.py) and the custom-dataset walk-through of the
README end to end: float features in a CSV -> a dataset file recording its scale -> a job
on a real mining node -> ``load_model`` returns a torch module that takes float features."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from web3 import Web3

from node.cli import main
from pouw.datasets import dataset_from_bytes, quantize_features, quantize_int8, split_train_test
from client.web3_module import PouwModule
from tests.rpc.pouw_node import DAPP, MiningNode

pytestmark = pytest.mark.timeout(240)

FEATURES = 6
CLASSES = 3


@pytest.fixture(autouse=True)
def restore_process_state(cli_process_state: None) -> None:
    """node.cli.main installs a SIGTERM handler and its log handler: undone (conftest)."""


def float_table(n: int = 600, seed: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Three classes of float features in physical units (tens to thousands), overlapping a little."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    centres = np.array([[120.0, -3.5, 0.02, 900.0, 7.0, -40.0],
                        [80.0, 2.5, 0.07, 1500.0, 3.0, 10.0],
                        [150.0, 0.5, -0.03, 1200.0, -2.0, 35.0]])
    spread = np.array([18.0, 1.4, 0.02, 180.0, 2.0, 14.0])
    return centres[y] + rng.normal(size=(n, FEATURES)) * spread, y


def write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    names = ",".join(f"f{i}" for i in range(FEATURES))
    lines = [f"{names},label"] + [",".join(repr(float(v)) for v in row) + f",{label}" for row, label in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")


def make(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["dataset", "make", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_make_from_csv_npz_and_npy(tmp_path: Path, capsys: Any) -> None:
    x, y = float_table(100)
    write_csv(tmp_path / "t.csv", x, y)
    rc, out, err = make(capsys, "--csv", str(tmp_path / "t.csv"), "--out", str(tmp_path / "a.safetensors"),
                        "--test-fraction", "0.25", "--seed", "3", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["trainExamples"] == 75 and report["testExamples"] == 25 and report["inputShape"] == [FEATURES]
    blob = (tmp_path / "a.safetensors").read_bytes()
    ds = dataset_from_bytes(blob)
    train, test = split_train_test(100, 0.25, 3)
    assert ds.feature_scale == tuple(127.0 / np.abs(x[train]).max(axis=0))  # one per feature
    assert torch.equal(ds.x_train, torch.from_numpy(quantize_features(x[train], ds.feature_scale)))
    assert torch.equal(ds.y_test, torch.from_numpy(y[test]))
    assert report["name"] == "a" and report["id"].startswith("0x") and report["featureScale"] == list(ds.feature_scale)
    rc, out, err = make(capsys, "--csv", str(tmp_path / "t.csv"), "--out", str(tmp_path / "g.safetensors"),
                        "--test-fraction", "0.25", "--seed", "3", "--global-scale")
    assert rc == 0, err
    glob = dataset_from_bytes((tmp_path / "g.safetensors").read_bytes())
    assert glob.feature_scale == 127.0 / np.abs(x[train]).max()
    assert torch.equal(glob.x_train, torch.from_numpy(quantize_int8(x[train])))

    # the same dataset from an npz of x and y, and from two npy files
    np.savez(tmp_path / "t.npz", x=x, y=y)
    rc, out, err = make(capsys, "--npz", str(tmp_path / "t.npz"), "--out", str(tmp_path / "b.safetensors"),
                        "--test-fraction", "0.25", "--seed", "3", "--name", "a")
    assert rc == 0 and (tmp_path / "b.safetensors").read_bytes() == blob, err
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    rc, out, err = make(capsys, "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
                        "--out", str(tmp_path / "c.safetensors"), "--test-fraction", "0.25", "--seed", "3", "--name", "a")
    assert rc == 0 and (tmp_path / "c.safetensors").read_bytes() == blob, err
    assert f"id: {report['id']}" in out and "feature scales (one per feature): " in out

    # an npz already split keeps its split; --input-shape shapes each example
    np.savez(tmp_path / "s.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    rc, out, err = make(capsys, "--npz", str(tmp_path / "s.npz"), "--out", str(tmp_path / "d.safetensors"),
                        "--input-shape", "1,2,3", "--json")
    assert rc == 0, err
    shaped = json.loads(out)
    assert shaped["trainExamples"] == 80 and shaped["testExamples"] == 20 and shaped["inputShape"] == [1, 2, 3]


def test_invalid_make(tmp_path: Path, capsys: Any) -> None:
    out = str(tmp_path / "o.safetensors")
    (tmp_path / "bad.csv").write_text("1,2,0\n3,oops,1\n")
    np.savez(tmp_path / "wrong.npz", features=np.zeros((3, 2)))
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    np.save(tmp_path / "y3.npy", np.zeros(3, dtype=np.int64))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for args, message in (
        ([], "give one input"),
        (["--csv", str(tmp_path / "bad.csv"), "--npz", str(tmp_path / "wrong.npz")], "give one input"),
        (["--csv", str(tmp_path / "bad.csv")], "not a number"),
        (["--csv", str(tmp_path / "missing.csv")], "missing.csv"),
        (["--npz", str(tmp_path / "wrong.npz")], "expected arrays x and y"),
        (["--x", str(tmp_path / "x.npy")], "--x needs --y"),
        (["--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y3.npy")], "one per example"),
        (["--x", str(tmp_path / "obj.npy"), "--y", str(tmp_path / "y3.npy")], "pickle"),
        (["--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "x.npy")], "labels"),
    ):
        rc, _, err = make(capsys, *args, "--out", out)
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in err, (args, err)
        assert not Path(out).exists()
    for args in (["--test-fraction", "1.5"], ["--input-shape", "0,2"], ["--seed", "x"]):
        with pytest.raises(SystemExit) as usage:
            main(["dataset", "make", "--csv", "x", "--out", out, *args])
        assert usage.value.code == 2


@pytest.mark.slow
def test_a_custom_float_dataset_end_to_end(tmp_path: Path, capsys: Any) -> None:
    """The README's walk-through: CSV of floats -> dataset make -> job submit -> load_model(x_float)."""
    x, y = float_table()
    write_csv(tmp_path / "measurements.csv", x, y)
    rc, out, err = make(capsys, "--csv", str(tmp_path / "measurements.csv"), "--out", str(tmp_path / "m.safetensors"),
                        "--json")
    assert rc == 0, err
    report = json.loads(out)
    spec = {"family": "mlp", "input_shape": [FEATURES], "num_classes": CLASSES, "hidden": [16], "batch_size": 16,
            "lr_shift": 4, "momentum_shift": None, "steps": 300}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    key = tmp_path / "dapp.key"
    key.write_text(DAPP.key.hex())
    key.chmod(0o600)
    with MiningNode(tmp_path) as node:
        assert node.url is not None
        capsys.readouterr()
        rc = main(["job", "submit", "--rpc", node.url, "--spec", str(tmp_path / "job.json"), "--price", "1gwei",
                   "--key-file", str(key), "--dataset", str(tmp_path / "m.safetensors")])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert f"dataset: {report['id']} uploaded" in out
        job_id = int(out.split("\njob: ")[1].split()[0])
        w3 = Web3(Web3.HTTPProvider(node.url))
        w3.attach_modules({"pouw": PouwModule})
        w3.pouw.wait_for_job(job_id, "completed", timeout=120)
        result = w3.pouw.get_job_result(job_id)
        model = w3.pouw.load_model(job_id)
    assert result.featureScale == report["featureScale"]
    ds = dataset_from_bytes((tmp_path / "m.safetensors").read_bytes())
    _, test_rows = split_train_test(len(x), 0.2, 0)
    x_test = torch.tensor(x[test_rows])  # the original float features, float64
    with torch.no_grad():
        logits = model(x_test)
        # exactly the int8 path the job trained on: the wrapper quantises as the dataset did
        inner = model.model(ds.x_test.float() * result.inputScale)
    assert torch.equal(logits.argmax(1), inner.argmax(1))
    accuracy = (logits.argmax(1) == ds.y_test).float().mean().item()
    assert abs(accuracy - result.metrics.accuracy) <= 0.05 and result.metrics.accuracy > 0.6, (accuracy, result.metrics)

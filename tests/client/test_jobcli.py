"""``pouw-node job submit|status|list|result`` (client/jobcli.py) against a real mining node:
the commands run in-process through ``node.cli.main`` and, once, as a real process."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from eth_account import Account
from eth_utils import keccak

from pouw.state import state_hash
from safetensors.torch import load_file

from node.cli import main
from pouw.datasets import dataset_to_bytes
from tests.rpc.pouw_node import ROOT, GWEI, MiningNode, job_spec, synthetic_dataset, wait_until

pytestmark = pytest.mark.timeout(180)

#: The second key of the public test mnemonic, funded in genesis/default.json. Public.
KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
POSTER = Account.from_key(KEY).address
STEPS = 120
UNREACHABLE = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiningNode]:
    with MiningNode(tmp_path_factory.mktemp("jobcli")) as running:
        yield running


@pytest.fixture(autouse=True)
def restore_process_state(cli_process_state: None) -> None:
    """node.cli.main installs a SIGTERM handler and its log handler: undone (conftest)."""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    spec = job_spec("0x" + "00" * 32, steps=STEPS)
    del spec["dataset"]  # filled in by --dataset
    paths = {
        "spec": tmp_path / "job.json",
        "dataset": tmp_path / "set.safetensors",
        "key": tmp_path / "key.hex",
        "model": tmp_path / "model.safetensors",
        "state": tmp_path / "state.bin",
    }
    paths["spec"].write_text(json.dumps(spec))
    paths["dataset"].write_bytes(dataset_to_bytes(synthetic_dataset()))
    paths["key"].write_text(KEY[2:] + "\n")
    paths["key"].chmod(0o600)
    return paths


def job(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["job", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_submit_follow_and_fetch_the_result(node: MiningNode, files: dict[str, Path], capsys: Any) -> None:
    url = node.url
    assert url is not None
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "3gwei",
                       "--key-file", str(files["key"]), "--dataset", str(files["dataset"]))
    assert rc == 0, err
    assert "warning" not in err
    blob = files["dataset"].read_bytes()
    assert f"dataset: 0x{keccak(blob).hex()} uploaded" in out
    job_id = int(re.search(r"^job: (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    tx_hash = re.search(r"^transaction: (0x[0-9a-f]{64})$", out, re.M).group(1)  # type: ignore[union-attr]
    assert re.search(r"^block: \d+$", out, re.M)
    assert f"escrow: {STEPS * 3 * GWEI} wei" in out

    rc, out, err = job(capsys, "status", str(job_id), "--rpc", url)
    assert rc == 0, err
    assert re.search(rf"^job {job_id} \(posted\): (open|completed)$", out, re.M), out
    assert f"poster: {POSTER}" in out and f"price: {3 * GWEI} wei (3 gwei) per step" in out
    assert f"transaction {tx_hash}" in out and re.search(rf"^progress: \d+/{STEPS} steps", out, re.M)

    def completed() -> bool:
        rc, out, _ = job(capsys, "status", hex(job_id), "--rpc", url, "--json")
        return rc == 0 and json.loads(out)["status"] == "completed"

    wait_until(completed, 60, f"job {job_id} to complete\n{node.log()}")
    rc, out, err = job(capsys, "status", str(job_id), "--rpc", url)
    assert rc == 0 and f"job {job_id} (posted): completed" in out
    assert f"fees paid: {STEPS * 3 * GWEI} wei" in out and "escrow: 0 wei left" in out

    rc, out, err = job(capsys, "list", "--rpc", url, "--status", "completed")
    assert rc == 0, err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows[0][:2] == [str(job_id), "completed"] and len(rows) == 1
    done, budget = map(int, rows[0][2].split("/"))
    assert budget == STEPS and done >= STEPS
    assert out.splitlines()[0].split()[:2] == ["ID", "STATUS"]
    rc, out, err = job(capsys, "list", "--rpc", url, "--json", "--no-standing", "--poster", POSTER)
    assert rc == 0 and [j["id"] for j in json.loads(out)] == [job_id]
    rc, out, err = job(capsys, "list", "--rpc", url, "--status", "open", "--no-standing")
    assert rc == 0 and out.strip() == "no jobs"

    rc, out, err = job(capsys, "result", str(job_id), "--rpc", url, "--out", str(files["model"]),
                       "--state-out", str(files["state"]))
    assert rc == 0, err
    tensors = load_file(str(files["model"]))
    assert set(tensors) == {"1.weight", "1.bias", "3.weight", "3.bias"}  # Flatten, Linear, ReLU, Linear
    checkpoint = re.search(r"^checkpoint: (0x[0-9a-f]{64})$", out, re.M).group(1)  # type: ignore[union-attr]
    assert "0x" + state_hash(files["state"].read_bytes()).hex() == checkpoint
    assert re.search(r"^metrics \(test, exact\): accuracy \d+\.\d\d% \(\d+/128\), loss \d", out, re.M), out
    assert f"job {job_id}: " in out and "(final)" in out

    # The real entry point, in its own process.
    status = subprocess.run([sys.executable, "-m", "node.cli", "job", "status", str(job_id), "--rpc", url],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and f"job {job_id} (posted): completed" in status.stdout, status.stderr


def test_the_key_from_the_environment(node: MiningNode, files: dict[str, Path], capsys: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, err = job(capsys, "submit", "--rpc", node.url, "--spec", str(files["spec"]), "--price", "1000",
                       "--dataset", str(files["dataset"]))
    assert rc == 1 and "no signing key" in one_error(err) and "POUW_PRIVATE_KEY" in err
    monkeypatch.setenv("POUW_PRIVATE_KEY", KEY)
    rc, out, err = job(capsys, "submit", "--rpc", node.url, "--spec", str(files["spec"]), "--price", "1000",
                       "--escrow", str(10**18), "--dataset", str(files["dataset"]), "--timeout", "0", "--json")
    assert rc == 0, err
    answer = json.loads(out)
    assert answer["status"] in ("pending", "posted") and answer["transactionHash"].startswith("0x")
    # --escrow above steps x price is kept (the registry refunds the rest at completion)
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(node.url))
    receipt = w3.eth.wait_for_transaction_receipt(answer["transactionHash"], timeout=30, poll_latency=0.1)
    assert receipt.status == 1 and w3.eth.get_transaction(answer["transactionHash"]).value == 10**18


def test_errors_are_one_line(node: MiningNode, files: dict[str, Path], capsys: Any, tmp_path: Path) -> None:
    url = node.url
    assert url is not None
    submit = ["submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "1gwei",
              "--dataset", str(files["dataset"])]

    # a key file that holds no key: its content is never echoed
    bad = tmp_path / "bad.key"
    bad.write_text("correct horse battery staple\n")
    rc, out, err = job(capsys, *submit, "--key-file", str(bad))
    assert rc == 1 and "does not hold a private key" in one_error(err) and "horse" not in err
    rc, out, err = job(capsys, *submit, "--key-file", str(tmp_path / "missing.key"))
    assert rc == 1 and "missing.key" in one_error(err) and "No such file" in err
    zero = tmp_path / "zero.key"
    zero.write_text("00" * 32)
    rc, out, err = job(capsys, *submit, "--key-file", str(zero))
    assert rc == 1 and "not a valid secp256k1 private key" in one_error(err)
    loose = tmp_path / "loose.key"
    loose.write_text(KEY)
    loose.chmod(0o644)
    rc, out, err = job(capsys, "submit", "--rpc", UNREACHABLE, "--spec", str(files["spec"]), "--price", "1",
                       "--key-file", str(loose))
    assert rc == 1 and "readable by other users" in err.splitlines()[0]

    # the node's refusals, in its words
    spec = json.loads(files["spec"].read_text())
    bad_spec = tmp_path / "bad.json"
    bad_spec.write_text(json.dumps({**spec, "hidden": [0]}))
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(bad_spec), "--price", "1gwei",
                       "--key-file", str(files["key"]), "--dataset", str(files["dataset"]))
    assert rc == 1 and "invalid job spec: hidden[0]" in one_error(err)
    no_data = tmp_path / "nodata.json"
    no_data.write_text(json.dumps({**spec, "dataset": "0x" + "cd" * 32}))
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(no_data), "--price", "1gwei",
                       "--key-file", str(files["key"]))
    assert rc == 1 and "--dataset" in one_error(err)
    files["spec"].write_text("{not json")
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "1",
                       "--key-file", str(files["key"]))
    assert rc == 1 and "is not valid JSON" in one_error(err)

    # unknown jobs
    rc, out, err = job(capsys, "status", "424242", "--rpc", url)
    assert rc == 1 and one_error(err) == f"error: job 424242 not found on the node at {url}"
    rc, out, err = job(capsys, "result", "424242", "--rpc", url, "--out", str(tmp_path / "m.safetensors"))
    assert rc == 1 and "not found" in one_error(err) and not (tmp_path / "m.safetensors").exists()
    rc, out, err = job(capsys, "status", "standing-0", "--rpc", url)
    assert rc == 0 and "job standing-0 (standing): standing" in out

    # an unreachable node: fails at once, one line
    started = time.monotonic()
    for args in (["status", "1"], ["list"], ["result", "1", "--out", str(tmp_path / "x")]):
        rc, out, err = job(capsys, *args, "--rpc", UNREACHABLE)
        assert rc == 1 and f"cannot reach the node at {UNREACHABLE}" in one_error(err)
    assert time.monotonic() - started < 10
    proc = subprocess.run([sys.executable, "-m", "node.cli", "job", "list", "--rpc", UNREACHABLE],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "cannot reach the node" in one_error(proc.stderr)

    # bad usage is argparse's exit 2; a key is never an argument
    for args in (["submit", "--spec", "x", "--price", "lots"], ["status", "nope"],
                 ["submit", "--spec", "x", "--price", "1", "--private-key", KEY]):
        with pytest.raises(SystemExit) as usage:
            main(["job", *args])
        assert usage.value.code == 2
    assert main(["job"]) == 2


# --- keystores, confirmation, cancel, watch, rewards -----------------------------------------


@pytest.fixture
def keystore(tmp_path: Path) -> tuple[Path, Path]:
    """The poster's key as an encrypted keystore, and its password file."""
    from client.keys import write_keystore

    password = tmp_path / "password"
    password.write_text("hunter2 but longer\n")
    password.chmod(0o600)
    entry = write_keystore(tmp_path / "keystore", bytes.fromhex(KEY[2:]), "hunter2 but longer", light=True)
    return entry.path, password


def _nonce(url: str) -> int:
    from web3 import Web3

    return int(Web3(Web3.HTTPProvider(url)).eth.get_transaction_count(POSTER, "pending"))


def test_a_large_escrow_needs_confirmation(node: MiningNode, files: dict[str, Path], capsys: Any,
                                           keystore: tuple[Path, Path]) -> None:
    url = node.url
    assert url is not None
    key_file, password = keystore
    before = _nonce(url)
    # "1eth" where "1gwei" was meant: 120 ETH of escrow; no terminal here, so refused, and nothing sent
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "1eth",
                       "--key-file", str(key_file), "--password-file", str(password), "--dataset", str(files["dataset"]))
    assert rc == 1 and "above --confirm-above 1 ETH: pass --yes" in one_error(err) and "120 ETH" in err
    assert _nonce(url) == before
    # a lower threshold catches smaller amounts too
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "1gwei",
                       "--confirm-above", "100gwei", "--key-file", str(key_file), "--password-file", str(password),
                       "--dataset", str(files["dataset"]))
    assert rc == 1 and "pass --yes" in one_error(err) and _nonce(url) == before
    # --yes posts it (signed with the keystore's key)
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(files["spec"]), "--price", "1gwei",
                       "--confirm-above", "100gwei", "--yes", "--key-file", str(key_file), "--password-file",
                       str(password), "--dataset", str(files["dataset"]))
    assert rc == 0, err
    assert re.search(r"^estimate: 120 steps, about \d+ block\(s\), \d+ s at the (measured network work rate|target)",
                     out, re.M), out
    assert re.search(r"^job: \d+$", out, re.M) and _nonce(url) == before + 1


def test_cancel_watch_and_rewards(node: MiningNode, files: dict[str, Path], capsys: Any,
                                  keystore: tuple[Path, Path], tmp_path: Path) -> None:
    url = node.url
    assert url is not None
    key_file, password = keystore
    spec = json.loads(files["spec"].read_text())
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**spec, "steps": 200_000}))  # far more than this test will train
    rc, out, err = job(capsys, "submit", "--rpc", url, "--spec", str(big), "--price", "1gwei", "--yes",
                       "--key-file", str(key_file), "--password-file", str(password), "--dataset", str(files["dataset"]))
    assert rc == 0, err
    job_id = int(re.search(r"^job: (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]

    # watch: live lines with progress, rate, ETA and accuracy, until the timeout here
    rc, out, err = job(capsys, "watch", str(job_id), "--rpc", url, "--interval", "0.5", "--timeout", "6")
    assert rc == 1 and f"job {job_id} is still open after 6 s" in one_error(err)
    lines = out.strip().splitlines()
    assert len(lines) >= 2 and all(line.startswith(f"job {job_id}: open, ") for line in lines)
    assert re.search(r"\d+/200000 steps \(\d+\.\d%\)", lines[-1]) and "ETA " in lines[-1]
    assert re.search(r"accuracy \d+\.\d\d% at (block \d+|initial state)", lines[-1]), lines
    assert "fees " in lines[-1] and "ETH" in lines[-1]

    # cancel: only the poster, only an open job; the unused escrow comes back
    other = tmp_path / "other.key"
    other.write_text("0x" + "42" * 32)
    other.chmod(0o600)
    rc, out, err = job(capsys, "cancel", str(job_id), "--rpc", url, "--key-file", str(other))
    assert rc == 1 and "only its poster can cancel it" in one_error(err)
    rc, out, err = job(capsys, "cancel", "standing-0", "--rpc", url, "--key-file", str(key_file),
                       "--password-file", str(password))
    assert rc == 1 and "standing job" in one_error(err)
    rc, out, err = job(capsys, "cancel", str(job_id), "--rpc", url, "--key-file", str(key_file),
                       "--password-file", str(password))
    assert rc == 0, err
    assert f"job {job_id}: cancelled in block" in out
    refund = int(re.search(r"^refund: [\d.]+ ETH \((\d+) wei\)", out, re.M).group(1))  # type: ignore[union-attr]
    rc, out, err = job(capsys, "status", str(job_id), "--rpc", url, "--json")
    status = json.loads(out)
    assert status["status"] == "cancelled" and status["escrowLeft"] == 0
    assert refund == 200_000 * GWEI - status["feesPaid"] and refund > 0
    rc, out, err = job(capsys, "cancel", str(job_id), "--rpc", url, "--key-file", str(key_file),
                       "--password-file", str(password))
    assert rc == 1 and f"job {job_id} is cancelled: there is nothing to cancel" in one_error(err)
    rc, out, err = job(capsys, "watch", str(job_id), "--rpc", url)  # a finished job: one line, then done
    assert rc == 0 and out.startswith(f"job {job_id}: cancelled, ")

    # rewards, in ETH, mature and immature
    from tests.rpc.pouw_node import MINER_COINBASE

    capsys.readouterr()
    assert main(["rewards", MINER_COINBASE, "--rpc", url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^blocks: #0 to #\d+; \d+ mined by this address$", out, re.M)
    assert re.search(r"^mature: [\d.]+ ETH \(credited to the balance\)$", out, re.M)
    assert re.search(r"^immature: [\d.]+ ETH \(credited 2 blocks after their block\)$", out, re.M)
    assert re.search(r"^job fees: 0\.0000\d+ ETH$", out, re.M), out  # gwei-priced steps
    assert main(["rewards", MINER_COINBASE, "--rpc", url, "--json", "--from", "1", "--to", "2"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["fromBlock"] == 1 and answer["toBlock"] == 2 and answer["total"] == answer["mature"] + answer["immature"]
    assert main(["rewards", "0x1234", "--rpc", url]) == 1
    assert "not an address" in capsys.readouterr().err

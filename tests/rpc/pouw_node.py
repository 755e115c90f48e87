"""A real mining node for the dApp tests: ``pouw-node init`` + ``pouw-node run --mine``
in a subprocess, JSON-RPC on a free loopback port, on a pouw genesis with a difficulty
low enough that a block takes well under a second of training on a CPU.

Used by tests/rpc/test_dapp_flow.py and tests/client/test_jobcli.py (each starts its own).
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from eth_account import Account

from pouw.datasets import Dataset, dataset_id, dataset_to_bytes, synthetic_blobs
from tests.consensus.helpers import pouw_genesis_dict

ROOT = Path(__file__).resolve().parents[2]

#: The dApp: the first key of the public test mnemonic, funded in genesis/default.json
#: (and so in every genesis built from it). Public: never use it with value.
DAPP_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DAPP = Account.from_key(DAPP_KEY)
#: An account with no funds.
POOR_KEY = "0x" + "42" * 32
MINER_COINBASE = "0x00000000000000000000000000000000000c0ffe"

INPUT_DIM = 16
NUM_CLASSES = 4
GWEI = 10**9


def synthetic_dataset(seed: int = 7) -> Dataset:
    """Four noisy class blobs in 16 dimensions (overlapping a little: accuracy < 100 %)."""
    return synthetic_blobs(seed, 512, 128, input_shape=(INPUT_DIM,), num_classes=NUM_CLASSES, spread=72)


def large_dataset_bytes(n_train: int = 120_000) -> bytes:
    """A valid dataset file of about 2.9 MB: over the JSON-RPC body limit in hex, so
    ``put_dataset`` sends it to ``POST /pouw/datasets``."""
    import torch

    g = torch.Generator().manual_seed(1)
    x = torch.randint(-127, 128, (n_train + 256, INPUT_DIM), generator=g, dtype=torch.int8)
    y = torch.randint(0, NUM_CLASSES, (n_train + 256,), generator=g, dtype=torch.int64)
    return dataset_to_bytes(Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], NUM_CLASSES, "large-noise"))


def job_spec(dataset_hex: str, steps: int = 240) -> dict[str, Any]:
    return {
        "family": "mlp", "dataset": dataset_hex, "input_shape": [INPUT_DIM], "num_classes": NUM_CLASSES,
        "hidden": [16], "batch_size": 16, "lr_shift": 4, "momentum_shift": None, "steps": steps,
    }


def job_work_units() -> int:
    from pouw.families import get_family
    from pouw.spec import JobSpec

    blob = dataset_to_bytes(synthetic_dataset())
    return get_family("mlp").work_units(JobSpec.from_dict(job_spec(dataset_id(blob))))


def genesis_dict(steps_per_block: int = 60, maturity: int = 2) -> dict[str, Any]:
    """A pouw genesis where a block is about ``steps_per_block`` steps of :func:`job_spec`'s
    job, with a difficulty that stays put (1 % adjustments)."""
    raw = pouw_genesis_dict(k=2, maturity=maturity, targetBlockTime=1, maxAdjustUpPercent=1,
                            maxAdjustDownPercent=1)
    d = job_work_units() * steps_per_block
    raw["consensus"]["initialDifficulty"] = d
    raw["consensus"]["minimumDifficulty"] = d
    return raw


class MiningNode:
    """``pouw-node run --mine`` on a fresh datadir; ``url`` is its JSON-RPC endpoint."""

    def __init__(
        self, tmp: Path, *, steps_per_block: int = 60, maturity: int = 2, extra_args: tuple[str, ...] = (),
        mine: bool = True, p2p_port: Optional[int] = None, peers: Optional[str] = None, name: str = "node",
    ) -> None:
        """``mine=False`` runs a validator; ``p2p_port`` serves p2p there (else --no-p2p)
        and ``peers`` dials those (``host:port,...``); nodes sharing ``tmp`` share its genesis."""
        self.tmp = tmp
        self.extra_args = tuple(extra_args)
        self.mine = mine
        self.p2p_port = p2p_port
        self.peers = peers
        self.datadir = tmp / name
        self.genesis_path = tmp / "genesis.json"
        if not self.genesis_path.exists():
            self.genesis_path.write_text(json.dumps(genesis_dict(steps_per_block, maturity)))
        self.proc: Optional[subprocess.Popen[str]] = None
        self.url: Optional[str] = None
        self.lines: list[str] = []
        self._reader: Optional[threading.Thread] = None

    def start(self, timeout: float = 60.0) -> "MiningNode":
        init = subprocess.run(
            [sys.executable, "-m", "node.cli", "init", "--datadir", str(self.datadir), "--genesis", str(self.genesis_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert init.returncode == 0, init.stderr
        p2p = ["--no-p2p"] if self.p2p_port is None else ["--p2p-port", str(self.p2p_port)]
        if self.peers:
            p2p += ["--peers", self.peers]
        mining = ["--mine", "--coinbase", MINER_COINBASE, "--device", "cpu"] if self.mine else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--datadir", str(self.datadir), "--rpc-port", "0", *p2p,
             *mining, *self.extra_args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                match = re.search(r"JSON-RPC listening on (http://\S+)", line)
                if match and self.url is None:
                    self.url = match.group(1)
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        found.wait(timeout)
        if self.url is None:
            self.stop()
            raise AssertionError("the node did not start:\n" + self.log())
        return self

    def log(self, last: int = 60) -> str:
        return "\n".join(self.lines[-last:])

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(5)
        self.proc = None

    def __enter__(self) -> "MiningNode":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)

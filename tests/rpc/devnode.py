"""A development node in its own process, ours or anvil, in automine or interval mode.

Used by the web3.py module-test suite (tests/rpc/web3_suite/) and bench/bench_rpc.py so
that both drive the two nodes the same way: a plain ``pouw-node run --automine`` (or
``--dev-period 1``) on a dev genesis, and ``anvil`` (or ``anvil --block-time 1``), each on
a free loopback port, stopped with SIGINT and then SIGKILL.
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ANVIL_NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"


def find_anvil() -> str | None:
    """``anvil`` on PATH, or the npm package's binary under ./node_modules (install it with
    ``npm install @foundry-rs/anvil-linux-amd64``), or None."""
    found = shutil.which("anvil")
    if found:
        return found
    local = ROOT / "node_modules" / ANVIL_NPM_PACKAGE / "bin" / "anvil"
    return str(local) if local.exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_rpc(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``url`` answers eth_chainId (or the process dies)."""
    import urllib.request

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node exited with {process.returncode} before answering")
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=1) as answer:
                if b"result" in answer.read():
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class DevNode:
    """A running node: its URL, kind ("pouw" or "anvil") and mode ("automine" or "interval")."""

    kind: str
    mode: str
    url: str
    process: subprocess.Popen[bytes]
    workdir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def dev_genesis(chain_id: int | None = None, alloc: dict[str, int] | None = None) -> dict[str, Any]:
    """genesis/dev.json, optionally with another chain id and more funded accounts."""
    raw = json.loads((ROOT / "genesis" / "dev.json").read_text())
    if chain_id is not None:
        raw["chainId"] = chain_id
    for address, balance in (alloc or {}).items():
        raw["alloc"][address] = {"balance": hex(balance)}
    return raw


def start_pouw(mode: str, genesis: dict[str, Any], *, args: tuple[str, ...] = (), log: Path | None = None) -> DevNode:
    """``pouw-node init`` + ``pouw-node run --automine`` (mode "automine") or
    ``--dev-period 1`` (mode "interval") on ``genesis``, JSON-RPC on a free port, no p2p."""
    workdir = Path(tempfile.mkdtemp(prefix="pouw-devnode-"))
    genesis_file = workdir / "genesis.json"
    genesis_file.write_text(json.dumps(genesis))
    datadir = workdir / "data"
    subprocess.run(
        [sys.executable, "-m", "node.cli", "init", "--datadir", str(datadir), "--genesis", str(genesis_file)],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port = free_port()
    block_args = ["--automine"] if mode == "automine" else ["--dev-period", "1"]
    out = open(log, "wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "run", "--datadir", str(datadir), "--rpc-port", str(port),
         "--no-p2p", *block_args, *args],
        cwd=ROOT, stdout=out, stderr=out,
    )
    node = DevNode("pouw", mode, f"http://127.0.0.1:{port}", process, workdir)
    try:
        wait_rpc(node.url, process)
    except BaseException:
        node.stop()
        raise
    return node


def start_anvil(binary: str, mode: str, *, chain_id: int | None = None, args: tuple[str, ...] = ()) -> DevNode:
    """anvil on a free port: automine (its default) or ``--block-time 1``."""
    port = free_port()
    command = [binary, "--port", str(port), "--silent"]
    if chain_id is not None:
        command += ["--chain-id", str(chain_id)]
    if mode == "interval":
        command += ["--block-time", "1"]
    process = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = DevNode("anvil", mode, f"http://127.0.0.1:{port}", process)
    try:
        wait_rpc(node.url, process)
    except BaseException:
        node.stop()
        raise
    return node

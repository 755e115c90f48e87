"""Development nodes in processes of their own: ours (``pouw-node run``) or anvil.

Benchmarks and the web3.py module-test suite drive both the same way, over JSON-RPC on
a free loopback port: ours is a plain ``pouw-node init`` + ``pouw-node run
--automine`` (or ``--dev-period 1``) on a genesis of the caller's, with no P2P; anvil
runs with its own defaults (or ``--block-time 1``). Each is stopped with SIGINT, then
SIGKILL, and its scratch directory is removed.
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, Mapping, Optional

from devnet.errors import NodeStartError, UnknownBlockMode

SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding our packages (the checkout, or site-packages when installed):
node processes start here so that ``python -m node.cli`` finds the same code."""
ANVIL_NPM_PACKAGE = "@foundry-rs/anvil-linux-amd64"

BlockMode = Literal["automine", "interval"]
"""``automine``: a block per transaction batch as it arrives; ``interval``: a block
every second, whatever arrived."""


def block_mode(text: str) -> BlockMode:
    """``text`` as a :data:`BlockMode`; :class:`UnknownBlockMode` otherwise."""
    if text == "automine":
        return "automine"
    if text == "interval":
        return "interval"
    raise UnknownBlockMode("block mode", expected="automine or interval", got=text)


def find_anvil() -> Optional[str]:
    """``anvil`` on PATH, or the npm package's binary under ./node_modules (install it
    with ``npm install @foundry-rs/anvil-linux-amd64``), or None."""
    found = shutil.which("anvil")
    if found:
        return found
    local = SOURCE_ROOT / "node_modules" / ANVIL_NPM_PACKAGE / "bin" / "anvil"
    return str(local) if local.exists() else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick; another process may take it
    before ours binds it, which then fails to start and says so)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_rpc(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until ``url`` answers ``eth_chainId``; :class:`NodeStartError` when the
    process exits first or ``timeout`` seconds pass."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise NodeStartError(f"node exited with {process.returncode} before answering on {url}")
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=1) as answer:
                if b"result" in answer.read():
                    return
        except OSError:
            time.sleep(0.1)
    raise NodeStartError(f"{url} did not answer within {timeout} s")


@dataclass
class DevNode:
    """A running node: its JSON-RPC URL, kind ("pouw" or "anvil") and block mode."""

    kind: str
    mode: BlockMode
    url: str
    process: subprocess.Popen[bytes]
    workdir: Optional[Path] = None
    """Scratch directory (genesis file, datadir) removed by :meth:`stop`."""

    def stop(self) -> None:
        """SIGINT (a clean shutdown), SIGKILL after 15 s; then remove the scratch directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _started(node: DevNode) -> DevNode:
    """``node`` once it answers JSON-RPC; stopped (and the error raised) if it never does."""
    try:
        wait_rpc(node.url, node.process)
    except BaseException:
        node.stop()
        raise
    return node


def start_pouw(
    mode: str,
    genesis: Mapping[str, object],
    *,
    args: tuple[str, ...] = (),
    log: Optional[Path] = None,
    profile: Optional[Path] = None,
) -> DevNode:
    """``pouw-node init`` + ``pouw-node run --automine`` (mode "automine") or
    ``--dev-period 1`` (mode "interval") on ``genesis`` with ``args`` added, JSON-RPC on
    a free port, no P2P. ``log``: the node's output goes there (else nowhere);
    ``profile``: the node runs under cProfile and writes its stats there when stopped."""
    chosen = block_mode(mode)
    workdir = Path(tempfile.mkdtemp(prefix="pouw-devnode-"))
    genesis_file = workdir / "genesis.json"
    genesis_file.write_text(json.dumps(genesis))
    datadir = workdir / "data"
    from node.node import NodeError, init_datadir, read_genesis

    try:
        init_datadir(datadir, read_genesis(str(genesis_file)))  # ``pouw-node init``, in this process
    except (NodeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise NodeStartError(f"pouw-node init failed: {exc}") from None
    port = free_port()
    block_args = ["--automine"] if chosen == "automine" else ["--dev-period", "1"]
    python = [sys.executable] if profile is None else [sys.executable, "-m", "cProfile", "-o", str(profile)]
    out: int | IO[bytes] = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            [*python, "-m", "node.cli", "run", "--datadir", str(datadir), "--rpc-port", str(port),
             "--no-p2p", *block_args, *args],
            cwd=SOURCE_ROOT, stdout=out, stderr=out,
        )
    finally:
        if not isinstance(out, int):
            out.close()  # the child holds its own copy
    return _started(DevNode("pouw", chosen, f"http://127.0.0.1:{port}", process, workdir))


def start_anvil(binary: str, mode: str, *, chain_id: Optional[int] = None, args: tuple[str, ...] = ()) -> DevNode:
    """anvil on a free port: automine (its default) or ``--block-time 1``."""
    chosen = block_mode(mode)
    port = free_port()
    command = [binary, "--port", str(port), "--silent"]
    if chain_id is not None:
        command += ["--chain-id", str(chain_id)]
    if chosen == "interval":
        command += ["--block-time", "1"]
    process = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _started(DevNode("anvil", chosen, f"http://127.0.0.1:{port}", process))


__all__ = [
    "ANVIL_NPM_PACKAGE", "BlockMode", "DevNode", "SOURCE_ROOT", "block_mode", "find_anvil", "free_port",
    "start_anvil", "start_pouw", "wait_rpc",
]

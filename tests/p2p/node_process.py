"""A real ``pouw-node run`` process for p2p and fuzz tests: its JSON-RPC URL and p2p port
parsed from its log, its log drained on a thread (a chatty node never blocks on a full
pipe), JSON-RPC calls, and a clean stop."""
from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

from tests.node.test_cli import init as init_datadir, pouw_node


class NodeProcess:
    """``pouw-node run --datadir DIR --rpc-port 0 --p2p-port 0 *extra`` (dev genesis by
    default, initialised here)."""

    def __init__(self, datadir: Path, *extra: str, genesis: str = "dev", init: bool = True) -> None:
        if init and not (datadir / "chaindata").is_dir():
            init_datadir(datadir, genesis)
        self.datadir = datadir
        self.proc = subprocess.Popen(
            [*pouw_node(), "run", "--datadir", str(datadir), "--rpc-port", "0", "--p2p-port", "0", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=5000)
        self.matches: list[str] = []
        self.url: Optional[str] = None
        self.p2p_port: Optional[int] = None
        self._started = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        if not self._started.wait(60) or self.url is None:
            self.stop()
            raise AssertionError("node did not start:\n" + self.log())

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
            if self.p2p_port is None:
                found = re.search(r"p2p listening on ws://[^:]+:(\d+)/", line)
                if found:
                    self.p2p_port = int(found.group(1))
            if self.url is None:
                found = re.search(r"JSON-RPC listening on (http://\S+)", line)
                if found:
                    self.url = found.group(1)
                    self._started.set()
        self._started.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self, last: int = 80) -> str:
        return "\n".join(list(self.lines)[-last:])

    def grep(self, pattern: str) -> list[str]:
        return [line for line in list(self.lines) if re.search(pattern, line)]

    def rpc(self, method: str, *params: Any, timeout: float = 10.0) -> Any:
        assert self.url is not None
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
        assert "error" not in answer, answer
        return answer["result"]

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 30 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(5)
        return int(self.proc.returncode)


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - a node still starting
            last = exc
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

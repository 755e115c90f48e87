"""``pouw-node`` as a user runs it: real subprocesses, exit codes, one-line errors."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
import rlp

from chain.header import PouwBlock
from node.node import open_datadir
from tests.chain.helpers import ALICE, DEV_ADDRESSES, transfer
from tests.node.test_export_import import BuiltChain, build_chain_file

DEV_CHAIN_ID = 1337
BLOCKS = 12


def pouw_node() -> list[str]:
    script = Path(sys.executable).with_name("pouw-node")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


def cli(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pouw_node(), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def init(datadir: Path | str, genesis: Optional[str | Path] = None) -> None:
    """``pouw-node init`` in this process (what tests that are not about init need: a
    datadir, without a second of interpreter start-up)."""
    from node.node import init_datadir, read_genesis

    init_datadir(Path(datadir), read_genesis(None if genesis is None else str(genesis)))


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The stderr line starting with ``error:``; fails on a traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain_file(tmp_path_factory.mktemp("clichain") / "chain.rlp", blocks=BLOCKS, txs_per_block=3)


@pytest.fixture
def dev_datadir(tmp_path: Path) -> Path:
    datadir = tmp_path / "dev"
    init(datadir, "dev")
    return datadir


def head_of(datadir: Path) -> tuple[int, bytes]:
    with open_datadir(datadir) as dd:
        head = dd.chain.head()
        return head.block_number, bytes(head.hash)


# --- init ---------------------------------------------------------------------------


def test_init_writes_genesis_and_is_idempotent(tmp_path: Path) -> None:
    datadir = tmp_path / "dd"
    first = cli("init", "--datadir", datadir, "--genesis", "dev")
    assert first.returncode == 0, first.stderr
    assert "chain id: 1337" in first.stdout
    genesis_hash = re.search(r"genesis hash: (0x[0-9a-f]{64})", first.stdout)
    assert genesis_hash is not None
    assert json.loads((datadir / "genesis.json").read_text())["consensus"]["sealEngine"] == "noproof"
    again = cli("init", "--datadir", datadir, "--genesis", "dev")
    assert again.returncode == 0 and "already initialised" in again.stdout
    assert genesis_hash.group(1) in again.stdout


def test_invalid_init_foreign_datadir(dev_datadir: Path, tmp_path: Path) -> None:
    result = cli("init", "--datadir", dev_datadir)  # the devnet genesis: another chain
    assert result.returncode == 1
    assert re.fullmatch(
        rf"error: datadir {re.escape(str(dev_datadir))} belongs to another chain "
        r"\(genesis 0x[0-9a-f]{64} != 0x[0-9a-f]{64}\)",
        one_line_error(result),
    )


def test_invalid_init_bad_genesis_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"chainId": 5}))
    result = cli("init", "--datadir", tmp_path / "dd", "--genesis", bad)
    assert result.returncode == 1
    assert one_line_error(result).startswith(f"error: {bad}: ")
    missing = cli("init", "--datadir", tmp_path / "dd", "--genesis", tmp_path / "nope.json")
    assert missing.returncode == 1 and "No such file" in one_line_error(missing)


# --- errors common to all commands --------------------------------------------------


@pytest.mark.parametrize("command", [["run"], ["import", "x.rlp"], ["export", "x.rlp"]])
def test_invalid_missing_datadir(tmp_path: Path, command: list[str]) -> None:
    datadir = tmp_path / "nothing"
    result = cli(command[0], "--datadir", datadir, *command[1:])
    assert result.returncode == 1
    assert one_line_error(result) == f"error: {datadir} is not a pouw-node datadir (run pouw-node init first)"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert cli("run").returncode == 2  # --datadir missing
    assert cli().returncode == 2
    assert cli("export", "--datadir", tmp_path, "f", "--from", "-1").returncode == 2


def test_invalid_run_automine_on_proof_of_work_chain(tmp_path: Path) -> None:
    datadir = tmp_path / "devnet"
    init(datadir)  # genesis/default.json: "pouw"
    result = cli("run", "--datadir", datadir, "--automine", "--no-rpc")
    assert result.returncode == 1
    assert "--automine needs a development genesis" in one_line_error(result)


# --- export / import -----------------------------------------------------------------


def test_import_then_export(built: BuiltChain, dev_datadir: Path, tmp_path: Path) -> None:
    result = cli("import", "--datadir", dev_datadir, built.path)
    assert result.returncode == 0, result.stderr
    assert f"imported {BLOCKS} blocks" in result.stdout and "blocks/s" in result.stdout
    assert head_of(dev_datadir) == (BLOCKS, built.head_hash)
    again = cli("import", "--datadir", dev_datadir, built.path)
    assert again.returncode == 0 and "imported 0 blocks" in again.stdout and f"{BLOCKS + 1} already known" in again.stdout

    out = tmp_path / "out.rlp"
    exported = cli("export", "--datadir", dev_datadir, out)
    assert exported.returncode == 0 and f"exported {BLOCKS + 1} blocks" in exported.stdout
    assert out.read_bytes() == built.path.read_bytes()
    part = tmp_path / "part.rlp"
    assert cli("export", "--datadir", dev_datadir, part, "--from", 3, "--to", 5).returncode == 0
    blocks = [rlp.decode(b, sedes=PouwBlock) for b in _split(part.read_bytes())]
    assert [b.number for b in blocks] == [3, 4, 5]


def _split(data: bytes) -> Iterator[bytes]:
    from io import BytesIO

    from node.node import read_block_file

    for entry in read_block_file(BytesIO(data), max_entry_bytes=10**7):
        yield entry.block_rlp


def test_invalid_import_truncated_file(built: BuiltChain, dev_datadir: Path, tmp_path: Path) -> None:
    entries = list(_split(built.path.read_bytes()))
    offset = sum(len(e) for e in entries[:8])  # blocks 0..7 intact, block 8 cut short
    cut = tmp_path / "cut.rlp"
    cut.write_bytes(built.path.read_bytes()[: offset + len(entries[8]) // 2])
    result = cli("import", "--datadir", dev_datadir, cut)
    assert result.returncode == 1
    assert one_line_error(result).startswith(f"error: {cut}: corrupt block at offset {offset}: truncated")
    assert head_of(dev_datadir)[0] == 7


def test_invalid_import_garbage_entry(built: BuiltChain, dev_datadir: Path, tmp_path: Path) -> None:
    entries = list(_split(built.path.read_bytes()))
    bad = tmp_path / "garbage.rlp"
    bad.write_bytes(b"".join(entries[:4]) + rlp.encode([b"not", b"a", b"block"]) + b"".join(entries[4:]))
    result = cli("import", "--datadir", dev_datadir, bad)
    assert result.returncode == 1
    offset = sum(len(e) for e in entries[:4])
    assert one_line_error(result).startswith(f"error: {bad}: corrupt block at offset {offset}: ")
    assert head_of(dev_datadir)[0] == 3


def test_invalid_import_tampered_state_root(built: BuiltChain, dev_datadir: Path, tmp_path: Path) -> None:
    entries = list(_split(built.path.read_bytes()))
    block = rlp.decode(entries[6], sedes=PouwBlock)
    tampered = block.copy(header=block.header.copy(state_root=b"\x11" * 32))
    bad = tmp_path / "tampered.rlp"
    bad.write_bytes(b"".join(entries[:6]) + rlp.encode(tampered) + b"".join(entries[7:]))
    result = cli("import", "--datadir", dev_datadir, bad)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "block #6 " in line and "is invalid: state root" in line and "0x1111" in line, line
    assert head_of(dev_datadir)[0] == 5


def test_invalid_import_block_of_another_chain(built: BuiltChain, tmp_path: Path) -> None:
    from node.node import DEV_GENESIS_PATH

    other_genesis = tmp_path / "other.json"
    raw = json.loads(DEV_GENESIS_PATH.read_text())
    raw["chainId"] = 4242
    other_genesis.write_text(json.dumps(raw))
    datadir = tmp_path / "other"
    init(datadir, other_genesis)
    result = cli("import", "--datadir", datadir, built.path)
    assert result.returncode == 1
    assert "block #0 at offset 0 is the genesis of another chain" in one_line_error(result)
    assert head_of(datadir)[0] == 0


# --- run ------------------------------------------------------------------------------


class RunningNode:
    def __init__(self, datadir: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*pouw_node(), "run", "--datadir", str(datadir), "--rpc-port", "0", "--p2p-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.log: list[str] = []
        self.url = self._wait_for(r"JSON-RPC listening on (http://\S+)").group(1)

    def _wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no {pattern!r} in node log:\n{''.join(self.log)}")

    def rpc(self, method: str, *params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert "error" not in answer, answer
        return answer["result"]

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, "".join(self.log) + err


def test_run_serves_rpc_automines_and_stops_on_sigterm(dev_datadir: Path, built: BuiltChain) -> None:
    node = RunningNode(dev_datadir, "--automine")
    try:
        assert node.url.startswith("http://127.0.0.1:")  # loopback unless --rpc-addr says otherwise
        assert node.rpc("eth_blockNumber") == "0x0"
        assert int(node.rpc("eth_chainId"), 16) == DEV_CHAIN_ID
        tx = transfer(ALICE, 0, DEV_ADDRESSES[1], 10**18, chain_id=DEV_CHAIN_ID)
        node.rpc("eth_sendRawTransaction", "0x" + tx.encode().hex())
        deadline = time.monotonic() + 10
        while node.rpc("eth_blockNumber") == "0x0" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert node.rpc("eth_blockNumber") == "0x1"
        receipt = node.rpc("eth_getTransactionReceipt", "0x" + tx.hash.hex())
        assert receipt["status"] == "0x1"

        # The datadir is locked while the node runs: a second run or an import is refused.
        for second in (["run", "--datadir", dev_datadir, "--no-rpc"], ["import", "--datadir", dev_datadir, built.path]):
            result = cli(*second)
            assert result.returncode == 1
            assert one_line_error(result) == f"error: datadir {dev_datadir} is in use by another process"
    finally:
        code, log = node.stop()
    assert code == 0, log
    assert "received SIGTERM" in log and "stopped at head #1" in log
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO", log, re.M)  # timestamped log lines
    assert head_of(dev_datadir)[0] == 1  # lock released, block kept


def test_invalid_run_port_in_use(dev_datadir: Path, tmp_path: Path) -> None:
    node = RunningNode(dev_datadir)
    try:
        port = node.url.rsplit(":", 1)[1]
        other = tmp_path / "other"
        init(other, "dev")
        result = cli("run", "--datadir", other, "--rpc-port", port, "--p2p-port", "0")
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(result)
    finally:
        code, _ = node.stop()
    assert code == 0


def test_run_without_rpc_stops_on_sigint(dev_datadir: Path) -> None:
    proc = subprocess.Popen([*pouw_node(), "run", "--datadir", str(dev_datadir), "--no-rpc", "--no-p2p"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "head #0" in line, line
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "received SIGINT" in err


# --- one line, never a traceback ----------------------------------------------------


def test_invalid_device_cuda_without_cuda_says_why(tmp_path: Path) -> None:
    """``--device cuda`` on a torch without CUDA (this suite's CPU build, or no GPU):
    one line that names the cause and the way out, before the datadir is even opened."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    datadir = tmp_path / "pouw"
    init(datadir)
    coinbase = "0x" + "c0" * 20
    result = cli("run", "--datadir", datadir, "--mine", "--coinbase", coinbase, "--device", "cuda", "--no-p2p", "--no-rpc")
    assert result.returncode == 1
    line = one_line_error(result)
    if not torch.backends.cuda.is_built():
        assert "CPU-only build" in line and "pip install torch --index-url" in line and "--device cpu" in line
    else:
        assert "no usable CUDA device" in line
    result = cli("run", "--datadir", datadir, "--mine", "--coinbase", coinbase, "--device", "tpu:0", "--no-p2p")
    assert "--device: expected auto, cpu, cuda or cuda:N" in one_line_error(result)


def test_closed_pipe_is_quiet(dev_datadir: Path, tmp_path: Path) -> None:
    """``pouw-node ... | head``: the reader closes the pipe; the command stops without
    ``error: Broken pipe`` or a traceback (status 141, as a tool killed by SIGPIPE)."""
    for args in (["init", "--datadir", str(dev_datadir), "--genesis", "dev"],
                 ["export", "--datadir", str(dev_datadir), str(tmp_path / "out.rlp")]):
        proc = subprocess.Popen([*pouw_node(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # as `head -0` would
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert proc.returncode == 141, err
        assert "error" not in err and "Traceback" not in err and "Exception ignored" not in err, err


def test_unexpected_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                        dev_datadir: Path) -> None:
    """A bug in a command still ends in one line (POUW_TRACEBACK=1 shows the traceback)."""
    import node.cli as cli_module

    def broken(args: Any) -> int:
        raise KeyError("surprise")

    monkeypatch.setattr(cli_module, "cmd_export", broken)
    monkeypatch.delenv("POUW_TRACEBACK", raising=False)
    assert cli_module.main(["export", "--datadir", str(dev_datadir), "x.rlp"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "error: KeyError: 'surprise' (set POUW_TRACEBACK=1 for the traceback)"
    assert "Traceback" not in err
    monkeypatch.setenv("POUW_TRACEBACK", "1")
    with pytest.raises(KeyError):
        cli_module.main(["export", "--datadir", str(dev_datadir), "x.rlp"])

"""``pouw-devnet`` end to end with real node processes (noproof dev genesis, 1 s blocks):
4 nodes converge; a transaction sent to a validator is mined by the miner and visible on
every node; a SIGKILLed node restarts and catches up; ``down`` keeps the data."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from devnet import cli
from tests.chain.helpers import ALICE, BOB, address_of, transfer

pytestmark = pytest.mark.slow


def free_base_port(count: int) -> int:
    """A base port with ``count`` consecutive free ports (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65000:
            continue
        ok = True
        for port in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # noqa: BLE001 - nodes may still be starting
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def statuses(root: Path) -> list[dict[str, Any]]:
    state = cli.DevnetState.load(root)
    return [cli.node_status(spec, root, state.dev_only) for spec in state.nodes]


def converged_at(root: Path, minimum: int) -> Any:
    rows = statuses(root)
    heads = {r.get("head") for r in rows}
    if all(r.get("state") == "running" and r.get("number", -1) >= minimum for r in rows) and len(heads) == 1:
        return rows
    return None


@pytest.fixture
def devnet(tmp_path: Path, capsys):
    root = tmp_path / "devnet"
    rpc_base = free_base_port(4)
    p2p_base = free_base_port(4)
    args = ["up", "--datadir", str(root), "--nodes", "4", "--miners", "1", "--genesis", "dev",
            "--block-time", "1", "--rpc-port", str(rpc_base), "--p2p-port", str(p2p_base)]
    try:
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        yield root, args, out
    finally:
        cli.main(["down", "--datadir", str(root)])


def test_devnet_converges_mines_txs_and_recovers_from_sigkill(devnet, capsys) -> None:
    root, up_args, out = devnet
    assert "PUBLIC TEST KEYS, DEVNET ONLY" in out and "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in out
    state = cli.DevnetState.load(root)
    rows = wait_until(lambda: converged_at(root, 3), 60, "4 nodes to converge at block >= 3")
    assert [r["role"] for r in rows] == ["miner", "validator", "validator", "validator"]
    assert all(r["peers"] == 3 for r in rows)

    # A transaction sent to validator node3 is gossiped to the miner, mined, and seen by all.
    tx = transfer(ALICE, 0, address_of(BOB), 777, chain_id=1337)
    tx_hash = cli.rpc(state.nodes[3].rpc_port, "eth_sendRawTransaction", ["0x" + tx.encode().hex()])
    for spec in state.nodes:
        receipt = wait_until(lambda: cli.rpc(spec.rpc_port, "eth_getTransactionReceipt", [tx_hash]), 30,
                             f"receipt on {spec.name}")
        assert receipt["status"] == "0x1"

    # SIGKILL a validator; the others go on; `up` restarts it and it catches up.
    assert cli.main(["kill", "2", "--datadir", str(root)]) == 0
    wait_until(lambda: cli.read_pid(root / "node2") is None, 10, "node2 to die")
    before = statuses(root)[0]["number"]
    wait_until(lambda: statuses(root)[0]["number"] >= before + 3, 30, "chain to move on without node2")
    assert cli.main(up_args) == 0
    target = statuses(root)[0]["number"]
    wait_until(lambda: converged_at(root, target), 60, "node2 to catch up")

    # status prints a table; down stops cleanly and keeps the data.
    def status_agrees() -> bool:  # a block a second: a status may fall between two heads
        assert cli.main(["status", "--datadir", str(root)]) == 0
        return "all running nodes agree on the head" in capsys.readouterr().out

    wait_until(status_agrees, 20, "status to report one head")
    assert cli.main(["down", "--datadir", str(root)]) == 0
    assert "stopped cleanly" in capsys.readouterr().out
    assert (root / "node2" / "chaindata").is_dir() and (root / "node2" / "node.log").stat().st_size > 0
    assert "p2p listening" in (root / "node0" / "node.log").read_text()


def test_devnet_reset_refuses_a_directory_without_a_devnet(tmp_path: Path, capsys) -> None:
    assert cli.main(["reset", "--datadir", str(tmp_path)]) == 1
    assert "no devnet" in capsys.readouterr().err


def test_devnet_up_refuses_too_many_miners(tmp_path: Path, capsys) -> None:
    assert cli.main(["up", "--datadir", str(tmp_path / "d"), "--nodes", "2", "--miners", "3", "--genesis", "dev"]) == 1
    assert "--miners" in capsys.readouterr().err


def test_node_command_lines(tmp_path: Path) -> None:
    state = cli.DevnetState("dev", True, 2.0, [
        cli.NodeSpec("node0", 8545, 30303, True, "0x" + "c0" * 20),
        cli.NodeSpec("node1", 8546, 30304, False, "0x" + "c1" * 20),
    ])
    miner = cli.node_command(state, state.nodes[0], tmp_path)
    assert miner[1:4] == ["-m", "node.cli", "run"]  # plain `pouw-node run`
    assert "--peers" in miner and "127.0.0.1:30304" in miner and "--dev-period" in miner
    assert miner[miner.index("--coinbase") + 1] == "0x" + "c0" * 20
    # and pouw-node accepts that command line as is
    from node.cli import build_parser

    args = build_parser().parse_args(miner[3:])
    assert args.dev_period == 2.0 and args.coinbase == "0x" + "c0" * 20 and len(args.peers) == 1
    state.dev_only = False
    assert "--mine" in cli.node_command(state, state.nodes[0], tmp_path)
    assert "--mine" not in cli.node_command(state, state.nodes[1], tmp_path)


def test_devnet_partition_and_heal_converges_on_the_heaviest_branch(tmp_path: Path, capsys) -> None:
    root = tmp_path / "devnet"
    rpc_base, p2p_base = free_base_port(4), free_base_port(4)
    # Two miners, one in each half: node0 (half {0,1}) and node1... put miners 0 and 1 in
    # different halves: groups 0,2 | 1,3.
    try:
        assert cli.main(["up", "--datadir", str(root), "--nodes", "4", "--miners", "2", "--genesis", "dev",
                         "--block-time", "1", "--rpc-port", str(rpc_base), "--p2p-port", str(p2p_base)]) == 0
        wait_until(lambda: converged_at(root, 2), 60, "convergence before the split")
        assert cli.main(["partition", "0,2", "1,3", "--datadir", str(root)]) == 0
        rows = statuses(root)
        assert all(r["peers"] <= 1 for r in rows)
        start = max(r["number"] for r in rows)

        def split() -> Any:
            rows = statuses(root)
            by_name = {r["name"]: r for r in rows}
            ok = (by_name["node0"]["head"] == by_name["node2"]["head"] and by_name["node1"]["head"] == by_name["node3"]["head"]
                  and by_name["node0"]["head"] != by_name["node1"]["head"]
                  and min(r["number"] for r in rows) >= start + 3)
            return rows if ok else None

        wait_until(split, 60, "each half to extend its own branch")
        assert cli.main(["heal", "--datadir", str(root)]) == 0
        rows = wait_until(lambda: converged_at(root, start + 3), 60, "all four to converge after healing")
        assert all(r["peers"] == 3 for r in rows)
        # The winner is the heaviest: every node's head has the greatest total difficulty seen.
        state = cli.DevnetState.load(root)
        tds = {int(cli.rpc(s.rpc_port, "eth_getBlockByNumber", ["latest", False]).get("totalDifficulty", "0x0"), 16)
               for s in state.nodes}
        assert len(tds) == 1
    finally:
        cli.main(["down", "--datadir", str(root)])


def model_of(result: dict[str, Any]) -> tuple[dict[str, str], dict[str, tuple[str, list[int], bytes]]]:
    """A result's safetensors model as (metadata, {name: (dtype, shape, bytes)})."""
    blob = bytes.fromhex(result["model"][2:])
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    body = blob[8 + size :]
    metadata = header.pop("__metadata__", {})
    tensors = {name: (t["dtype"], t["shape"], body[t["data_offsets"][0] : t["data_offsets"][1]]) for name, t in header.items()}
    return metadata, tensors


def test_pouw_devnet_job_posted_at_a_validator_is_mined_and_verified_everywhere(tmp_path: Path) -> None:
    """Real processes, pouw seal engine (a tiny genesis with a standing job, ~20 steps a
    block): a dataset uploaded to node3 only (pouw_putDataset) and a job on it posted
    through node3 (pouw_submitJob); the dataset follows the job to the miner node0 (p2p
    prefetch), which trains the job to completion; nodes 1-3 verify it. Then the job and
    its result read the same on every node (pouw_getJob, pouw_getJobResult: checkpoint and
    metrics), and `status` counts the job."""
    pytest.importorskip("consensus.miner", reason="needs the consensus miner")
    from consensus.params import REGISTRY_ADDRESS
    from consensus.registry import decode_job_status, encode_job_status, encode_post_job
    from pouw.datasets import dataset_to_bytes, synthetic_blobs
    from tests.chain.helpers import sign_tx
    from tests.consensus.helpers import pouw_genesis_dict, tiny_spec

    raw = pouw_genesis_dict(expected_steps=20, k=2)
    raw["consensus"]["targetBlockTime"] = 2
    genesis = tmp_path / "pouw-genesis.json"
    genesis.write_text(json.dumps(raw))
    root = tmp_path / "devnet"
    rpc_base, p2p_base = free_base_port(4), free_base_port(4)
    try:
        assert cli.main(["up", "--datadir", str(root), "--nodes", "4", "--miners", "1", "--genesis", str(genesis),
                         "--rpc-port", str(rpc_base), "--p2p-port", str(p2p_base)]) == 0
        state = cli.DevnetState.load(root)
        ports = [s.rpc_port for s in state.nodes]
        wait_until(lambda: converged_at(root, 2), 90, "pouw blocks on all four nodes")

        # The dApp uploads its dataset to node3 only, then posts the job there.
        blob = dataset_to_bytes(synthetic_blobs(11, 64, 32))
        dataset = cli.rpc(ports[3], "pouw_putDataset", ["0x" + blob.hex()])["id"]
        assert all(cli.rpc(port, "pouw_getDataset", [dataset]) is None for port in ports[:3])
        budget = 60  # ~3 blocks
        tx = sign_tx(ALICE, 0, REGISTRY_ADDRESS, value=10**18,
                     data=encode_post_job(tiny_spec(steps=budget, dataset=dataset), 10**9),
                     gas=1_000_000, chain_id=raw["chainId"])
        submitted = cli.rpc(ports[3], "pouw_submitJob", ["0x" + tx.encode().hex(), 0])
        tx_hash = submitted["transactionHash"]
        receipt = wait_until(lambda: cli.rpc(ports[0], "eth_getTransactionReceipt", [tx_hash]), 60,
                             "the job post to be mined")
        assert receipt["status"] == "0x1" and receipt["logs"], receipt

        call = {"to": "0x" + bytes(REGISTRY_ADDRESS).hex(), "data": "0x" + encode_job_status(1).hex()}

        def job_status(port: int) -> tuple:
            return decode_job_status(bytes.fromhex(cli.rpc(port, "eth_call", [call, "latest"])[2:]))

        wait_until(lambda: job_status(ports[0])[4] > 0, 90, "node0 to train the posted job (its dataset prefetched)")
        done = wait_until(lambda: (lambda j: j if j["status"] == "completed" else None)(cli.rpc(ports[0], "pouw_getJob", ["0x1"])),
                          120, "the job to complete")
        assert int(done["stepsDone"], 16) >= budget
        # Every node past the block that completed it: the job reads the same everywhere.
        target = statuses(root)[0]["number"]
        wait_until(lambda: converged_at(root, target), 90, "convergence")
        statuses_ = {job_status(port) for port in ports}
        assert len(statuses_) == 1  # steps done, checkpoint, escrow: the same on every node
        jobs = [cli.rpc(port, "pouw_getJob", ["0x1"]) for port in ports]
        assert all(job == jobs[0] for job in jobs), jobs
        assert jobs[0]["status"] == "completed" and jobs[0]["spec"]["dataset"] == dataset

        # The result from any node: same checkpoint (the job's), same exact metrics.
        results = [cli.rpc(port, "pouw_getJobResult", ["0x1"]) for port in ports]
        for result in results:
            assert result["final"] is True and result["checkpoint"] == jobs[0]["checkpoint"]
            assert result["metrics"] == results[0]["metrics"] and result["metrics"]
            assert result["model"] == results[0]["model"]  # the same file, byte for byte
        metadata, tensors = model_of(results[0])
        assert json.loads(metadata["pouw"]) == {"checkpoint": jobs[0]["checkpoint"], "family": "mlp"}
        assert tensors
        assert all(cli.rpc(port, "pouw_getDataset", [dataset]) is not None for port in ports)  # it followed the job

        # Full mesh (bans last 10 minutes, so a banned honest peer still fails this; a
        # connection being replaced as duplicate only delays it).
        rows = wait_until(lambda: (lambda rs: rs if all(r.get("peers") == 3 for r in rs) else None)(statuses(root)),
                          30, "every node to have 3 peers")
        assert all(r["jobs"] == "0/1" for r in rows), rows  # status: open/total posted jobs
        assert all(r["work_rate"] is not None and r["work_rate"] > 0 for r in rows), rows
        for spec in state.nodes:
            log_text = (root / spec.name / cli.LOG_FILE).read_text()
            assert "invalid block" not in log_text
            assert "banned" not in log_text  # no honest node is punished
        assert "prefetched dataset of job 1" in (root / "node0" / cli.LOG_FILE).read_text()
    finally:
        cli.main(["down", "--datadir", str(root)])


def test_invalid_devnet_up_fails_loudly_when_a_port_is_taken(tmp_path: Path, capsys) -> None:
    """Another process holds node1's JSON-RPC port and answers JSON-RPC there (as another
    devnet's node would): `up` must not take that answer for node1's. node1 exits
    ("cannot listen"), and `up` says so, naming the node and the reason, exit status 1."""
    import http.server
    import threading

    rpc_base = free_base_port(2)
    p2p_base = free_base_port(2)

    class Impostor(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = b'{"jsonrpc":"2.0","id":1,"result":"0x5"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", rpc_base + 1), Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    root = tmp_path / "devnet"
    try:
        code = cli.main(["up", "--datadir", str(root), "--nodes", "2", "--miners", "1", "--genesis", "dev",
                         "--block-time", "1", "--rpc-port", str(rpc_base), "--p2p-port", str(p2p_base), "--wait", "60"])
        err = capsys.readouterr().err
        assert code == 1, err
        assert "node1" in err and "exited while starting" in err and f"cannot listen on 127.0.0.1:{rpc_base + 1}" in err, err
        assert "1 of 2 nodes up" in err
        assert "node0" not in err.split("(1 of 2")[0]  # node0 itself came up fine
    finally:
        impostor.shutdown()
        cli.main(["down", "--datadir", str(root)])

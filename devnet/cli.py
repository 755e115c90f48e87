"""``pouw-devnet``: start, inspect and stop a local multi-node devnet.

    pouw-devnet up [--nodes N] [--miners M] [--datadir DIR] [--genesis dev|default|FILE]
    pouw-devnet status [--datadir DIR]
    pouw-devnet down [--datadir DIR]          # stop cleanly, data kept
    pouw-devnet reset [--datadir DIR]         # stop and delete the nodes' data
    pouw-devnet kill NODE [--datadir DIR]     # SIGKILL one node (crash drills); `up` restarts it
    pouw-devnet partition 0,1 2,3             # split: nodes peer only within their group
    pouw-devnet heal                          # full mesh again; all converge on the heaviest branch

Layout of DIR::

    DIR/devnet.json          what `up` started: genesis, ports, miners (read by the others)
    DIR/nodeI/               node I's datadir (genesis.json, chaindata/, blobs/)
    DIR/nodeI/node.log       its log;  DIR/nodeI/node.pid  its process id

Every node listens on 127.0.0.1 only and peers with all the others (static peers).
``up`` is idempotent: it starts the nodes that are not running, so after ``kill`` or a
crash it restarts them and they catch up from their peers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from eth_utils import to_checksum_address

import safejson
from devnet.errors import DevnetError
from devnet.kit.accounts import DEV_ADDRESSES, DEV_KEYS_HEX

DEFAULT_DIR = Path(".devnet")
STATE_FILE = "devnet.json"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
MAX_REPLY_BYTES = 1 << 20
"""JSON-RPC replies the devnet reads are small; whatever answers on a port is untrusted."""


@dataclass
class NodeSpec:
    name: str
    rpc_port: int
    p2p_port: int
    miner: bool
    coinbase: str


@dataclass
class DevnetState:
    genesis: str
    dev_only: bool
    block_time: float
    nodes: list[NodeSpec]
    groups: Optional[list[list[str]]] = None
    """Set by ``partition``: each node peers only within its group. None: full mesh."""

    def peers_of(self, spec: NodeSpec) -> list[NodeSpec]:
        group = next((g for g in self.groups or [] if spec.name in g), None)
        return [n for n in self.nodes if n.name != spec.name and (group is None or n.name in group)]

    def save(self, root: Path) -> None:
        data = asdict(self)
        tmp = root / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, root / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> "DevnetState":
        path = root / STATE_FILE
        if not path.is_file():
            raise DevnetError(f"no devnet in {root} (run: pouw-devnet up --datadir {root})")
        raw = json.loads(path.read_text())
        return cls(raw["genesis"], raw["dev_only"], raw["block_time"], [NodeSpec(**n) for n in raw["nodes"]],
                   raw.get("groups"))


# --- processes ---------------------------------------------------------------------------


def read_pid(node_dir: Path) -> Optional[int]:
    try:
        pid = int((node_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def node_command(state: DevnetState, spec: NodeSpec, root: Path) -> list[str]:
    """``pouw-node run ...`` for one node (as ``python -m node.cli``, so the node runs on
    the same interpreter as this command, whether or not the console script is on PATH)."""
    peers = ",".join(f"127.0.0.1:{n.p2p_port}" for n in state.peers_of(spec))
    cmd = [
        sys.executable, "-m", "node.cli", "run", "--datadir", str(root / spec.name),
        "--rpc-port", str(spec.rpc_port), "--p2p-port", str(spec.p2p_port),
    ]
    if peers:
        cmd += ["--peers", peers]
    if spec.miner:
        if state.dev_only:
            cmd += ["--dev-period", str(state.block_time), "--coinbase", spec.coinbase]
        else:
            cmd += ["--mine", "--coinbase", spec.coinbase]
    return cmd


def start_node(state: DevnetState, spec: NodeSpec, root: Path) -> int:
    from node.node import RUNNING_FILENAME

    node_dir = root / spec.name
    (node_dir / RUNNING_FILENAME).unlink(missing_ok=True)  # a crashed run's: must not vouch for this one
    log = open(node_dir / LOG_FILE, "ab")
    proc = subprocess.Popen(
        node_command(state, spec, root), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True,
    )
    log.close()
    (node_dir / PID_FILE).write_text(f"{proc.pid}\n")
    return proc.pid


def stop_pid(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after ``timeout``; True when it stopped cleanly."""
    return stop_pids([pid], timeout)[pid]


def stop_pids(pids: Sequence[int], timeout: float = 15.0) -> dict[int, bool]:
    """SIGTERM every process at once, wait for them together, SIGKILL those still alive
    after ``timeout``; pid -> whether it stopped cleanly."""
    clean: dict[int, bool] = {}
    waiting = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
            waiting.append(pid)
        except ProcessLookupError:
            clean[pid] = True
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if pid_alive(pid)]
        if waiting:
            time.sleep(0.05)
    for pid in pids:
        clean.setdefault(pid, pid not in waiting)
    for pid in waiting:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return clean


# --- JSON-RPC ------------------------------------------------------------------------------


def rpc(port: int, method: str, params: Sequence[Any] = (), timeout: float = 3.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = safejson.loads(response.read(MAX_REPLY_BYTES + 1), max_depth=64, max_bytes=MAX_REPLY_BYTES)
    if "error" in reply:
        raise DevnetError(f"{method}: {reply['error'].get('message')}")
    return reply["result"]


def verify_node(spec: NodeSpec, root: Path, pid: int, timeout: float) -> None:
    """Wait until the node we started (``pid``) serves its own ports, or fail loudly.

    A JSON-RPC answer on the port proves nothing (another devnet's node may hold it). The
    node writes DIR/running.json with its pid and ports once it has bound them; the port
    is ours only if that file names our pid and our ports and the process is alive.
    """
    from node.node import read_running_file

    node_dir = root / spec.name
    deadline = time.monotonic() + timeout
    while True:
        if not pid_alive(pid):
            raise DevnetError(f"{spec.name} (pid {pid}) exited while starting: {last_error(node_dir / LOG_FILE)}; "
                              f"see {node_dir / LOG_FILE}")
        info = read_running_file(node_dir)
        if info is not None and info.get("pid") == pid:
            rpc_url, p2p_port = info.get("rpc"), info.get("p2p_port")
            if rpc_url != f"http://127.0.0.1:{spec.rpc_port}" or p2p_port != spec.p2p_port:
                raise DevnetError(f"{spec.name} (pid {pid}) serves {rpc_url} and p2p port {p2p_port}, "
                                  f"not 127.0.0.1:{spec.rpc_port} and {spec.p2p_port}")
            if wait_rpc(spec.rpc_port, max(1.0, deadline - time.monotonic())):
                return
        if time.monotonic() > deadline:
            raise DevnetError(f"{spec.name} (pid {pid}) did not come up on ports {spec.rpc_port}/{spec.p2p_port} "
                              f"within {timeout:.0f} s; see {node_dir / LOG_FILE}")
        time.sleep(0.2)


def last_error(log_file: Path) -> str:
    """The node's last ``error: ...`` line (its one-line reason), else its last line."""
    try:
        with open(log_file, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "no log"
    errors = [line for line in lines if line.startswith("error: ")]
    return (errors[-1] if errors else lines[-1] if lines else "no output").strip()


def wait_rpc(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rpc(port, "eth_blockNumber", timeout=1.0)
            return True
        except (OSError, urllib.error.URLError, DevnetError, ValueError):
            time.sleep(0.2)
    return False


# --- commands ------------------------------------------------------------------------------


def resolve_genesis(spec: Optional[str]) -> str:
    """``dev`` / ``default`` / a path. Without one: the pouw genesis when the consensus
    engine and miner exist and it has a standing job, else the noproof dev genesis."""
    if spec is not None:
        return spec
    try:
        from consensus.engine import PouwEngine  # noqa: F401
        from consensus import miner  # noqa: F401
        from genesis import load_default_genesis
    except ImportError:
        return "dev"
    if not load_default_genesis().pouw.standing_jobs:
        return "dev"  # nothing to mine until a job is posted: the devnet would stall
    return "default"


def cmd_up(args: argparse.Namespace) -> int:
    from node.node import init_datadir, read_genesis

    root: Path = args.datadir
    root.mkdir(parents=True, exist_ok=True)
    if (root / STATE_FILE).is_file():
        state = DevnetState.load(root)
        if args.nodes is not None and args.nodes != len(state.nodes):
            raise DevnetError(f"{root} holds a {len(state.nodes)}-node devnet; `pouw-devnet reset` first to change it")
    else:
        nodes = args.nodes or 4
        miners = 1 if args.miners is None else args.miners
        if not 0 <= miners <= nodes:
            raise DevnetError(f"--miners must be between 0 and --nodes ({nodes}), got {miners}")
        genesis_spec = resolve_genesis(args.genesis)
        genesis = read_genesis(None if genesis_spec == "default" else genesis_spec)
        block_time = float(args.block_time or genesis.config.target_block_time)
        state = DevnetState(
            genesis=genesis_spec, dev_only=bool(genesis.config.is_dev_only), block_time=block_time,
            nodes=[
                NodeSpec(f"node{i}", args.rpc_port + i, args.p2p_port + i, i < miners, "0x" + f"{0xC0 + i:02x}" * 20)
                for i in range(nodes)
            ],
        )
        for spec in state.nodes:
            init_datadir(root / spec.name, genesis)
        state.save(root)
    started = []
    pids: dict[str, int] = {}
    for spec in state.nodes:
        pid = read_pid(root / spec.name)
        if pid is None:
            pid = start_node(state, spec, root)
            started.append(spec.name)
        pids[spec.name] = pid
    failures = []
    for spec in state.nodes:
        try:
            verify_node(spec, root, pids[spec.name], args.wait)
        except DevnetError as exc:
            failures.append(str(exc))
    if failures:
        up = len(state.nodes) - len(failures)
        raise DevnetError("; ".join(failures) + f" ({up} of {len(state.nodes)} nodes up: `pouw-devnet down` stops them)")
    print_up(state, root, started)
    return 0


def print_up(state: DevnetState, root: Path, started: list[str]) -> None:
    kind = "noproof development chain (blocks every %.0f s)" % state.block_time if state.dev_only else "proof of useful work"
    print(f"devnet in {root}: {len(state.nodes)} nodes, genesis {state.genesis} ({kind})")
    print(f"started: {', '.join(started) if started else 'none (all were running)'}")
    print()
    print(f"{'node':8} {'role':10} {'JSON-RPC':26} {'p2p':16} log")
    for spec in state.nodes:
        role = "miner" if spec.miner else "validator"
        print(f"{spec.name:8} {role:10} http://127.0.0.1:{spec.rpc_port:<10} 127.0.0.1:{spec.p2p_port:<6} "
              f"{root / spec.name / LOG_FILE}")
    print()
    print("Funded development accounts -- PUBLIC TEST KEYS, DEVNET ONLY, NEVER USE WITH VALUE:")
    for key, address in zip(DEV_KEYS_HEX, DEV_ADDRESSES):
        print(f"  {to_checksum_address(address)}  key {key}")
    print()
    print(f"status: pouw-devnet status --datadir {root}    stop: pouw-devnet down --datadir {root}")


def node_status(spec: NodeSpec, root: Path, dev_only: Optional[bool] = None) -> dict[str, Any]:
    """One row of ``status``; ``dev_only`` (read from DIR/devnet.json when None): a
    noproof chain, whose blocks carry no useful work (work rate: difficulty per second)."""
    if dev_only is None:
        dev_only = DevnetState.load(root).dev_only
    status: dict[str, Any] = {"name": spec.name, "role": "miner" if spec.miner else "validator",
                              "pid": read_pid(root / spec.name)}
    if status["pid"] is None:
        status["state"] = "stopped"
        return status
    try:
        number = int(rpc(spec.rpc_port, "eth_blockNumber"), 16)
        head = rpc(spec.rpc_port, "eth_getBlockByNumber", ["latest", False])
        status.update(state="running", number=number, head=head["hash"],
                      peers=int(rpc(spec.rpc_port, "net_peerCount"), 16))
        status["work_rate"] = _work_rate(spec.rpc_port, number, head, useful=not dev_only)
        jobs = _jobs(spec.rpc_port)
        if jobs is not None:
            status["jobs_open"], status["jobs_total"] = jobs
            status["jobs"] = f"{jobs[0]}/{jobs[1]}"
    except (OSError, urllib.error.URLError, DevnetError, ValueError, KeyError, TypeError) as exc:
        status.update(state=f"not answering ({exc})")
    return status


WORK_RATE_BLOCKS = 10


def _work_rate(port: int, number: int, head: dict[str, Any], useful: bool = True) -> Optional[float]:
    """Work per second over the last blocks: with ``useful`` (a pouw chain),
    ``pouw_networkStats``'s ``workRate`` (useful work units per second) when the node
    serves it; else total difficulty per second."""
    if useful:
        try:
            stats = rpc(port, "pouw_networkStats", [WORK_RATE_BLOCKS])
            return float(int(stats["workRate"], 16))
        except (OSError, urllib.error.URLError, DevnetError, ValueError, KeyError, TypeError):
            pass
    back = max(0, number - WORK_RATE_BLOCKS)
    old = rpc(port, "eth_getBlockByNumber", [hex(back), False])
    dt = int(head["timestamp"], 16) - int(old["timestamp"], 16)
    if dt <= 0:
        return None
    if "totalDifficulty" in head and "totalDifficulty" in old:
        return (int(head["totalDifficulty"], 16) - int(old["totalDifficulty"], 16)) / dt
    return int(head["difficulty"], 16) * (number - back) / dt


JOB_PAGE = 1000
JOB_PAGES = 10


def _jobs(port: int) -> Optional[tuple[int, int]]:
    """(open, total) posted jobs from ``pouw_listJobs`` (standing jobs left out); None
    when the node does not serve it. Counts at most JOB_PAGES pages of JOB_PAGE jobs."""
    open_ = total = 0
    from_id = 1
    for _ in range(JOB_PAGES):
        try:
            page = rpc(port, "pouw_listJobs", [{"fromId": hex(from_id), "limit": JOB_PAGE, "includeStanding": False}])
        except (OSError, urllib.error.URLError, DevnetError, ValueError):
            return None
        if not isinstance(page, list):
            return None
        total += len(page)
        open_ += sum(1 for job in page if isinstance(job, dict) and job.get("status") == "open")
        if len(page) < JOB_PAGE:
            break
        from_id = int(page[-1]["id"], 16) + 1
    return open_, total


def cmd_status(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    state = DevnetState.load(root)
    rows = [node_status(spec, root, state.dev_only) for spec in state.nodes]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'node':8} {'role':10} {'state':10} {'block':>7} {'head':14} {'peers':>5} {'work/s':>12} {'jobs':>9}")
    for row in rows:
        head = (row.get("head") or "-")[:12]
        rate = row.get("work_rate")
        jobs = row.get("jobs")
        print(f"{row['name']:8} {row['role']:10} {row['state'][:10]:10} {row.get('number', '-'):>7} {head:14} "
              f"{row.get('peers', '-'):>5} {('%.3g' % rate) if rate is not None else '-':>12} "
              f"{jobs if jobs is not None else '-':>9}")
    heads = {row.get("head") for row in rows if row.get("state") == "running"}
    rate = "difficulty per second (noproof chain)" if state.dev_only else "useful work units per second"
    print(f"work/s: {rate} over the last {WORK_RATE_BLOCKS} blocks; jobs: open/total posted jobs")
    if len(heads) == 1:
        print("all running nodes agree on the head")
    elif heads:
        print(f"{len(heads)} different heads among running nodes (converging, or partitioned)")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    state = DevnetState.load(root)
    pids = {spec.name: read_pid(root / spec.name) for spec in state.nodes}
    clean = stop_pids([pid for pid in pids.values() if pid is not None])  # all at once
    for spec in state.nodes:
        pid = pids[spec.name]
        if pid is None:
            print(f"{spec.name}: not running")
            continue
        (root / spec.name / PID_FILE).unlink(missing_ok=True)
        print(f"{spec.name}: stopped {'cleanly' if clean[pid] else '(killed after timeout)'}")
    print(f"data kept in {root}; `pouw-devnet up --datadir {root}` resumes")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    if not (root / STATE_FILE).is_file():
        raise DevnetError(f"no devnet in {root}: nothing to reset")
    cmd_down(args)
    state = DevnetState.load(root)
    for spec in state.nodes:
        shutil.rmtree(root / spec.name, ignore_errors=True)
    (root / STATE_FILE).unlink()
    print(f"devnet in {root} deleted")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    state = DevnetState.load(root)
    names = {spec.name for spec in state.nodes}
    name = args.node if args.node in names else f"node{args.node}"
    if name not in names:
        raise DevnetError(f"no node {args.node} (have {', '.join(sorted(names))})")
    pid = read_pid(root / name)
    if pid is None:
        raise DevnetError(f"{name} is not running")
    os.kill(pid, signal.SIGKILL)
    print(f"{name}: SIGKILL sent to {pid}; `pouw-devnet up --datadir {root}` restarts it")
    return 0


def _restart_all(state: DevnetState, root: Path, wait: float) -> None:
    """Stop every running node and start it again with the peers ``state`` now gives it
    (a node keeps its datadir, so it resumes where it stopped)."""
    pids = {spec.name: read_pid(root / spec.name) for spec in state.nodes}
    stop_pids([pid for pid in pids.values() if pid is not None])
    for spec in state.nodes:
        (root / spec.name / PID_FILE).unlink(missing_ok=True)
    started = {spec.name: start_node(state, spec, root) for spec in state.nodes}
    for spec in state.nodes:
        verify_node(spec, root, started[spec.name], wait)


def cmd_partition(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    state = DevnetState.load(root)
    names = [spec.name for spec in state.nodes]
    groups = []
    for text in args.groups:
        group = [part if part in names else f"node{part}" for part in text.split(",") if part]
        unknown = [g for g in group if g not in names]
        if unknown:
            raise DevnetError(f"unknown nodes {', '.join(unknown)} (have {', '.join(names)})")
        groups.append(group)
    flat = [n for g in groups for n in g]
    if sorted(flat) != sorted(names):
        raise DevnetError("every node must be in exactly one group, e.g. `partition 0,1 2,3`")
    state.groups = groups
    state.save(root)
    _restart_all(state, root, args.wait)
    print("partitioned: " + " | ".join(",".join(g) for g in groups) + f"; heal with `pouw-devnet heal --datadir {root}`")
    return 0


def cmd_heal(args: argparse.Namespace) -> int:
    root: Path = args.datadir
    state = DevnetState.load(root)
    state.groups = None
    state.save(root)
    _restart_all(state, root, args.wait)
    print("healed: every node peers with every other again; they converge on the heaviest branch")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pouw-devnet", description="A local multi-node devnet.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--datadir", type=Path, default=DEFAULT_DIR, help=f"devnet directory (default {DEFAULT_DIR})")
        sub.set_defaults(func=func)
        return sub

    up = command("up", cmd_up, "start the devnet (or the nodes of it that are not running)")
    up.add_argument("--nodes", type=int, default=None, help="number of nodes (default 4)")
    up.add_argument("--miners", type=int, default=None, help="how many of them mine (default 1)")
    up.add_argument("--genesis", default=None, metavar="dev|default|FILE",
                    help="default: the pouw genesis when the miner exists, else dev (noproof)")
    up.add_argument("--rpc-port", type=int, default=8545, help="JSON-RPC port of node0 (node i: +i)")
    up.add_argument("--p2p-port", type=int, default=30303, help="p2p port of node0 (node i: +i)")
    up.add_argument("--block-time", type=float, default=None, help="noproof chains: seconds between blocks")
    up.add_argument("--wait", type=float, default=60.0, help="seconds to wait for each node's RPC")
    status = command("status", cmd_status, "heads, peers, work rate and jobs of every node")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    command("down", cmd_down, "stop every node cleanly; data is kept")
    command("reset", cmd_reset, "stop every node and delete the devnet's data")
    kill = command("kill", cmd_kill, "SIGKILL one node (crash drill)")
    kill.add_argument("node", help="node name or index")
    partition = command("partition", cmd_partition, "split the devnet: nodes peer only within their group")
    partition.add_argument("groups", nargs="+", metavar="GROUP", help="comma-separated node indexes or names, e.g. 0,1 2,3")
    partition.add_argument("--wait", type=float, default=60.0, help=argparse.SUPPRESS)
    heal = command("heal", cmd_heal, "undo partition: every node peers with every other again")
    heal.add_argument("--wait", type=float, default=60.0, help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from node.cli import closed_pipe, report_error, unexpected_error
    from chain.errors import ChainError

    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe (pouw-devnet status | head) shows here
        return code
    except BrokenPipeError:
        return closed_pipe()
    except (DevnetError, ChainError, OSError) as exc:
        report_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        return unexpected_error(exc)


if __name__ == "__main__":
    sys.exit(main())

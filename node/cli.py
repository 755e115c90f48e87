"""``pouw-node``: the command line of the node.

Commands (the work is done in ``node/node.py``; this module parses arguments, prints
results and turns every error into one ``error: ...`` line on stderr):

- ``init``: create a datadir for a genesis (idempotent; refuses another chain's datadir);
- ``run``: open the datadir and serve JSON-RPC and p2p until SIGINT/SIGTERM
  (``--automine`` and ``--dev-period S`` on dev chains; ``--mine --coinbase ADDR`` mines
  on a pouw chain);
- ``export`` / ``import``: canonical blocks to and from a block file (geth's format);
- client tools that open no datadir: ``job ...`` and ``rewards`` (client/jobcli.py),
  ``account ...`` (client/keys.py), ``dataset make`` (client/datasetcli.py).

Logging: ``--verbosity`` and ``--log-format`` on init/run/export/import (node/logs.py).

Exit codes: 0 success, 1 an error (reported in one line), 2 bad usage, 130 interrupted,
141 stdout closed by its reader (``pouw-node ... | head``: stopped quietly, as Unix tools
do when SIGPIPE ends them).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from eth_utils import encode_hex

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141

BLOCK_FILE_HELP = """\
Block file format: entries back to back, each one RLP item. A block without a work
payload is its plain RLP, as geth's export writes it (so a payload-less chain, such as
every dev chain, exports to a geth-compatible file); a block with a work payload is the
RLP list [block, payload]. Block 0 may be present; import checks it is our genesis.
The datasets and checkpoint states that verifying the blocks reads go to FILE.blobs
beside the block file (RLP entries [hash, data]); import reads it when present."""


# --- Commands --------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from node.node import init_datadir, read_genesis

    genesis = read_genesis(args.genesis)
    result = init_datadir(args.datadir, genesis)
    state = "initialised" if result.created else "already initialised (same genesis): nothing to do"
    print(f"datadir {args.datadir} {state}")
    print(f"genesis file: {genesis.path}")
    print(f"chain id: {result.chain_id}")
    print(f"genesis hash: {encode_hex(result.genesis_hash)}")
    if genesis.config.is_dev_only:
        print("seal engine: noproof (development chain: blocks need no proof of work)")
    else:
        print(f"seal engine: {genesis.config.seal_engine}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    early_stop = _catch_stop_signals()  # a signal while opening the datadir stops the node once up
    from node.node import (
        Node, NodeConfig, check_automine_allowed, check_dev_accounts_allowed, check_dev_period_allowed, open_datadir,
        read_datadir_genesis,
    )

    # Before opening: refuse plainly even where the seal engine is missing.
    if args.automine:
        check_automine_allowed(read_datadir_genesis(args.datadir), args.datadir)
    if args.dev_period:
        check_dev_period_allowed(read_datadir_genesis(args.datadir), args.datadir)
    if args.dev_accounts:
        check_dev_accounts_allowed(read_datadir_genesis(args.datadir), args.datadir)
    coinbase = None
    if args.mine:  # --- mining (consensus/miner.py) ---
        from node.mining import check_mining_allowed, parse_coinbase

        coinbase = parse_coinbase(args.coinbase)
        check_mining_allowed(read_datadir_genesis(args.datadir))
        check_device(args.device)
    prover = None
    if args.audit:  # --- auditing (consensus/auditor.py) ---
        from node.auditing import check_audit_allowed, load_prover_key

        check_audit_allowed(read_datadir_genesis(args.datadir))
        prover = load_prover_key(args.audit_key_file, args.audit_password_file)
    dev_coinbase = _dev_coinbase(args.coinbase) if (args.dev_period or args.automine) and not args.mine else None
    config = NodeConfig(
        rpc_host=args.rpc_addr, rpc_port=args.rpc_port, rpc=not args.no_rpc, automine=args.automine,
        dev_period=args.dev_period, coinbase=dev_coinbase, dashboard=not args.no_dashboard, metrics=not args.no_metrics,
        rpc_config=rpc_config_from_args(args), txpool_limits=txpool_limits_from_args(args),
        dataset_quota=args.dataset_quota, ws_max_per_client=args.ws_max_per_client, dev_accounts=args.dev_accounts,
    )
    with open_datadir(args.datadir) as datadir:
        node = Node(datadir, config)
        from client.jobcli import job_label

        node.imports.job_label = job_label  # 'standing-0' in the per-block log line
        head = datadir.chain.head()
        log.info(
            "datadir %s: chain id %d, genesis %s, head #%d %s",
            args.datadir, datadir.genesis.chain_id, encode_hex(datadir.chain.genesis_hash),
            head.block_number, encode_hex(head.hash),
        )
        miner = None
        if coinbase is not None:
            from node.mining import start_node_miner

            miner = start_node_miner(node, coinbase, args.device, args.segment_steps)
        auditor = None
        if args.audit:
            from node.auditing import start_node_auditor

            auditor = start_node_auditor(node, args, prover)
        try:
            asyncio.run(_run_until_signal(node, early_stop, args, miner, auditor))
        finally:
            if miner is not None:
                miner.stop()
            if auditor is not None:
                auditor.stop()
        head = datadir.chain.head()
        log.info("stopped at head #%d %s; closing the datadir", head.block_number, encode_hex(head.hash))
    return EXIT_OK


def check_device(device: str) -> None:
    """Refuse a ``--device`` this machine's torch cannot train on, saying why and what
    to do (the miner would fail later, with less to go on)."""
    from node.node import NodeError

    if device in ("auto", "cpu"):
        return
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise NodeError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    import torch

    if not torch.backends.cuda.is_built():
        raise NodeError(
            f"--device {device}: the installed torch {torch.__version__} is a CPU-only build (no CUDA); "
            "install a CUDA build (e.g. pip install torch --index-url https://download.pytorch.org/whl/cu128, "
            "see https://pytorch.org/get-started/locally/) or use --device cpu"
        )
    if not torch.cuda.is_available():
        raise NodeError(
            f"--device {device}: torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA "
            "device (no GPU, or no driver: nvidia-smi should list one); use --device cpu"
        )
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise NodeError(f"--device {device}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})")


def _dev_coinbase(text: Optional[str]) -> Optional[bytes]:
    """``--coinbase`` for blocks built without proof (--dev-period, --automine), or None
    (automine's default coinbase)."""
    from node.node import parse_address_option

    return None if text is None else parse_address_option(text, "--coinbase")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _catch_stop_signals() -> list[int]:
    """Record SIGINT/SIGTERM until the event loop takes them over; returns the record."""
    received: list[int] = []

    def record(signum: int, frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        received.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, record)
    return received


async def _run_until_signal(
    node: "Node", early_stop: list[int], args: argparse.Namespace, miner: "Optional[Miner]" = None,
    auditor: "Optional[Auditor]" = None,
) -> None:
    from node.p2p import start_p2p_from_args

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if early_stop:
        stop.set()

    def request_stop(signum: int) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop, signum)
    try:
        p2p = await start_p2p_from_args(args, node)  # None with --no-p2p
    except OSError as exc:
        raise OSError(
            f"cannot listen on {args.p2p_addr}:{args.p2p_port} (p2p): {exc.strerror or exc}"
            " (choose another --p2p-port, or --no-p2p)"
        ) from None
    if p2p is not None:
        node.backend.peers = p2p  # net_peerCount, eth_syncing, admin_nodeInfo, admin_peers
        node.imports.attribute_p2p(p2p)  # the per-block log line names the peer
        node.p2p_port = p2p.port
    if p2p is not None and miner is not None and hasattr(miner, "notify_new_head"):
        p2p.on_new_head.append(miner.notify_new_head)  # restart training on a peer's block
        p2p.on_blobs_prefetched.append(miner.notify_new_head)  # a job's dataset arrived: take it up now
    if p2p is not None and auditor is not None:
        p2p.on_new_head.append(auditor.notify_new_head)  # audit a peer's block as it arrives
    try:
        await node.run(stop)
    finally:
        if p2p is not None:
            await p2p.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def cmd_export(args: argparse.Namespace) -> int:
    from chain.errors import SealEngineUnavailable
    from node.node import export_blocks, open_datadir, read_datadir_genesis
    from chain.sealing import NoProofEngine

    # The chain's own seal engine names the blobs each block needs; where it is not in
    # this build, the blocks alone are written (they need no engine to be read out).
    engine = None
    if not args.no_blobs:
        try:
            from node.engines import engine_for

            engine = engine_for(read_datadir_genesis(args.datadir))
        except SealEngineUnavailable as exc:
            log.warning("exporting blocks without blobs: %s", exc)
    with open_datadir(args.datadir, seal_engine=engine or NoProofEngine) as datadir:
        stats = export_blocks(datadir.chain, args.file, start=args.start, end=args.end, blobs=engine is not None)
    blobs = f", {stats.blobs} blobs ({stats.blob_bytes} bytes) to {stats.blobs_path}" if stats.blobs_path else ""
    print(f"exported {stats.blocks} blocks to {args.file}{blobs}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from node.node import ImportStats, import_blocks, open_datadir

    def progress(stats: ImportStats, number: int) -> None:
        log.info(
            "imported %d blocks (at #%d), %.1f blocks/s, %.1f txs/s",
            stats.imported, number, stats.blocks_per_second, stats.txs_per_second,
        )

    with open_datadir(args.datadir) as datadir:
        head = datadir.chain.head()
        log.info("importing %s into %s (head #%d)", args.file, args.datadir, head.block_number)
        stats = import_blocks(
            datadir.chain, args.file, progress_every=args.progress, on_progress=progress, blobs_path=args.blobs
        )
    print(
        f"imported {stats.imported} blocks ({stats.transactions} transactions) in {stats.seconds:.2f} s: "
        f"{stats.blocks_per_second:.1f} blocks/s, {stats.txs_per_second:.1f} txs/s; "
        f"{stats.known} already known; head #{stats.head_number} {encode_hex(stats.head_hash)}"
    )
    return EXIT_OK


# --- Parser ---------------------------------------------------------------------------


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
               "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def _size(text: str) -> int:
    """A byte count: ``1073741824``, ``512MiB``, ``1GiB``, ``10GB``."""
    stripped = text.strip().lower()
    number = stripped.rstrip("kmgtib")
    unit = stripped[len(number):]
    if not number.isdigit() or unit not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 1073741824, 512MiB, 1GiB), got {text}")
    return int(number) * _SIZE_UNITS[unit]


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], got {text}")
    return value


RPC_APIS = ("eth", "net", "web3", "txpool", "admin", "pouw")
DEFAULT_RPC_APIS = "eth,net,web3,txpool,pouw"


def _api_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in RPC_APIS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown namespace {', '.join(unknown) or '(none)'}; choose from {','.join(RPC_APIS)}")
    return names


def _origins(text: str) -> tuple[str, ...]:
    return tuple(o.strip() for o in text.split(",") if o.strip())


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text}")
    return value


def add_rpc_arguments(run: argparse.ArgumentParser) -> None:
    """JSON-RPC and transaction-pool flags of ``run`` (geth's names in parentheses)."""
    run.add_argument(
        "--rpc-api", type=_api_list, default=_api_list(DEFAULT_RPC_APIS), metavar="LIST",
        help=f"namespaces served over JSON-RPC, comma-separated, from {','.join(RPC_APIS)} "
        f"(default {DEFAULT_RPC_APIS}; admin_ is read-only but off by default) (--http.api)",
    )
    run.add_argument(
        "--rpc-cors", type=_origins, default=(), metavar="ORIGINS",
        help="browser origins allowed to call the RPC, comma-separated, or * (default: none, CORS off) "
        "(--http.corsdomain)",
    )
    run.add_argument(
        "--rpc-evmtimeout", type=_non_negative_seconds, default=5.0, metavar="S",
        help="wall-clock limit of eth_call, eth_estimateGas, eth_createAccessList and eth_simulateV1 "
        "(default 5; 0 = none) (--rpc.evmtimeout)",
    )
    run.add_argument(
        "--rpc-gascap", type=_positive, default=50_000_000, metavar="GAS",
        help="most gas one eth_call / eth_estimateGas / simulated call may use (default 50000000) (--rpc.gascap)",
    )
    run.add_argument(
        "--rpc-call-cache", type=_size, default=32 << 20, metavar="SIZE",
        help="memory for eth_call answers kept by block and call, so that a view polled by many "
        "clients runs once per block (default 32MiB; 0 = off)",
    )
    run.add_argument(
        "--rpc-batch-limit", type=_positive, default=1000, metavar="N",
        help="most requests in one JSON-RPC batch (default 1000) (--rpc.batch-request-limit)",
    )
    run.add_argument(
        "--rpc-batch-response-max", type=_size, default=25_000_000, metavar="SIZE",
        help="largest answer to one batch; later requests get -32003 (default 25MB) "
        "(--rpc.batch-response-max-size)",
    )
    run.add_argument("--txpool-account-slots", type=_positive, default=64, metavar="N",
                     help="most transactions one sender may have in the pool (default 64) (--txpool.accountslots)")
    run.add_argument("--txpool-global-slots", type=_positive, default=4096, metavar="N",
                     help="pool capacity in 32 KiB slots (default 4096, about 128 MiB) (--txpool.globalslots)")
    run.add_argument("--txpool-price-bump", type=_positive, default=10, metavar="PERCENT",
                     help="fee increase a replacement must offer, in percent (default 10) (--txpool.pricebump)")
    run.add_argument("--txpool-price-limit", type=_positive, default=1, metavar="WEI",
                     help="least priority fee (legacy: gas price) the pool accepts (default 1) (--txpool.pricelimit)")


def rpc_config_from_args(args: argparse.Namespace) -> "object":
    """The rpc.config.RpcConfig the ``run`` flags ask for (address and port set by the node)."""
    from rpc.config import RpcConfig

    return RpcConfig(
        host=args.rpc_addr, port=args.rpc_port, cors_origins=args.rpc_cors, apis=args.rpc_api,
        evm_timeout_s=args.rpc_evmtimeout, gas_cap=args.rpc_gascap, call_cache_bytes=args.rpc_call_cache,
        max_batch=args.rpc_batch_limit, max_batch_response_bytes=args.rpc_batch_response_max,
    )


def txpool_limits_from_args(args: argparse.Namespace) -> "TxPoolLimits":
    """The pool's limits from the ``--txpool-*`` flags."""
    from chain.txpool import TxPoolLimits

    return TxPoolLimits(max_per_sender=args.txpool_account_slots, max_slots=args.txpool_global_slots,
                        price_bump_percent=args.txpool_price_bump, min_gas_price=args.txpool_price_limit)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from node.logs import add_logging_arguments

    parser = argparse.ArgumentParser(
        prog="pouw-node",
        description="An EVM-compatible node whose proof of work is exact ML training.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, **kw)  # type: ignore[arg-type]
        sub.add_argument("--datadir", type=Path, required=True, help="the node's data directory")
        add_logging_arguments(sub)  # --verbosity, --log-format (node/logs.py)
        sub.set_defaults(func=func)
        return sub

    init = command("init", cmd_init, "create a datadir and write its genesis block")
    init.add_argument(
        "--genesis", metavar="FILE|dev", default=None,
        help="genesis file; 'dev' = genesis/dev.json (chain id 1337, no proof of work); "
        "default: genesis/default.json (the devnet)",
    )

    run = command("run", cmd_run, "run the node until SIGINT/SIGTERM")
    run.add_argument("--rpc-addr", default="127.0.0.1", help="JSON-RPC listen address (default 127.0.0.1)")
    run.add_argument("--rpc-port", type=_port, default=8545, help="JSON-RPC port (default 8545; 0 = any free port)")
    run.add_argument("--no-rpc", action="store_true", help="do not serve JSON-RPC")
    run.add_argument("--no-dashboard", action="store_true", help="do not serve the dashboard at GET / on the RPC port")
    run.add_argument("--no-metrics", action="store_true", help="do not serve Prometheus metrics at /metrics on the RPC port")
    run.add_argument(
        "--dataset-quota", type=_size, default=1 << 30, metavar="SIZE",
        help="bytes of uploaded datasets that no posted job names yet, kept at most; the oldest "
        "(over an hour old) are collected to make room, else an upload is refused (default 1GiB)",
    )
    run.add_argument(
        "--ws-max-per-client", type=_positive, default=32, metavar="N",
        help="WebSocket connections one client address may hold open; more are refused with HTTP 429 (default 32)",
    )
    run.add_argument(
        "--automine", action="store_true",
        help="build a block whenever the pool holds transactions (development genesis only)",
    )
    run.add_argument(
        "--dev-period", type=_positive_seconds, default=0.0, metavar="S",
        help="build a block every S seconds (+-40%% jitter), empty or with the pool's transactions "
        "(development genesis only, like geth's --dev.period)",
    )
    run.add_argument(
        "--dev-accounts", action="store_true",
        help="sign for the public test-mnemonic accounts (eth_accounts, eth_sendTransaction, eth_sign*), "
        "as anvil does (development genesis only; anyone can spend from them)",
    )
    run.add_argument("--mine", action="store_true", help="mine blocks: train jobs, seal, import (pouw genesis)")
    run.add_argument(
        "--coinbase", metavar="ADDR",
        help="address credited with block rewards and job fees (with --mine; also the coinbase of "
        "--dev-period and --automine blocks)",
    )
    run.add_argument("--device", default="auto", help="training device for --mine: auto, cpu or cuda:N (default auto)")
    run.add_argument("--segment-steps", type=_positive_int, default=16, metavar="M",
                     help="--mine: steps per segment, i.e. between two state commitments; capped by the consensus "
                          "bound for the block's difficulty (default 16; docs/protocol.md §14)")
    from node.auditing import add_audit_command, add_audit_run_arguments

    add_audit_run_arguments(run)  # --audit, --audit-workers, --audit-from, --audit-key-file, --audit-password-file
    add_rpc_arguments(run)  # --rpc-api, --rpc-cors, --rpc-evmtimeout, --rpc-gascap, --txpool-*
    from node.p2p import add_p2p_arguments

    add_p2p_arguments(run)  # --p2p-addr (127.0.0.1), --p2p-port, --peers, --no-p2p, --max-peers

    export = command(
        "export", cmd_export, "write canonical blocks to a block file",
        epilog=BLOCK_FILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("file", type=Path, metavar="FILE")
    export.add_argument("--from", dest="start", type=_non_negative, default=0, metavar="N", help="first block (default 0)")
    export.add_argument("--to", dest="end", type=_non_negative, default=None, metavar="M", help="last block (default: head)")
    export.add_argument(
        "--no-blobs", action="store_true",
        help="write the blocks alone, not FILE.blobs (the datasets and checkpoint states the blocks' "
        "verification reads; an import without them needs peers that have them)",
    )

    import_ = command(
        "import", cmd_import,
        "import blocks from a block file, validating each one; known blocks are skipped, "
        "so an interrupted import resumes",
        epilog=BLOCK_FILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    import_.add_argument("file", type=Path, metavar="FILE")
    import_.add_argument("--progress", type=_positive, default=1000, metavar="N", help="log progress every N blocks")
    import_.add_argument(
        "--blobs", type=Path, default=None, metavar="PATH",
        help="the blob file holding the datasets and checkpoint states the blocks need (default: FILE.blobs if present)",
    )
    add_audit_command(command)  # audit: one shot over a stopped node's datadir (node/auditing.py)
    from client.jobcli import add_job_commands

    add_job_commands(commands)  # job submit|status|list|result|cancel|watch: a JSON-RPC client of a node (client/jobcli.py)
    from client.jobcli import add_rewards_command
    from client.keys import add_account_commands
    from client.datasetcli import add_dataset_commands

    add_rewards_command(commands)  # rewards ADDR (client/jobcli.py)
    add_account_commands(commands)  # account new|list|import: encrypted keystores (client/keys.py)
    add_dataset_commands(commands)  # dataset make: a dataset file from CSV/npz/npy floats (client/datasetcli.py)
    return parser


# --- Entry point --------------------------------------------------------------------

if TYPE_CHECKING:
    from chain.txpool import TxPoolLimits
    from consensus.auditor import Auditor
    from consensus.miner import Miner
    from node.node import Node

log = logging.getLogger("pouw-node")


def version_text() -> str:
    """``pouw-node --version``: the package version, Python and torch (torch's version
    is read from its metadata, without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    python = ".".join(str(part) for part in sys.version_info[:3])
    return f"pouw-node {of('pouw-node')} (python {python}, torch {of('torch')}, py-evm {of('py-evm')})"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr)
    except OSError:  # stderr closed as well: nothing left to tell
        pass


def report_error(message: str) -> None:
    """The one line a failed command prints: ``error: ...`` on stderr (nothing more)."""
    _say(f"error: {message}")


def closed_pipe() -> int:
    """stdout's reader went away (``... | head``): stop quietly, as a Unix tool killed by
    SIGPIPE does; stdout is pointed at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_PIPE


def unexpected_error(exc: BaseException) -> int:
    """The last line of defence: a bug still gets one line, never a traceback, unless
    POUW_TRACEBACK=1 asks for it."""
    if os.environ.get("POUW_TRACEBACK") == "1":
        raise exc
    log.debug("unexpected error", exc_info=exc)
    report_error(f"{type(exc).__name__}: {exc} (set POUW_TRACEBACK=1 for the traceback)")
    return EXIT_ERROR


def main(argv: Optional[Sequence[str]] = None) -> int:
    from common.errors import PouwNodeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from node.logs import setup_logging

    setup_logging(getattr(args, "verbosity", logging.INFO), getattr(args, "log_format", "text"))
    if args.command != "run":  # run handles signals on its event loop
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except KeyboardInterrupt:
        hint = " (blocks imported so far are kept; run import again to resume)" if args.command == "import" else ""
        _say(f"interrupted{hint}")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return closed_pipe()
    except (PouwNodeError, OSError) as exc:  # every package's errors: one line
        report_error(_describe(exc))
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - anything else (a bug): one line all the same
        return unexpected_error(exc)


if __name__ == "__main__":
    sys.exit(main())

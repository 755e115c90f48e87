"""``python -m devnet.node run ...``: ``pouw-node run`` with the p2p service attached.

The devnet starts its nodes through this module. When ``pouw-node`` itself has the p2p
options (``chain/cli.py`` wired with ``p2p.cli``), this module only adds what a local
devnet needs on a no-proof chain:

- ``--dev-period S``: build a block every S seconds (empty or with the pool's
  transactions), the stand-in for mining on a ``noproof`` genesis.

Otherwise it runs the node itself: open the datadir, start JSON-RPC, start p2p, produce
blocks if asked, until SIGINT/SIGTERM.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
import threading
from typing import Any, Optional, Sequence

log = logging.getLogger("devnet.node")


def build_parser() -> argparse.ArgumentParser:
    from chain.cli import build_parser as node_parser
    from p2p.cli import add_p2p_arguments

    parser = node_parser()
    run = _subparser(parser, "run")
    add_p2p_arguments(run)
    run.add_argument("--dev-period", type=float, default=0.0, metavar="S",
                     help="noproof chains: build a block every S seconds (0: off)")
    have = {opt for action in run._actions for opt in action.option_strings}
    if "--mine" not in have:
        run.add_argument("--mine", action="store_true", help="mine (pouw genesis) for --coinbase")
        run.add_argument("--coinbase", default=None, help="address credited with block rewards")
        run.add_argument("--device", default="auto", help="training device for mining (auto, cpu, cuda)")
    run.set_defaults(func=cmd_run)
    return parser


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise RuntimeError(f"pouw-node has no {name} command")


def native_mine() -> bool:
    """Whether ``pouw-node run`` already has ``--mine``."""
    from chain.cli import build_parser as node_parser

    run = _subparser(node_parser(), "run")
    return any("--mine" in a.option_strings for a in run._actions)


def native_p2p() -> bool:
    """Whether ``pouw-node run`` already starts the p2p service itself."""
    from chain.cli import build_parser as node_parser

    run = _subparser(node_parser(), "run")
    return any("--p2p-port" in a.option_strings for a in run._actions)


def _automine_for(backend: Any) -> Any:
    """The node's automine (clock-stamped, logged) if chain/node.py has one, else rpc's."""
    import chain.node as node_module

    if hasattr(node_module, "make_automine"):
        return node_module.make_automine(backend)
    if hasattr(node_module, "LoggingAutomine"):
        return node_module.LoggingAutomine(backend)
    from rpc.automine import Automine

    return Automine(backend)


class DevBlockProducer:
    """A thread that builds a block every ``period`` seconds on a noproof chain."""

    def __init__(self, node: Any, period: float, coinbase: Optional[str] = None) -> None:
        self.miner = _automine_for(node.backend)
        if coinbase:  # each producer its own coinbase, so that separated producers fork
            self.miner.coinbase = bytes.fromhex(coinbase.removeprefix("0x"))
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dev-producer", daemon=True)

    def start(self) -> "DevBlockProducer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        # Jitter of +-40%: producers started together would otherwise build competing
        # blocks of equal work at the same instants forever (ties keep each on its own).
        jitter = random.Random()
        while not self._stop.wait(self.period * jitter.uniform(0.6, 1.4)):
            try:
                self.miner.mine_now(allow_empty=True)
            except Exception:  # noqa: BLE001 - keep producing; the log says why
                log.exception("dev block producer failed")


def cmd_run(args: argparse.Namespace) -> int:
    from chain.cli import EXIT_OK, cmd_run as native_run
    from chain.node import Node, NodeConfig, open_datadir

    _install_job_registry()
    if native_p2p() and not args.dev_period and (native_mine() or not args.mine):
        return int(native_run(args))
    config = NodeConfig(rpc_host=args.rpc_addr, rpc_port=args.rpc_port, rpc=not args.no_rpc, automine=args.automine)
    with open_datadir(args.datadir) as datadir:
        if args.dev_period and not datadir.genesis.is_dev_only:
            from chain.node import NodeError

            raise NodeError("--dev-period needs a noproof genesis; pouw chains are mined with --mine")
        node = Node(datadir, config)
        asyncio.run(_run(node, args))
    return EXIT_OK


def _install_job_registry() -> None:
    """Register the job registry precompile on our VM, as tests/consensus/conftest.py
    does, until chain/vm.py registers it itself (then this is a no-op). Every devnet
    node runs through here, so they agree on it."""
    try:
        from chain.vm import PouwComputation
        from consensus.registry import install_precompile
    except ImportError:
        return
    install_precompile(PouwComputation)


async def _run(node: Any, args: argparse.Namespace) -> None:
    from p2p.cli import start_p2p_from_args

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = await start_p2p_from_args(args, node)
    producer = DevBlockProducer(node, args.dev_period, getattr(args, "coinbase", None)).start() if args.dev_period else None
    miner = None
    if getattr(args, "mine", False):
        from consensus.miner import check_mining_allowed, parse_coinbase, start_node_miner

        check_mining_allowed(node.chain.genesis)
        miner = start_node_miner(node, parse_coinbase(args.coinbase), getattr(args, "device", "auto"))
        if service is not None:
            service.on_new_head.append(miner.notify_new_head)
    try:
        await node.run(stop)
    finally:
        if miner is not None:
            await asyncio.get_running_loop().run_in_executor(None, miner.stop)
        if producer is not None:
            producer.stop()
        if service is not None:
            await service.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from chain import cli
    from chain.errors import ChainError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return cli.EXIT_USAGE
    cli.setup_logging()
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return cli.EXIT_INTERRUPTED
    except (ChainError, OSError) as exc:
        print(f"error: {cli._describe(exc)}", file=sys.stderr)
        return cli.EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

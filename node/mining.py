"""Mining inside a running node: ``pouw-node run --mine`` (the miner itself is
``consensus.miner.Miner``; this wires it to the node's chain, RPC and p2p)."""
from __future__ import annotations

import logging
from typing import Any, Optional

from eth_typing import Address

from chain.addresses import parse_address
from common.errors import PouwNodeError
from consensus.miner import DEFAULT_SEGMENT_STEPS, Miner

log = logging.getLogger("consensus.miner")


def start_node_miner(node: Any, coinbase: Address, device: str = "auto",
                     segment_steps: int = DEFAULT_SEGMENT_STEPS) -> Miner:
    """Start mining inside a running node (``node.node.Node``): templates and imports
    hold the node's import lock (never the pool's), and each mined block is announced to the RPC
    layer (``newHeads`` subscribers, filters) like any new head."""
    backend = node.backend
    miner = Miner(
        node.chain, coinbase, device=device,
        on_block=lambda block: backend.notify_new_head(block.hash), segment_steps=segment_steps,
    )
    log.info("mining for %s on %s", "0x" + bytes(coinbase).hex(), miner.backend.device)
    backend.miner = miner  # eth_mining, eth_hashrate, pouw_minerStatus (rpc.sources.MinerSource)
    return miner.start()


class MiningRefused(PouwNodeError):
    """``--mine`` cannot run: no pouw seal engine, or a bad coinbase address."""


def parse_coinbase(text: Optional[str]) -> Address:
    """A 0x-prefixed 20-byte hex address (EIP-55 checksum checked when mixed case)."""
    if not text:
        raise MiningRefused("--mine needs --coinbase ADDR (the address credited with rewards and fees)")
    return Address(parse_address(text, "--coinbase", MiningRefused))


def check_mining_allowed(genesis: Any) -> None:
    if genesis.seal_engine != "pouw":
        raise MiningRefused(
            f"--mine needs a genesis with \"sealEngine\": \"pouw\" (this chain uses {genesis.seal_engine!r}; "
            "use --automine on a development chain)"
        )
    if not genesis.pouw.standing_jobs:
        log.warning("the genesis has no standing job: mining waits for a paid job to be posted")

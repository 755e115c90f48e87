"""Honest proof-of-useful-work mining of single blocks, on CPU, in the caller's thread.

The node's miner (``consensus.miner.Miner``) runs rounds in a thread and restarts on new
heads; benchmarks and tests want one block at a time with exactly the transactions they
chose, so this drives the same miner's ``seal_template`` on a template they fix. The
blocks are the ones a real miner would publish: validators cannot tell them apart.
"""
from __future__ import annotations

from typing import Optional, Sequence

from eth.abc import SignedTransactionAPI
from eth_typing import Address, Hash32

from chain.chain import BlockTemplate, Chain
from consensus.miner import MinedBlock, Miner
from devnet.errors import NoTicket
from devnet.kit.chains import BLOCK_TIME

MAX_STEPS = 100_000
"""Step budget for one block: the kit's genesis asks for a handful of steps a block, so
running out means the chain's difficulty is not the kit's."""


def mine_template(miner: Miner, template: BlockTemplate, max_steps: int = MAX_STEPS) -> MinedBlock:
    """Train on ``template`` until a winning ticket and return the sealed block and its
    payload (not imported); :class:`NoTicket` after ``max_steps`` steps without one."""
    mined = miner.seal_template(template, max_steps=max_steps)
    if mined is None:
        raise NoTicket(f"no winning ticket within {max_steps} steps")
    return mined


def mine_block(
    chain: Chain,
    coinbase: Address,
    transactions: Sequence[SignedTransactionAPI] = (),
    dt: int = BLOCK_TIME,
    parent_hash: Optional[Hash32] = None,
    do_import: bool = True,
) -> MinedBlock:
    """Mine one honest block with exactly ``transactions`` on the head (or on
    ``parent_hash``), ``dt`` seconds after its parent, and import it unless
    ``do_import`` is False. ``chain`` must run the pouw seal engine."""
    miner = Miner(chain, coinbase, device="cpu")
    parent = chain.head() if parent_hash is None else chain.get_header_by_hash(parent_hash)
    template = chain.build_template(coinbase, timestamp=parent.timestamp + dt, transactions=list(transactions),
                                    parent_hash=parent.hash)
    mined = mine_template(miner, template)
    if do_import:
        chain.import_block(mined.block, mined.payload)
    return mined


__all__ = ["MAX_STEPS", "mine_block", "mine_template"]

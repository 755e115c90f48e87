"""Builders for consensus tests: pouw chains, job postings, and (re-exported from the
development kit, ``devnet/kit/``) the tiny pouw genesis and honest mining."""
from __future__ import annotations

from typing import Any, Optional

from eth.db.atomic import AtomicDB

from chain.chain import Chain
from consensus.engine import PouwEngine
from consensus.params import REGISTRY_ADDRESS, STANDING_JOB_BASE
from consensus.registry import encode_post_job
from devnet.kit.genesis import pouw_genesis, pouw_genesis_dict, tiny_spec, tiny_work_units
from devnet.kit.mining import mine_block, mine_template
from genesis.format import GenesisConfig
from tests.chain.helpers import FixedClock, sign_tx

STANDING_ID = STANDING_JOB_BASE


def open_pouw_chain(genesis: Optional[GenesisConfig] = None, db: Any = None, txpool: Any = None) -> Chain:
    genesis = genesis or pouw_genesis()
    return Chain.open(db if db is not None else AtomicDB(), genesis, seal_engine=PouwEngine,
                      txpool=txpool, clock=FixedClock(genesis.timestamp + 10**6))


def post_job_tx(key: Any, nonce: int, spec: dict[str, Any], price: int, escrow: int, gas: int = 1_000_000,
                chain_id: int = 7357) -> Any:
    return sign_tx(key, nonce, REGISTRY_ADDRESS, value=escrow, data=encode_post_job(spec, price), gas=gas, tip=0,
                   chain_id=chain_id)


__all__ = [
    "STANDING_ID", "mine_block", "mine_template", "open_pouw_chain", "pouw_genesis", "pouw_genesis_dict",
    "post_job_tx", "tiny_spec", "tiny_work_units",
]

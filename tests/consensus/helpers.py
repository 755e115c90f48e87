"""Builders for consensus tests: a tiny pouw genesis, chains, jobs and honest mining."""
from __future__ import annotations

import json
from typing import Any, Optional

from eth.db.atomic import AtomicDB
from eth_typing import Address

from chain.chain import Chain
from consensus.engine import PouwEngine
from consensus.jobs import digits_dataset_id
from consensus.miner import Miner
from consensus.params import STANDING_JOB_BASE
from consensus.registry import encode_post_job
from genesis.format import GenesisConfig, parse_genesis
from tests.chain.helpers import FixedClock, default_genesis_dict, sign_tx

STANDING_ID = STANDING_JOB_BASE


def tiny_spec(steps: int = 1_000_000, hidden: int = 4, batch: int = 4, **extra: Any) -> dict[str, Any]:
    spec = {
        "family": "mlp", "dataset": digits_dataset_id(), "input_shape": [64], "num_classes": 10,
        "hidden": [hidden], "batch_size": batch, "lr_shift": 4, "momentum_shift": None, "steps": steps,
    }
    spec.update(extra)
    return spec


def tiny_work_units() -> int:
    from pouw.families import get_family
    from pouw.spec import JobSpec

    return get_family("mlp").work_units(JobSpec.from_dict(tiny_spec()))


def pouw_genesis(*, expected_steps: int = 6, k: int = 3, maturity: int = 2, **consensus: Any) -> GenesisConfig:
    """Default genesis with the pouw engine, one tiny standing job and a difficulty that
    gives about ``expected_steps`` steps per block."""
    raw = default_genesis_dict()
    d = tiny_work_units() * expected_steps
    raw["consensus"].update({
        "sealEngine": "pouw", "initialDifficulty": d, "minimumDifficulty": d,
        "maxAdjustUpPercent": 1, "maxAdjustDownPercent": 1, "coinbaseMaturity": maturity,
    })
    raw["consensus"].update(consensus)
    raw["pouw"]["challengeCount"] = k
    raw["pouw"]["standingJobs"] = [tiny_spec()]
    return parse_genesis(json.loads(json.dumps(raw)))


def open_pouw_chain(genesis: Optional[GenesisConfig] = None, db: Any = None, txpool: Any = None) -> Chain:
    genesis = genesis or pouw_genesis()
    return Chain.open(db if db is not None else AtomicDB(), genesis, seal_engine=PouwEngine,
                      txpool=txpool, clock=FixedClock(genesis.timestamp + 10**6))


def mine_block(chain: Chain, coinbase: Address, transactions: Any = (), dt: int = 5, parent_hash: Any = None,
               do_import: bool = True) -> Any:
    """Mine one honest block with exactly ``transactions`` and import it; returns MinedBlock."""
    miner = Miner(chain, coinbase, device="cpu")
    parent = chain.head() if parent_hash is None else chain.get_header_by_hash(parent_hash)
    template = chain.build_template(coinbase, timestamp=parent.timestamp + dt, transactions=list(transactions),
                                    parent_hash=parent.hash)
    mined = mine_template(miner, template)
    if do_import:
        chain.import_block(mined.block, mined.payload)
    return mined


def mine_template(miner: Miner, template: Any) -> Any:
    """Honest mining on a given template (the Miner's round with the template fixed)."""
    mined = miner.seal_template(template, max_steps=100_000)
    assert mined is not None
    return mined


def post_job_tx(key: Any, nonce: int, spec: dict[str, Any], price: int, escrow: int, gas: int = 1_000_000,
                chain_id: int = 7357) -> Any:
    from consensus.params import REGISTRY_ADDRESS

    return sign_tx(key, nonce, REGISTRY_ADDRESS, value=escrow, data=encode_post_job(spec, price), gas=gas, tip=0,
                   chain_id=chain_id)


def pouw_genesis_dict(*, expected_steps: int = 6, k: int = 3, maturity: int = 2, **consensus: Any) -> dict[str, Any]:
    raw = default_genesis_dict()
    d = tiny_work_units() * expected_steps
    raw["consensus"].update({"sealEngine": "pouw", "initialDifficulty": d, "minimumDifficulty": d,
                             "coinbaseMaturity": maturity})
    raw["consensus"].update(consensus)
    raw["pouw"]["challengeCount"] = k
    raw["pouw"]["standingJobs"] = [tiny_spec()]
    return raw

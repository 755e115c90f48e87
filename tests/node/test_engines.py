"""node.engines: the genesis file's seal engine, configured where the node is assembled."""
from __future__ import annotations

from consensus.params import REGISTRY_ADDRESS
from genesis import load_default_genesis
from node.engines import engine_for
from tests.chain.helpers import dev_genesis


def test_pouw_genesis_selects_pouw_engine_and_a_dev_genesis_the_no_proof_one() -> None:
    pouw = engine_for(load_default_genesis())
    assert pouw.name == "pouw" and pouw.config.chain_id == load_default_genesis().chain_id
    dev = engine_for(dev_genesis())
    assert dev.name == "noproof"
    # both carry the job registry precompile, bound to their chain's configuration
    assert REGISTRY_ADDRESS in pouw.extra_precompiles() and REGISTRY_ADDRESS in dev.extra_precompiles()

"""Which seal engine a chain runs, chosen where the node is assembled.

The chain knows only the seal-engine interface (``chain.sealing``) and its own no-proof
engine; consensus provides the pouw engine. The node maps the genesis file's
``consensus.sealEngine`` to a class here, configured with that genesis:

* ``pouw``: ``consensus.engine.PouwEngine`` (its job registry precompile bound to the
  genesis's consensus configuration);
* ``noproof``: the chain's ``NoProofEngine`` with the job registry precompile too (under
  pouw's default limits), so that a development chain accepts and lists jobs like any
  other (it never trains them: the RPC and the job tools say so).
"""
from __future__ import annotations

from chain.sealing import NoProofEngine, SealEngine, engine_for_genesis
from consensus.params import REGISTRY_ADDRESS, default_config
from consensus.registry import registry_precompile
from genesis.format import GenesisConfig


def engine_for(genesis: GenesisConfig) -> type[SealEngine]:
    """The seal engine class for ``genesis``, configured with it. The pouw engine (and
    with it torch, about 2 s of imports) is loaded only for a chain that runs it."""
    engines: dict[str, type[SealEngine]] = {
        "noproof": NoProofEngine.configure(
            precompiles={REGISTRY_ADDRESS: registry_precompile(default_config(int(genesis.chain_id)))}
        ),
    }
    if genesis.seal_engine == "pouw":
        from consensus.engine import PouwEngine

        engines["pouw"] = PouwEngine
    return engine_for_genesis(genesis, engines)


__all__ = ["engine_for"]

"""Reserved addresses, job-id ranges and consensus constants, and the genesis-derived config.

Everything here is a consensus rule: changing a value forks the chain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Mapping

from eth_typing import Address

from pouw.spec import JobSpec, Limits

if TYPE_CHECKING:
    from genesis.format import GenesisConfig

REGISTRY_ADDRESS: Final = Address(bytes.fromhex("0000000000000000000000000000000000000100"))
"""The job registry precompile. Its storage holds every job and the pending rewards;
its balance holds every job's unspent escrow plus job fees not yet matured."""

STANDING_JOB_BASE: Final = 1 << 128
"""Standing job ``i`` of the genesis file (0-based) has job id ``STANDING_JOB_BASE + i``.
Posted jobs get ids 1, 2, 3, ... in order of posting."""

MAX_STEPS_PER_BLOCK: Final = 1 << 16
"""Upper bound on a block's t: bounds the payload's list of commitments (32 bytes each,
at most one per step). A miner whose trajectory reaches it without a ticket starts a new
template."""

MAX_SPEC_BYTES: Final = 4096
"""Upper bound on a posted spec's canonical JSON (it is stored in the registry's storage)."""

PAYLOAD_OVERHEAD_BYTES: Final = 4096


@dataclass(frozen=True)
class ConsensusConfig:
    """What the registry and the engine read from the genesis file."""

    chain_id: int
    challenge_count: int
    limits: Limits
    standing_jobs: tuple[JobSpec, ...]
    coinbase_maturity: int

    def max_payload_bytes(self) -> int:
        """(k + 3) carried start states (the challenges and the anchored segments n-1, n and
        the budget one; segment 1 starts at the stored checkpoint) of at most max_state_bytes
        each, at most one commitment per step, RLP overhead."""
        return (
            (self.challenge_count + 3) * (self.limits.max_state_bytes + 16)
            + MAX_STEPS_PER_BLOCK * 33
            + PAYLOAD_OVERHEAD_BYTES
        )

    def standing_spec(self, job_id: int) -> JobSpec | None:
        index = job_id - STANDING_JOB_BASE
        if 0 <= index < len(self.standing_jobs):
            return self.standing_jobs[index]
        return None


def limits_from_genesis(genesis: "GenesisConfig") -> Limits:
    p = genesis.pouw
    return Limits(
        max_state_bytes=p.max_state_bytes,
        max_dataset_bytes=p.max_dataset_bytes,
        max_work_units_per_step=p.max_work_units_per_step,
    )


def config_from_genesis(genesis: "GenesisConfig") -> ConsensusConfig:
    limits = limits_from_genesis(genesis)
    standing = tuple(JobSpec.from_dict(_plain(job), limits) for job in genesis.pouw.standing_jobs)
    return ConsensusConfig(
        chain_id=genesis.chain_id,
        challenge_count=genesis.pouw.challenge_count,
        limits=limits,
        standing_jobs=standing,
        coinbase_maturity=genesis.coinbase_maturity,
    )


def _plain(job: Mapping[str, Any]) -> Any:
    """A standing job from the genesis file (a read-only mapping) as plain JSON data."""
    return json.loads(json.dumps(dict(job)))


def default_config(chain_id: int) -> ConsensusConfig:
    """The registry's configuration on a chain without the pouw engine (a no-proof dev
    chain): pouw's default limits, no standing jobs, k = 1, immediate crediting."""
    return ConsensusConfig(chain_id, 1, Limits(), (), 0)


def config_of(engine_class: type, chain_id: int) -> ConsensusConfig:
    """The consensus configuration a chain runs with: its pouw engine's (carried by the
    configured engine class), or :func:`default_config` on a chain without one."""
    config = getattr(engine_class, "config", None)
    return config if isinstance(config, ConsensusConfig) else default_config(chain_id)


def job_label(job_id: int) -> str:
    """A job id as people read it: ``3``, or ``standing-0`` for the genesis standing jobs."""
    return f"standing-{job_id - STANDING_JOB_BASE}" if job_id >= STANDING_JOB_BASE else str(job_id)

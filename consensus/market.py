"""The job market's rules, each written once: how a posted spec is read, which jobs a
miner is paid to train, what blobs a job's next block needs. The registry precompile,
the miner, the p2p prefetch and the RPC all read them from here (the fee rule lives with
the rewards: :func:`consensus.rewards.block_fee`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from consensus.jobs import builtin_dataset_ids
from consensus.params import ConsensusConfig
from consensus.registry import JobRecord, posted_job_ids, read_job
from consensus.specs import SpecTooLong, read_spec, stored_spec

if TYPE_CHECKING:
    from consensus.registry import StorageReader

ZERO32 = b"\x00" * 32


def is_mineable(job: JobRecord) -> bool:
    """A posted job a miner is paid to train: open, a usable spec, a price, escrow left."""
    return job.is_funded


def funded_jobs(state: "StorageReader", config: ConsensusConfig, newest: int | None = None) -> list[JobRecord]:
    """The posted jobs a miner is paid to train (:func:`is_mineable`) in ``state``, newest
    first; ``newest`` limits the scan to the last that many posted jobs."""
    ids = posted_job_ids(state)
    if newest is not None:
        ids = ids[-newest:]
    out = []
    for job_id in reversed(ids):
        job = read_job(state, job_id, config)
        if job is not None and is_mineable(job):
            out.append(job)
    return out


def job_blobs(job: JobRecord, builtin_datasets: "frozenset[str] | None" = None) -> list[tuple[bytes, str]]:
    """What a node needs besides the chain to mine or verify the job's next block, as
    ``(blob hash, "dataset" | "checkpoint")``: its dataset unless built in, and its
    checkpoint state unless it is the initial one (derived from the spec)."""
    assert job.spec is not None
    if builtin_datasets is None:
        builtin_datasets = builtin_dataset_ids()  # generates the built-in sets (torch) on first use
    out: list[tuple[bytes, str]] = []
    if job.spec.dataset not in builtin_datasets:
        out.append((bytes.fromhex(job.spec.dataset[2:]), "dataset"))
    if job.checkpoint != ZERO32:
        out.append((bytes(job.checkpoint), "checkpoint"))
    return out


__all__ = ["SpecTooLong", "funded_jobs", "is_mineable", "job_blobs", "read_spec", "stored_spec"]

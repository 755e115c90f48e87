"""What miners and validators need of a job besides its record: dataset and states.

* The **dataset** is named by content hash in the spec. A node finds it in its blob
  store; the scikit-learn digits set, which the default standing job trains on, is
  built in (generated locally, offline, and checked against its hash).
* The **initial state** of a job is ``init_state(spec, seed)`` with
  ``seed = keccak256(job_id as 32 bytes || spec_hash)``; its hash is the job's first
  checkpoint h_0 (the registry stores 0 for "initial").
* Later **checkpoint states** are the ``s_t`` carried in each accepted block's payload,
  kept in the blob store under their hash (= their state hash).
"""
from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from eth_utils import keccak

from consensus.errors import CheckpointUnavailable, DatasetUnavailable
from pouw.datasets import Dataset, content_hash, dataset_from_bytes, dataset_to_bytes
from pouw.errors import BlobNotFound, DatasetError
from pouw.spec import JobSpec
from pouw.state import deserialize_state, serialize_state, state_hash

if TYPE_CHECKING:
    from consensus.registry import JobRecord
    from pouw.blobstore import BlobStore
    from pouw.state import State

ZERO32 = b"\x00" * 32

_lock = threading.Lock()
_datasets: dict[bytes, Dataset] = {}


def job_seed(job_id: int, spec: JobSpec) -> bytes:
    """Seed of a job's initial weights: keccak256(job_id (32 bytes) || spec_hash)."""
    return keccak(job_id.to_bytes(32, "big") + spec.spec_hash())


@functools.lru_cache(maxsize=64)
def initial_state_bytes(job_id: int, spec: JobSpec) -> bytes:
    from pouw.families import get_family

    return serialize_state(spec, get_family(spec.family).init_state(spec, job_seed(job_id, spec)))


def initial_checkpoint(job_id: int, spec: JobSpec) -> bytes:
    """h_0 of a job that no block has advanced yet."""
    return state_hash(initial_state_bytes(job_id, spec))


def current_checkpoint(job: "JobRecord") -> bytes:
    """The job's checkpoint hash as seal seeds use it (initial state resolved)."""
    assert job.spec is not None
    if job.checkpoint == ZERO32:
        return initial_checkpoint(job.job_id, job.spec)
    return job.checkpoint


def checkpoint_state_bytes(job: "JobRecord", blobs: "BlobStore | None") -> bytes:
    """Canonical bytes of the job's current checkpoint state ``s_0`` (the initial state,
    or the blob stored under the checkpoint hash). :class:`CheckpointUnavailable` (transient:
    the node may fetch it from a peer) when it is not stored."""
    assert job.spec is not None
    if job.checkpoint == ZERO32:
        return initial_state_bytes(job.job_id, job.spec)
    if blobs is None:
        raise CheckpointUnavailable(f"no blob store to read checkpoint 0x{job.checkpoint.hex()} of job {job.job_id}")
    try:
        return blobs.get(job.checkpoint)
    except BlobNotFound:
        raise CheckpointUnavailable(f"checkpoint state 0x{job.checkpoint.hex()} of job {job.job_id} not stored") from None


def checkpoint_state(job: "JobRecord", blobs: "BlobStore") -> "State":
    """s_0 for a miner: the job's current checkpoint state."""
    assert job.spec is not None
    return deserialize_state(job.spec, checkpoint_state_bytes(job, blobs))


@functools.lru_cache(maxsize=1)
def _digits_blob() -> bytes:
    from pouw.datasets import load_digits

    return dataset_to_bytes(load_digits())


@functools.lru_cache(maxsize=1)
def digits_dataset_id() -> str:
    """The dataset id of the built-in digits set ("0x" + keccak hex of its blob)."""
    return "0x" + content_hash(_digits_blob()).hex()


def load_dataset(spec: JobSpec, blobs: "BlobStore | None", max_bytes: int) -> Dataset:
    """The spec's dataset, from the memory cache, the blob store or the built-in sets.

    Raises :class:`DatasetUnavailable` (transient: the node may fetch it later).
    """
    want = bytes.fromhex(spec.dataset[2:])
    with _lock:
        cached = _datasets.get(want)
    if cached is not None:
        return cached
    blob: bytes | None = None
    if blobs is not None and blobs.has(want):
        blob = blobs.get(want)
    elif spec.dataset == digits_dataset_id():
        blob = _digits_blob()
        if blobs is not None:
            blobs.put(blob)
    if blob is None:
        raise DatasetUnavailable(f"dataset {spec.dataset} is not in this node's blob store")
    try:
        dataset = dataset_from_bytes(blob, expected_hash=want, max_bytes=max_bytes)
    except DatasetError as exc:
        raise DatasetUnavailable(f"dataset {spec.dataset} unusable: {exc}") from None
    with _lock:
        _datasets[want] = dataset
    return dataset

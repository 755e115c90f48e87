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
from typing import TYPE_CHECKING, Final, Optional

from eth_utils import keccak

from common.lru import SizedLRU
from consensus.errors import CheckpointUnavailable, DatasetUnavailable
from pouw.datasets import Dataset, content_hash, dataset_from_bytes, dataset_to_bytes
from pouw.errors import BlobNotFound, DatasetError
from pouw.spec import JobSpec

# pouw.state (and so torch) is imported by the functions that make or read states, not
# here: the job registry of a development node, which never trains, runs without torch.
if TYPE_CHECKING:
    from consensus.registry import JobRecord
    from pouw.blobstore import BlobStore
    from pouw.state import State

ZERO32 = b"\x00" * 32

DATASET_CACHE_BYTES: Final = 512 * 1024 * 1024
"""Decoded datasets a node keeps in memory (miners and validators reuse them every
block); past this, the least recently used is dropped and decoded again when needed."""


class DatasetCache(SizedLRU[bytes, Dataset]):
    """Verified datasets by content hash, bounded in bytes (their tensors), least
    recently used evicted; one alone over the bound is not kept. One process-wide
    instance: every job naming a dataset shares its decoded copy."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes, size_of=dataset_bytes)


def dataset_bytes(dataset: Dataset) -> int:
    """Memory held by a decoded dataset's tensors."""
    tensors = (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    return sum(int(t.element_size()) * int(t.nelement()) for t in tensors)


_datasets = DatasetCache(DATASET_CACHE_BYTES)


def job_seed(job_id: int, spec: JobSpec) -> bytes:
    """Seed of a job's initial weights: keccak256(job_id (32 bytes) || spec_hash)."""
    return keccak(job_id.to_bytes(32, "big") + spec.spec_hash())


@functools.lru_cache(maxsize=64)
def initial_state_bytes(job_id: int, spec: JobSpec) -> bytes:
    from pouw.families import get_family
    from pouw.state import serialize_state

    return serialize_state(spec, get_family(spec.family).init_state(spec, job_seed(job_id, spec)))


def initial_checkpoint(job_id: int, spec: JobSpec) -> bytes:
    """h_0 of a job that no block has advanced yet."""
    from pouw.state import state_hash

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
        raise CheckpointUnavailable(f"no blob store to read checkpoint 0x{job.checkpoint.hex()} of job {job.job_id}",
                                    blob_hash=job.checkpoint)
    try:
        return blobs.get(job.checkpoint)
    except BlobNotFound:
        raise CheckpointUnavailable(f"checkpoint state 0x{job.checkpoint.hex()} of job {job.job_id} not stored",
                                    blob_hash=job.checkpoint) from None


def checkpoint_state(job: "JobRecord", blobs: "BlobStore") -> "State":
    """s_0 for a miner: the job's current checkpoint state."""
    from pouw.state import deserialize_state

    assert job.spec is not None
    return deserialize_state(job.spec, checkpoint_state_bytes(job, blobs))


DIGITS_SHAPES: tuple[tuple[int, ...], ...] = ((64,), (1, 8, 8))
"""The built-in sets: the 8x8 digits as 64 features (for an MLP) and as one 8x8 channel
(for a CNN); the same pixels, so the same examples in the same order."""


@functools.lru_cache(maxsize=len(DIGITS_SHAPES))
def _digits_blob(input_shape: tuple[int, ...] = (64,)) -> bytes:
    from pouw.datasets import load_digits

    return dataset_to_bytes(load_digits(input_shape))


@functools.lru_cache(maxsize=1)
def digits_dataset_id() -> str:
    """The dataset id of the built-in digits set, 64 features ("0x" + keccak hex of its blob)."""
    return "0x" + content_hash(_digits_blob()).hex()


@functools.lru_cache(maxsize=1)
def digits_image_dataset_id() -> str:
    """The dataset id of the built-in digits set as 1x8x8 images (for CNN jobs)."""
    return "0x" + content_hash(_digits_blob((1, 8, 8))).hex()


@functools.lru_cache(maxsize=1)
def _builtin_shapes() -> dict[str, tuple[int, ...]]:
    return {"0x" + content_hash(_digits_blob(shape)).hex(): shape for shape in DIGITS_SHAPES}


def builtin_dataset_ids() -> frozenset[str]:
    """Dataset ids every node has without fetching (generated locally, offline)."""
    return frozenset(_builtin_shapes())


def builtin_blob(dataset_id: str) -> bytes | None:
    """The blob of a built-in dataset (generated here), or None for any other id."""
    shape = _builtin_shapes().get(dataset_id)
    return None if shape is None else _digits_blob(shape)


def load_dataset(spec: JobSpec, blobs: "BlobStore | None", max_bytes: int) -> Dataset:
    """The spec's dataset, from the memory cache, the blob store or the built-in sets.

    Raises :class:`DatasetUnavailable` (transient: the node may fetch it later).
    """
    want = bytes.fromhex(spec.dataset[2:])
    cached = _datasets.get(want)
    if cached is not None:
        return cached
    blob: bytes | None = None
    if blobs is not None and blobs.has(want):
        blob = blobs.get(want)
    elif (blob := builtin_blob(spec.dataset)) is not None:
        if blobs is not None:
            blobs.put(blob)
    if blob is None:
        raise DatasetUnavailable(f"dataset {spec.dataset} is not in this node's blob store", blob_hash=want)
    try:
        dataset = dataset_from_bytes(blob, expected_hash=want, max_bytes=max_bytes)
    except DatasetError as exc:
        raise DatasetUnavailable(f"dataset {spec.dataset} unusable: {exc}", blob_hash=want) from None
    _datasets.put(want, dataset)
    return dataset

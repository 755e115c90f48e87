"""PouwEngine: the proof-of-useful-work seal engine that chain/ calls at each stage.

Validation, cheapest first (each rule raises its own error, consensus/errors.py):

1. header alone (:meth:`validate_seal`): 1 <= t <= MAX_STEPS_PER_BLOCK; job id,
   h_0, h_t and a_t non-zero.
2. header against the parent state (:meth:`validate_seal_extension`): the job exists
   and is open at the parent, its spec is usable; start_checkpoint equals the job's
   checkpoint; H(a_t) is a winning ticket for the job's w and the header's D.
   (The chain then checks the body and executes the block.)
3. with the payload (:meth:`verify_work`, called last): payload decodes; t step
   hashes, the last equal to h_t; the accumulator from the seal seed over them equals
   a_t; the carried states are exactly those of {t} + challenges(a_t), each hashing to
   the listed h_{i-1}; s_t hashes to h_t and decodes; then the dataset is loaded (a
   missing one is a transient failure) and step t, then the k challenged steps, are
   recomputed. Recomputation runs in the caller's thread: node and RPC must call
   ``Chain.import_block`` off the event loop.

Finalisation (:meth:`apply_block_rewards`): job progress, fee and maturity, see
consensus/rewards.py.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, cast

from eth.abc import BlockAPI, BlockHeaderAPI, StateAPI
from eth.db.account import AccountDB

from chain.errors import WorkVerificationUnavailable
from chain.header import PouwBlockHeader
from chain.sealing import SealEngine, WorkContext
from consensus.blobs import LevelDBBlobStore
from consensus.errors import (
    InvalidSealField,
    InvalidStepCount,
    JobNotOpen,
    NotAWinningTicket,
    UnknownJob,
    WrongStartCheckpoint,
)
from consensus.jobs import current_checkpoint, digits_dataset_id, load_dataset
from consensus.params import MAX_STEPS_PER_BLOCK, ConsensusConfig, config_from_genesis, register_config
from consensus.payload import WorkPayload
from consensus.registry import JobRecord, read_job
from consensus.rewards import finalise_block
from consensus.seal import SealClaim, verify_trajectory
from pouw.commit import is_winning_ticket
from pouw.families import get_family

ZERO32 = b"\x00" * 32


@functools.lru_cache(maxsize=8)
def backend_for(device: str) -> Any:
    from pouw.arith import select_backend

    return select_backend(device)


class PouwEngine(SealEngine):
    """Seal = a trajectory of exact training steps on an on-chain job (see module doc)."""

    name = "pouw"
    config: ConsensusConfig = None  # type: ignore[assignment]
    device: str = "cpu"
    """Device validators recompute on ("auto", "cpu", "cuda:N"); results are bit-identical."""

    @classmethod
    def configure(cls, __name__: str | None = None, **overrides: Any) -> Any:  # type: ignore[override]
        if "genesis" in overrides and "config" not in overrides:
            overrides["config"] = config_from_genesis(overrides["genesis"])
        configured = super().configure(__name__, **overrides)  # type: ignore[arg-type]
        if configured.config is not None:
            register_config(configured.config)
        return configured

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        db = getattr(context, "db", None)
        self.blobs = LevelDBBlobStore(db) if db is not None else None

    # --- stage 1: header alone ----------------------------------------------------------

    def validate_seal(self, block_header: BlockHeaderAPI) -> None:
        header = cast(PouwBlockHeader, block_header)
        if not 1 <= header.step_count <= MAX_STEPS_PER_BLOCK:
            raise InvalidStepCount("step_count out of range", expected=f"1..{MAX_STEPS_PER_BLOCK}", got=header.step_count)
        for name in ("job_id", "start_checkpoint", "final_state", "work_accumulator"):
            if getattr(header, name) == ZERO32:
                raise InvalidSealField(f"{name} must not be zero", got=getattr(header, name))

    # --- stage 2: header against the parent state --------------------------------------

    def validate_seal_extension(self, block_header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]) -> None:
        header = cast(PouwBlockHeader, block_header)
        parent = next(iter(parents))
        job = self.open_job(AccountDB(self.context.db, parent.state_root), header)  # type: ignore[attr-defined]
        assert job.spec is not None
        h0 = current_checkpoint(job)
        if header.start_checkpoint != h0:
            raise WrongStartCheckpoint("start_checkpoint differs from the job's checkpoint", expected=h0, got=header.start_checkpoint)
        w = get_family(job.spec.family).work_units(job.spec)
        if not is_winning_ticket(header.work_accumulator, w, header.difficulty):
            raise NotAWinningTicket("H(a_t) above 2**256 * w / D", expected=f"w={w}, D={header.difficulty}", got=header.work_accumulator)

    def open_job(self, state: Any, header: PouwBlockHeader) -> JobRecord:
        job_id = int.from_bytes(header.job_id, "big")
        job = read_job(state, job_id, self.config)
        if job is None:
            raise UnknownJob("no such job in the parent state", got=job_id)
        if not job.is_open:
            raise JobNotOpen("job is not open in the parent state", expected="open", got=job.status)
        if job.spec is None:
            raise JobNotOpen("job's stored spec is not usable under this genesis", got=job_id)
        return job

    # --- stage 3 (last): the work payload ------------------------------------------------

    def max_payload_bytes(self) -> int:
        return self.config.max_payload_bytes()

    def payload_required(self, header: BlockHeaderAPI) -> bool:
        return True

    def verify_work(self, block_header: BlockHeaderAPI, payload: bytes | None, context: WorkContext) -> None:
        header = cast(PouwBlockHeader, block_header)
        assert payload is not None  # the chain refuses a missing payload before calling
        work = WorkPayload.decode(payload)
        job = self.open_job(context.parent_state, header)
        spec = job.spec
        assert spec is not None
        claim = SealClaim.of(header, job.job_id, current_checkpoint(job))
        dataset = lambda: load_dataset(spec, self.blobs, self.config.limits.max_dataset_bytes)  # noqa: E731
        try:
            verify_trajectory(claim, work, spec, dataset, self.config.challenge_count, backend_for(self.device))
        except (RuntimeError, MemoryError) as exc:  # the validator's own trouble (device, memory)
            raise WorkVerificationUnavailable(f"recomputation failed on this node: {exc}") from exc
        if self.blobs is not None:
            self.blobs.put(work.final_state)  # the job's new checkpoint state, for the next miner

    def blobs_for_block(self, block_header: BlockHeaderAPI, parent_state: StateAPI) -> tuple[bytes, ...]:
        """The job's dataset (unless built in) and its start checkpoint state (unless the
        initial one, derived from the spec): what block files carry for an offline import."""
        job = self.open_job(parent_state, cast(PouwBlockHeader, block_header))
        assert job.spec is not None
        names = [] if job.spec.dataset == digits_dataset_id() else [bytes.fromhex(job.spec.dataset[2:])]
        if job.checkpoint != ZERO32:
            names.append(bytes(job.checkpoint))
        return tuple(names)

    # --- finalisation ---------------------------------------------------------------------

    def apply_block_rewards(self, state: StateAPI, block: BlockAPI) -> None:
        reward = self.genesis.block_reward(block.number) if self.genesis is not None else 0
        finalise_block(state, self.config, cast(PouwBlockHeader, block.header), reward)


__all__ = ["PouwEngine", "backend_for"]

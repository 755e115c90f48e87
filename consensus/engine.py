"""PouwEngine: the proof-of-useful-work seal engine that chain/ calls at each stage.

Validation, cheapest first (each rule raises its own error, consensus/errors.py):

1. header alone (:meth:`validate_seal`): 1 <= t <= MAX_STEPS_PER_BLOCK; job id,
   h_0, final_state and A_n non-zero.
2. header against the parent state (:meth:`validate_seal_extension`): the job exists
   and is open at the parent, its spec is usable; start_checkpoint equals the job's
   checkpoint.
3. with the payload (:meth:`verify_work`, called by the chain after the body checks and
   BEFORE executing any transaction): the payload decodes; m and t are admissible; one
   commitment per point (at least two), final_state the new checkpoint's; the accumulator
   from the seal seed ends at A_n; point n wins; the carried start states are exactly those of the anchored and
   challenged segments and hash to their commitments. All of this costs hashing only,
   so a forged block is refused in milliseconds. Then the dataset is loaded (a missing
   one is a transient failure) and the segments are recomputed, the ticket segment
   first. A forger who passes the cheap checks with a ground accumulator fails on the
   ticket segment, before the node spends anything on the block's transactions.
   Recomputation runs in the caller's thread: node and RPC must call
   ``Chain.import_block`` off the event loop.

Finalisation (:meth:`apply_block_rewards`): job progress, fee and maturity, see
consensus/rewards.py.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, cast

from eth.abc import BlockAPI, BlockHeaderAPI, SignedTransactionAPI, StateAPI
from eth.db.account import AccountDB

from chain.errors import WorkVerificationUnavailable
from chain.header import PouwBlockHeader
from chain.sealing import SealEngine, WorkContext
from consensus.blobs import LevelDBBlobStore
from consensus.errors import (
    InvalidSealField,
    InvalidStepCount,
    JobNotOpen,
    UnknownJob,
    WrongStartCheckpoint,
)
from consensus.fraud import proof_blobs
from consensus.jobs import checkpoint_state_bytes, current_checkpoint, load_dataset
from consensus.market import job_blobs
from consensus.params import MAX_STEPS_PER_BLOCK, REGISTRY_ADDRESS, ConsensusConfig, config_from_genesis
from consensus.payload import WorkPayload
from consensus.registry import JobRecord, read_job, registry_precompile
from consensus.rewards import finalise_block
from consensus.seal import SealClaim, verify_trajectory
from pouw.state import serialize_state

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
    def configure(cls, __name__: str | None = None, **overrides: Any) -> Any:
        """``Engine.configure(genesis=...)``: the consensus configuration is derived from
        that genesis and carried by the configured class (never looked up globally), and
        the job registry precompile is bound to it."""
        if "genesis" in overrides and "config" not in overrides:
            overrides["config"] = config_from_genesis(overrides["genesis"])
        if "config" in overrides and "precompiles" not in overrides:
            overrides["precompiles"] = {REGISTRY_ADDRESS: registry_precompile(overrides["config"])}
        return super().configure(__name__, **overrides)  # type: ignore[arg-type]

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

    # --- stage 3 (before execution): the work payload ------------------------------------

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
        claim = SealClaim.of(header, job, current_checkpoint(job))
        s0 = checkpoint_state_bytes(job, self.blobs)
        dataset = lambda: load_dataset(spec, self.blobs, self.config.limits.max_dataset_bytes)  # noqa: E731
        try:
            checkpoint = verify_trajectory(claim, work, spec, s0, dataset, self.config.challenge_count,
                                           backend_for(self.device))
        except (RuntimeError, MemoryError) as exc:  # the validator's own trouble (device, memory)
            raise WorkVerificationUnavailable(f"recomputation failed on this node: {exc}") from exc
        if self.blobs is not None:
            self.blobs.put_state(serialize_state(spec, checkpoint))  # the job's new checkpoint, for the next miner

    def blobs_for_block(self, block_header: BlockHeaderAPI, parent_state: StateAPI) -> tuple[bytes, ...]:
        """The job's dataset (unless built in) and its start checkpoint state (unless the
        initial one, derived from the spec): what block files carry for an offline import."""
        job = self.open_job(parent_state, cast(PouwBlockHeader, block_header))
        return tuple(name for name, _ in job_blobs(job))

    def transaction_blobs(self, tx: SignedTransactionAPI) -> tuple[bytes, ...]:
        """A fraud proof's start state (``consensus.fraud.proof_blobs``); nothing else."""
        if tx.to != REGISTRY_ADDRESS:
            return ()
        return proof_blobs(self.context.db, bytes(tx.data))  # type: ignore[attr-defined]

    # --- finalisation ---------------------------------------------------------------------

    def apply_block_rewards(self, state: StateAPI, block: BlockAPI) -> None:
        reward = self.genesis.block_reward(block.number) if self.genesis is not None else 0
        finalise_block(state, self.config, cast(PouwBlockHeader, block.header), reward)


__all__ = ["PouwEngine", "backend_for"]

"""The auditor: recompute whole blocks, in parallel, and prove the frauds it finds.

``pouw-node audit`` runs it once over a block range or a job's blocks; ``pouw-node run
--audit`` runs :class:`Auditor` as a background thread inside a node. Either way:

* each block is audited alone (``consensus.audit``): its inputs (job spec, start state,
  header, payload, budget) are read from the chain by :func:`prepare_audit`, and the
  recomputation needs no database, so it runs in worker processes (``workers`` > 1; a
  dataset reaches them once, through a scratch blob directory) or inline;
* the background auditor walks the canonical chain in order from a cursor stored in the
  database (``pouw/audit/cursor``), so a restart goes on where it stopped, and records
  each block's verdict (``pouw/audit/block/<hash>``); a reorg moves the cursor back to
  the last block still canonical;
* on a fraud it puts the lying segment's start state in the node's blob store (peers
  fetch it by hash when the proof reaches them) and, when it has a key, signs a
  ``proveFraud`` transaction and submits it like any local transaction (gossiped); a
  block already proven, or past the audit window, is recorded and left.

What a dApp is told (``pouw_getJob``'s ``audit``) is :func:`job_audit_view`.
"""
from __future__ import annotations

import logging
import multiprocessing
import shutil
import tempfile
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import rlp
from eth.abc import BlockHeaderAPI, StateAPI
from eth_keys.datatypes import PrivateKey
from eth_typing import Address, Hash32

from chain.chain import Chain
from chain.errors import WorkBlobMissing
from chain.header import PouwBlockHeader
from consensus.audit import AuditError, BlockAudit, audit_trajectory, job_before
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from consensus.fraud import BOUNTY_DIVISOR, encode_prove_fraud, proof_gas, read_audit
from consensus.jobs import checkpoint_state_bytes, load_dataset
from consensus.params import REGISTRY_ADDRESS, ConsensusConfig
from consensus.payload import WorkPayload
from consensus.registry import read_job
from consensus.rewards import read_ring_entry
from pouw.arith import Backend
from pouw.datasets import Dataset
from pouw.spec import JobSpec

log = logging.getLogger("consensus.auditor")

CURSOR_KEY = b"pouw/audit/cursor"
RESULT_PREFIX = b"pouw/audit/block/"
PROOF_GAS_MARGIN = 200_000
"""Gas the auditor's proof transaction adds to the registry's charge (calldata, the
fraud's bookkeeping: slashing, a rollback over the window's entries)."""
PROOF_TIP = 10**9
"""The tip (wei per gas) of the auditor's proof transactions: 1 gwei."""


# --- one block's inputs, and its recomputation ----------------------------------------------


@dataclass(frozen=True)
class AuditInputs:
    """Everything recomputing one block needs, read from the chain: no database handle,
    so it can be sent to a worker process."""

    number: int
    block_hash: bytes
    job_id: int
    spec: JobSpec
    start_state: bytes
    header_rlp: bytes
    payload: bytes
    budget: Optional[int]
    work_units: int
    max_dataset_bytes: int


def _config(chain: Chain) -> ConsensusConfig:
    config = getattr(chain.engine_class, "config", None)
    if not isinstance(config, ConsensusConfig):
        raise AuditError("this chain's blocks carry no proof of work to audit")
    return config


def prepare_audit(chain: Chain, block_hash: bytes) -> AuditInputs:
    """The inputs of block ``block_hash``'s audit (AuditError: no work payload stored,
    no job; ``WorkBlobMissing``: its start checkpoint is not here)."""
    from pouw.families import get_family

    config = _config(chain)
    try:
        header = chain.get_header_by_hash(block_hash)  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - py-evm's HeaderNotFound and kin
        raise AuditError(f"block 0x{bytes(block_hash).hex()} is not on this node") from exc
    if not isinstance(header, PouwBlockHeader) or header.block_number == 0:
        raise AuditError(f"block 0x{bytes(block_hash).hex()} carries no work to audit")
    raw = chain.get_payload(header.hash)
    if raw is None:
        raise AuditError(f"no work payload stored for block #{header.block_number}")
    job = job_before(chain, header)
    assert job.spec is not None
    s0 = checkpoint_state_bytes(job, LevelDBBlobStore(chain.db))
    return AuditInputs(
        header.block_number, bytes(header.hash), job.job_id, job.spec, s0, rlp.encode(header), bytes(raw),
        job.budget_left, get_family(job.spec.family).work_units(job.spec), config.limits.max_dataset_bytes,
    )


def run_audit(inputs: AuditInputs, dataset: Dataset, backend: Backend) -> BlockAudit:
    """Recompute the block ``inputs`` describe: every segment, in order."""
    started = time.perf_counter()
    header = rlp.decode(inputs.header_rlp, sedes=PouwBlockHeader)
    payload = WorkPayload.decode(inputs.payload)
    lie = audit_trajectory(inputs.spec, dataset, inputs.start_state, header, payload, inputs.budget, backend)
    return BlockAudit(inputs.number, inputs.block_hash, inputs.job_id, len(payload.commitments),
                      header.step_count, header.step_count * inputs.work_units,
                      None if lie is None else lie.segment, None if lie is None else lie.start_state,
                      time.perf_counter() - started, None if lie is None else (lie.first_step, lie.last_step))


def _worker_start() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker: the pool is the parallelism


def _worker_audit(inputs: AuditInputs, blob_dir: str, device: str) -> BlockAudit:
    from pouw.blobstore import DirectoryBlobStore

    dataset = load_dataset(inputs.spec, DirectoryBlobStore(blob_dir), inputs.max_dataset_bytes)
    return run_audit(inputs, dataset, backend_for(device))


def audit_block(chain: Chain, block_hash: bytes, backend: Backend) -> BlockAudit:
    """Recompute every segment of block ``block_hash`` of ``chain``, here and now."""
    inputs = prepare_audit(chain, block_hash)
    config = _config(chain)
    return run_audit(inputs, load_dataset(inputs.spec, LevelDBBlobStore(chain.db), config.limits.max_dataset_bytes),
                     backend)


class AuditRunner:
    """Audits blocks of one chain, inline (``workers`` <= 1) or in ``workers`` processes.

    Worker processes are started with ``spawn`` (no copy of the node's threads and open
    database) and get each job's dataset once, from a scratch blob directory."""

    def __init__(self, chain: Chain, *, workers: int = 1, device: str = "cpu") -> None:
        self.chain = chain
        self.workers = max(1, int(workers))
        self.device = device
        self._pool: Optional[Executor] = None
        self._scratch: Optional[Path] = None
        if self.workers > 1:
            self._scratch = Path(tempfile.mkdtemp(prefix="pouw-audit-"))
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_start)

    def _dataset(self, spec: JobSpec) -> Dataset:
        return load_dataset(spec, LevelDBBlobStore(self.chain.db), _config(self.chain).limits.max_dataset_bytes)

    def _share_dataset(self, spec: JobSpec) -> None:
        """Put the spec's dataset in the scratch directory the workers read."""
        assert self._scratch is not None
        name = spec.dataset[2:]
        store = LevelDBBlobStore(self.chain.db)
        want = bytes.fromhex(name)
        if not (self._scratch / name).exists() and store.has(want):  # else built in (or missing: the worker says)
            from pouw.blobstore import DirectoryBlobStore

            data = store.get(want)
            DirectoryBlobStore(self._scratch, max_bytes=max(len(data), 1)).put(data)

    def audit(self, block_hashes: Sequence[bytes]) -> list[BlockAudit]:
        """Audit each block (results in the same order); the first error is raised."""
        outcomes = self.audit_each([prepare_audit(self.chain, h) for h in block_hashes])
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        return [o for o in outcomes if isinstance(o, BlockAudit)]

    def audit_each(self, inputs: Sequence[AuditInputs]) -> list[BlockAudit | Exception]:
        """Audit each prepared block: its verdict, or the error its audit raised."""
        if self._pool is None:
            outcomes: list[BlockAudit | Exception] = []
            for i in inputs:
                try:
                    outcomes.append(run_audit(i, self._dataset(i.spec), backend_for(self.device)))
                except Exception as exc:  # noqa: BLE001 - reported per block, as from a worker
                    outcomes.append(exc)
            return outcomes
        for i in inputs:
            self._share_dataset(i.spec)
        futures = [self._pool.submit(_worker_audit, i, str(self._scratch), self.device) for i in inputs]
        results: list[BlockAudit | Exception] = []
        for future in futures:
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - a worker's error (or a broken pool)
                results.append(exc)
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


# --- what was found ------------------------------------------------------------------------


UNAUDITABLE = -1
"""``Auditor.verdict`` of a block whose audit failed for a reason of its own."""


@dataclass(frozen=True)
class SkippedBlock:
    """A block the auditor could not audit (and why): never counted as honest."""

    number: int
    block_hash: bytes
    job_id: int
    reason: str


@dataclass
class FraudFound:
    """A block this auditor found lying, and what became of it."""

    number: int
    block_hash: bytes
    job_id: int
    segment: int
    first_step: int
    last_step: int
    start_state_hash: bytes
    status: str = "found"
    """found | submitted | proven | past-window | no-key | refused: <reason>"""
    proof_tx: Optional[bytes] = None


@dataclass(frozen=True)
class ProofPlan:
    """A ``proveFraud`` call for a found fraud: where to send it and its gas."""

    to: bytes
    data: bytes
    gas: int


def proof_plan(config: ConsensusConfig, audit: BlockAudit) -> ProofPlan:
    """The transaction fields proving ``audit``'s fraud: the registry's charge plus a margin."""
    assert audit.fraud_segment is not None and audit.fraud_steps is not None
    first, last = audit.fraud_steps
    segment_work = (last - first + 1) * (audit.work_units // audit.steps)
    gas = proof_gas(config.coinbase_maturity, segment_work) + PROOF_GAS_MARGIN
    return ProofPlan(REGISTRY_ADDRESS, encode_prove_fraud(audit.block_hash, audit.fraud_segment), gas)


def record_finding(chain: Chain, audit: BlockAudit) -> FraudFound:
    """Keep a lying block's segment start state in the node's blob store (what a proof
    of it reads; peers fetch it by hash) and describe the finding."""
    assert audit.fraud_segment is not None and audit.start_state is not None and audit.fraud_steps is not None
    state_hash = LevelDBBlobStore(chain.db).put_state(audit.start_state)
    return FraudFound(audit.number, audit.block_hash, audit.job_id, audit.fraud_segment, *audit.fraud_steps,
                      state_hash)


def provable(state: StateAPI, config: ConsensusConfig, number: int, block_hash: bytes, head_number: int) -> Optional[str]:
    """None if a proof for block ``number`` would be accepted on top of the head (as far
    as cheap checks tell), else why not: ``past-window`` or ``proven``."""
    maturity = config.coinbase_maturity
    if maturity == 0 or head_number + 1 - maturity > number:
        return "past-window"
    entry = read_ring_entry(state, number, maturity)
    if entry is None:
        return "past-window"
    if entry.slashed:
        return "proven"
    return None


# --- the background auditor -------------------------------------------------------------------


@dataclass
class AuditProgress:
    """Counters for ``pouw_auditStatus`` and the log."""

    blocks: int = 0
    steps: int = 0
    work_units: int = 0
    seconds: float = 0.0
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class AuditStatus:
    """A snapshot of an auditor, for ``pouw_auditStatus``."""

    running: bool
    workers: int
    device: str
    first: int
    through: Optional[int]
    head: int
    blocks: int
    steps: int
    steps_per_second: float
    """Recomputed steps per second, all workers together."""
    work_units_per_second: float
    frauds: tuple[FraudFound, ...]
    skipped: tuple[SkippedBlock, ...]
    """Blocks it could not audit, with the reason (never counted as honest)."""
    prover: Optional[bytes]
    last_error: Optional[str]

    @property
    def behind(self) -> int:
        """Blocks between the audited range and the head."""
        return max(0, self.head - (self.through if self.through is not None else self.first - 1))


class Auditor:
    """Audits every canonical block after its cursor, in the background (see module doc).

    ``submit`` hands a signed raw transaction to the node (its pool and gossip) and
    returns its hash; ``key`` signs proofs (None: frauds are recorded and reported, and
    the start state is stored so anyone can prove them)."""

    def __init__(
        self,
        chain: Chain,
        *,
        workers: int = 1,
        device: str = "cpu",
        key: Optional[PrivateKey] = None,
        submit: Optional[Callable[[bytes], bytes]] = None,
        nonce_of: Optional[Callable[[Address], int]] = None,
        interval: float = 1.0,
        start_block: Optional[int] = None,
    ) -> None:
        self.chain = chain
        self.config = _config(chain)
        self.runner = AuditRunner(chain, workers=workers, device=device)
        self.key = key
        self.submit = submit
        self.nonce_of = nonce_of
        self.interval = interval
        self.progress = AuditProgress()
        self.frauds: list[FraudFound] = []
        self.skipped: list[SkippedBlock] = []
        self.last_error: Optional[str] = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.first = self._first_block(start_block)

    # -- cursor and records --
    def _first_block(self, start_block: Optional[int]) -> int:
        stored = self._read_cursor()
        if stored is not None:
            return stored[0]
        if start_block is not None:
            return max(1, start_block)
        # blocks older than the window can no longer be proven: start there
        return max(1, self.chain.head().block_number + 1 - self.config.coinbase_maturity)

    def _read_cursor(self) -> Optional[tuple[int, int, bytes]]:
        """(first audited, last audited, its hash), or None before any audit."""
        try:
            raw = self.chain.db[CURSOR_KEY]
        except KeyError:
            return None
        first, last, block_hash = rlp.decode(bytes(raw))
        return int.from_bytes(first, "big"), int.from_bytes(last, "big"), bytes(block_hash)

    def _write_cursor(self, last: int, block_hash: bytes) -> None:
        self.chain.db[CURSOR_KEY] = rlp.encode([self.first, last, block_hash])

    @staticmethod
    def _record(audit: BlockAudit) -> bytes:
        return rlp.encode([audit.fraud_segment or 0, audit.steps, audit.work_units, int(audit.seconds * 1e6)])

    def verdict(self, block_hash: bytes) -> Optional[int]:
        """0: audited honest; j: fraud at segment j; UNAUDITABLE: its audit failed for a
        reason of its own; None: not audited here."""
        try:
            raw = self.chain.db[RESULT_PREFIX + bytes(block_hash)]
        except KeyError:
            return None
        fields = rlp.decode(bytes(raw))
        if len(fields) > 4 and int.from_bytes(fields[4], "big"):
            return UNAUDITABLE
        return int.from_bytes(fields[0], "big")

    def audited_through(self) -> Optional[int]:
        """The last block of the contiguous audited range ``first..`` (None: none yet),
        moved back past any block a reorg replaced."""
        cursor = self._read_cursor()
        if cursor is None:
            return None
        last = cursor[1]
        while last >= self.first:
            canonical = self._canonical(last)
            if canonical is not None and self.verdict(canonical) is not None:
                break
            last -= 1
        return last if last >= self.first else None

    def _canonical(self, number: int) -> Optional[bytes]:
        try:
            return bytes(self.chain.get_canonical_hash(number))
        except Exception:  # noqa: BLE001 - py-evm's HeaderNotFound: above the head
            return None

    # -- one round --
    def run_once(self, limit: Optional[int] = None) -> list[BlockAudit]:
        """Audit the next blocks after the cursor (up to ``limit``, default two per
        worker); their verdicts, in order."""
        through = self.audited_through()
        start = self.first if through is None else through + 1
        head = self.chain.head().block_number
        count = limit or 2 * self.runner.workers
        hashes = [h for n in range(start, min(head, start + count - 1) + 1) if (h := self._canonical(n)) is not None]
        if not hashes:
            return []
        inputs: list[AuditInputs] = []
        for number, block_hash in enumerate(hashes, start=start):
            try:
                inputs.append(prepare_audit(self.chain, block_hash))
            except WorkBlobMissing as exc:  # a checkpoint not fetched yet: this block and later ones wait
                self.last_error = f"block #{number}: {exc}"
                break
            except Exception as exc:  # noqa: BLE001 - this block cannot be audited here, ever: say so, go on
                self._skip(number, block_hash, exc)
        outcomes = self.runner.audit_each(inputs)
        audits: list[BlockAudit] = []
        for prepared, outcome in zip(inputs, outcomes):
            if isinstance(outcome, WorkBlobMissing):  # a dataset not fetched yet: wait for it
                self.last_error = f"block #{prepared.number}: {outcome}"
                break
            if isinstance(outcome, Exception):
                self._skip(prepared.number, prepared.block_hash, outcome)
                continue
            audits.append(outcome)
        for audit in audits:
            self.chain.db[RESULT_PREFIX + audit.block_hash] = self._record(audit)
            with self._lock:
                self.progress.blocks += 1
                self.progress.steps += audit.steps
                self.progress.work_units += audit.work_units
                self.progress.seconds += audit.seconds
            if not audit.honest:
                self._on_fraud(audit)
        reached = None
        for offset, block_hash in enumerate(hashes):  # the contiguous run with a verdict
            if self.verdict(block_hash) is None:
                break
            reached = offset
        if reached is not None:
            self._write_cursor(start + reached, hashes[reached])
        return audits

    def _skip(self, number: int, block_hash: bytes, exc: Exception) -> None:
        """A block whose audit fails for a reason of its own (not a missing blob): record
        it as unaudited, so it is never counted as honest, and go on past it."""
        reason = f"{type(exc).__name__}: {exc}"
        try:
            header = self.chain.get_header_by_hash(Hash32(block_hash))
            job_id = int.from_bytes(header.job_id, "big") if isinstance(header, PouwBlockHeader) else 0
        except Exception:  # noqa: BLE001 - a header we cannot read names no job
            job_id = 0
        self.chain.db[RESULT_PREFIX + bytes(block_hash)] = rlp.encode([0, 0, 0, 0, 1])
        with self._lock:
            self.skipped.append(SkippedBlock(number, bytes(block_hash), job_id, reason))
        self.last_error = f"block #{number} cannot be audited: {reason}"
        log.error("audit: block #%d 0x%s cannot be audited: %s", number, bytes(block_hash).hex(), reason)

    def _on_fraud(self, audit: BlockAudit) -> None:
        found = record_finding(self.chain, audit)
        with self._lock:
            self.frauds.append(found)
        log.warning("audit: block #%d 0x%s lies at segment %d (steps %d..%d of job %d)", found.number,
                    found.block_hash.hex(), found.segment, found.first_step, found.last_step, found.job_id)
        self._prove(found, audit)

    def _prove(self, found: FraudFound, audit: BlockAudit) -> None:
        head = self.chain.head()
        why_not = provable(self.chain.state_at(head), self.config, found.number, found.block_hash, head.block_number)
        if why_not is not None:
            found.status = why_not
            return
        if self.key is None or self.submit is None:
            found.status = "no-key"
            log.warning("audit: no --audit-keystore: prove it with proveFraud(0x%s, %d) (start state 0x%s is "
                        "stored here)", found.block_hash.hex(), found.segment, found.start_state_hash.hex())
            return
        plan = proof_plan(self.config, audit)
        try:
            raw = self._sign(plan, head.base_fee_per_gas or 0)
            found.proof_tx = self.submit(raw)
        except Exception as exc:  # noqa: BLE001 - the pool's refusal, in its words
            found.status = f"refused: {exc}"
            log.warning("audit: proof of block #%d refused by the pool: %s", found.number, exc)
            return
        found.status = "submitted"
        log.warning("audit: fraud proof 0x%s submitted (bounty %d%% of the block reward)",
                    found.proof_tx.hex(), 100 // BOUNTY_DIVISOR)

    def _sign(self, plan: ProofPlan, base_fee: int) -> bytes:
        from eth_account import Account

        assert self.key is not None
        sender = self.key.public_key.to_canonical_address()
        nonce = self.nonce_of(Address(sender)) if self.nonce_of is not None else self.chain.get_nonce(Address(sender))
        tx = {
            "type": 2, "chainId": self.chain.genesis.chain_id, "nonce": nonce, "to": plan.to, "value": 0,
            "data": plan.data, "gas": plan.gas, "maxPriorityFeePerGas": PROOF_TIP,
            "maxFeePerGas": 2 * base_fee + PROOF_TIP,
        }
        signed = Account.sign_transaction(tx, self.key.to_bytes())
        return bytes(signed.raw_transaction)

    def frauds_for(self, job_id: int) -> list[FraudFound]:
        with self._lock:
            return [f for f in self.frauds if f.job_id == job_id]

    def skipped_for(self, job_id: int) -> list[SkippedBlock]:
        """The job's blocks this auditor could not audit (0: any block naming no job)."""
        with self._lock:
            return [s for s in self.skipped if s.job_id in (job_id, 0)]

    def refresh(self) -> None:
        """Mark found frauds the chain has since proven (by anyone)."""
        state = self.chain.state_at(self.chain.head())
        with self._lock:
            for found in self.frauds:
                if found.status in ("proven", "past-window"):
                    continue
                entry = read_ring_entry(state, found.number, self.config.coinbase_maturity)
                if entry is not None and entry.slashed:
                    found.status = "proven"

    # -- thread --
    def start(self) -> "Auditor":
        self._thread = threading.Thread(target=self._run, name="auditor", daemon=True)
        self._thread.start()
        return self

    def notify_new_head(self, *_: object) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.runner.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_once()
                self.refresh()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - a missing blob, a reorg mid-read: retried next round
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.info("audit: will retry: %s", self.last_error)
                done = []
            if not done:
                self._wake.wait(self.interval)
                self._wake.clear()

    # -- reports --
    def status(self) -> AuditStatus:
        """A snapshot for ``pouw_auditStatus``."""
        with self._lock:
            progress = self.progress
            frauds = tuple(self.frauds)
            skipped = tuple(self.skipped)
        rate = progress.steps / progress.seconds if progress.seconds else 0.0
        units = progress.work_units / progress.seconds if progress.seconds else 0.0
        return AuditStatus(
            running=self._thread is not None and self._thread.is_alive(),
            workers=self.runner.workers, device=self.runner.device, first=self.first,
            through=self.audited_through(), head=self.chain.head().block_number,
            blocks=progress.blocks, steps=progress.steps,
            steps_per_second=rate * self.runner.workers, work_units_per_second=units * self.runner.workers,
            frauds=frauds, skipped=skipped, prover=self.key.public_key.to_canonical_address() if self.key is not None else None,
            last_error=self.last_error,
        )


# --- what a dApp is told ------------------------------------------------------------------


@dataclass(frozen=True)
class LastFraud:
    number: int
    block_hash: bytes
    segment: int


@dataclass(frozen=True)
class JobAuditView:
    """A job's audit state, as ``pouw_getJob`` / ``pouw_getJobResult`` report it.

    ``state``: ``fraudFound`` (this node's auditor found a lie on the job's current
    trajectory that the chain has not yet proven), ``audited`` (every step of the job's
    current result was recomputed by this node's auditor and found honest), ``fraudProven``
    (the chain proved a fraud and rolled the job back; the result since is not fully
    audited here), else ``unaudited``."""

    state: str
    audited_through: Optional[int]
    complete: bool
    frauds_proven: int
    rollbacks: int
    last_fraud: Optional[LastFraud]
    found: tuple[FraudFound, ...]


class AuditorView(Protocol):
    """What :func:`job_audit_view` reads of an auditor."""

    first: int

    def audited_through(self) -> Optional[int]: ...

    def frauds_for(self, job_id: int) -> list[FraudFound]: ...

    def skipped_for(self, job_id: int) -> list[SkippedBlock]: ...


def job_audit_view(chain: Chain, job_id: int, auditor: Optional[AuditorView]) -> JobAuditView:
    config = _config(chain)
    head = chain.head()
    state = chain.state_at(head)
    record = read_audit(state, job_id)
    last = None
    if record.last_block_number is not None and record.last_block_hash is not None:
        last = LastFraud(record.last_block_number, record.last_block_hash, record.last_segment or 0)
    through: Optional[int] = None
    complete = False
    found: tuple[FraudFound, ...] = ()
    if auditor is not None:
        through = auditor.audited_through()
        if through is not None and not _covers_job(chain, auditor.first, job_id, config):
            through = None
        if through is not None:
            job_then = read_job(chain.state_at(_canonical_header(chain, through)), job_id, config)
            job_now = read_job(state, job_id, config)
            complete = job_now is not None and job_then is not None and job_then.steps_done == job_now.steps_done \
                and job_then.checkpoint == job_now.checkpoint and not auditor.skipped_for(job_id)
        found = tuple(f for f in auditor.frauds_for(job_id) if f.status != "proven")
    if found:
        kind = "fraudFound"
    elif complete:
        kind = "audited"
    elif record.frauds:
        kind = "fraudProven"
    else:
        kind = "unaudited"
    return JobAuditView(kind, through, complete, record.frauds, record.epoch, last, found)


def _canonical_header(chain: Chain, number: int) -> BlockHeaderAPI:
    return chain.get_header_by_hash(chain.get_canonical_hash(number))


def _covers_job(chain: Chain, first: int, job_id: int, config: ConsensusConfig) -> bool:
    """Whether an audit starting at block ``first`` saw every block that trained the job:
    it had no progress before ``first``."""
    if first <= 1:
        return True
    before = read_job(chain.state_at(_canonical_header(chain, first - 1)), job_id, config)
    return before is None or (before.steps_done == 0 and before.checkpoint == b"\x00" * 32)


__all__ = [
    "AuditInputs", "AuditRunner", "AuditStatus", "Auditor", "audit_block", "FraudFound", "JobAuditView", "job_audit_view",
    "prepare_audit", "proof_plan", "provable", "record_finding", "run_audit",
]

"""The miner: template, job choice, training until a ticket, seal, import; again on the new head.

One round (:meth:`Miner.mine_one`):

1. fix a template on the head (the pool's pending transactions that apply, timestamp
   from the clock): its template hash is known before any work;
2. choose the job: among open posted jobs with escrow left and a usable spec, dataset
   and checkpoint, the best expected fee per work unit (``price * min(r * w, D) / w``
   for a job with ``r`` budget steps left: a job about to complete pays for at most
   ``r`` steps of a block's ``D / w``; lowest id on ties); otherwise the first standing
   job of the genesis file;
3. choose the segment length ``m``: ``--segment-steps`` (default
   ``DEFAULT_SEGMENT_STEPS``), capped by ``max_segment_steps(D, w, k)``;
4. train from the job's checkpoint with ``seal_seed(template_hash, coinbase, job, h_0, m)``
   until a point is a winning ticket; stop at once if the head changes (a block arrived)
   or before MAX_STEPS_PER_BLOCK steps (then a fresh template);
5. build the payload (commitments, the start states of the anchored and challenged
   segments), write the seal into the template, execute; the caller imports.

:meth:`Miner.start` runs rounds in a daemon thread and imports each block; tell it
about blocks from elsewhere with :meth:`notify_new_head` (it also polls the head). The
miner logs a progress line every ``PROGRESS_LOG_S`` seconds while it trains.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from eth_typing import Address, Hash32

from chain.chain import MAX_FUTURE_SECONDS, Chain, Seal
from consensus.blobs import LevelDBBlobStore
from consensus.engine import PouwEngine, backend_for
from consensus.jobs import checkpoint_state, current_checkpoint, load_dataset
from consensus.params import MAX_STEPS_PER_BLOCK, job_label
from consensus.market import funded_jobs
from consensus.registry import JobRecord, read_job
from consensus.seal import build_payload
from pouw.commit import max_segment_steps, seal_seed
from pouw.errors import PouwError
from pouw.families import get_family
from pouw.trainer import Trainer, ticket_condition

log = logging.getLogger("consensus.miner")

HEAD_POLL_STEPS = 8
DEFAULT_SEGMENT_STEPS = 16
"""The miner's segment length unless told otherwise (capped by the consensus bound): it
hashes its state once per segment, so a longer segment costs less hashing per step."""
PROGRESS_LOG_S = 30.0
RATE_WINDOW_S = 30.0
"""Steps and work units per second are averaged over this many seconds (pouw_minerStatus)."""


class RateMeter:
    """Steps and work units done in the last ``window`` seconds, in one-second buckets."""

    def __init__(self, window: float = RATE_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._buckets: "collections.OrderedDict[int, list[int]]" = collections.OrderedDict()
        self._since: Optional[float] = None
        self._lock = threading.Lock()

    def add(self, steps: int, units: int) -> None:
        now = self.clock()
        second = int(now)
        with self._lock:
            if self._since is None:
                self._since = now
            bucket = self._buckets.get(second)
            if bucket is None:  # a new second: drop the ones that left the window (once per second)
                self._trim(now)
                bucket = self._buckets[second] = [0, 0]
            bucket[0] += steps
            bucket[1] += units

    def _trim(self, now: float) -> None:
        while self._buckets and next(iter(self._buckets)) < now - self.window:
            self._buckets.popitem(last=False)

    def rates(self) -> tuple[float, float]:
        """(steps per second, work units per second) over the window (0 when idle)."""
        now = self.clock()
        with self._lock:
            self._trim(now)
            if self._since is None or not self._buckets:
                return 0.0, 0.0
            span = max(1.0, min(self.window, now - self._since))
            steps = sum(b[0] for b in self._buckets.values())
            units = sum(b[1] for b in self._buckets.values())
        return steps / span, units / span


@dataclass(frozen=True)
class CurrentWork:
    """What the miner trains right now."""

    job_id: int
    parent_hash: bytes
    started: float
    """time.time() when the round's training started."""


@dataclass(frozen=True)
class MinedBlock:
    block: Any
    payload: bytes
    job_id: int
    steps: int
    train_seconds: float
    """Time from template to winning ticket (training only)."""
    seal_seconds: float
    """Time to build the payload and execute the sealed block."""


class Miner:
    """Mines on ``chain`` (which must use PouwEngine) for ``coinbase``."""

    def __init__(
        self,
        chain: Chain,
        coinbase: Address,
        *,
        device: str = "auto",
        extra_data: bytes = b"",
        on_block: Optional[Callable[[Any], None]] = None,
        segment_steps: int = DEFAULT_SEGMENT_STEPS,
        pipeline: Optional[bool] = None,
    ) -> None:
        if not issubclass(chain.engine_class, PouwEngine):
            raise TypeError("mining needs the pouw seal engine (genesis \"sealEngine\": \"pouw\")")
        self.chain = chain
        self.engine_class = chain.engine_class
        self.config = chain.engine_class.config
        self.coinbase = Address(bytes(coinbase))
        self.backend = backend_for(device)
        self.blobs = LevelDBBlobStore(chain.db)
        self.extra_data = extra_data
        self.on_block = on_block
        self.blocks_mined = 0
        self.last: Optional[MinedBlock] = None
        self._stop = threading.Event()
        self._new_head = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._trainer: Optional[Trainer] = None
        self.meter = RateMeter()
        self.current: Optional[CurrentWork] = None
        self.current_step = 0
        if segment_steps < 1:
            raise ValueError(f"segment_steps must be >= 1, got {segment_steps}")
        self.segment_steps = segment_steps
        # Hash a point's state while the next segment trains: worth it where the step runs
        # on a device and the hash on the host; on a CPU both share the cores.
        self.pipeline = self.backend.device.type != "cpu" if pipeline is None else pipeline
        self._last_progress_log = 0.0
        self.progress_log_s = PROGRESS_LOG_S

    # --- job choice -------------------------------------------------------------------

    def choose_job(self, state: Any, difficulty: Optional[int] = None) -> JobRecord:
        """The job to train on ``state`` for a block of ``difficulty`` (see the module doc)."""
        best: Optional[JobRecord] = None
        best_key = (0, 1)  # (price * min(r * w, D), w): compared as fractions
        for job in reversed(funded_jobs(state, self.config)):  # oldest first: lowest id wins ties
            assert job.spec is not None
            w = get_family(job.spec.family).work_units(job.spec)
            left = job.budget_left or 0
            key = (job.price * (left * w if difficulty is None else min(left * w, difficulty)), w)
            if best is not None and key[0] * best_key[1] <= best_key[0] * key[1]:
                continue
            if not self._usable(job):
                continue
            best, best_key = job, key
        if best is not None:
            return best
        for index in range(len(self.config.standing_jobs)):
            from consensus.params import STANDING_JOB_BASE

            standing = read_job(state, STANDING_JOB_BASE + index, self.config)
            if standing is not None and self._usable(standing):
                return standing
        raise PouwError("no job to mine: no funded open job and no usable standing job")

    def _usable(self, job: JobRecord) -> bool:
        assert job.spec is not None
        try:
            load_dataset(job.spec, self.blobs, self.config.limits.max_dataset_bytes)
            if job.checkpoint != b"\x00" * 32 and not self.blobs.has(job.checkpoint):
                return False
        except PouwError:
            return False
        except Exception:  # noqa: BLE001 - e.g. DatasetUnavailable (a ChainError)
            return False
        return True

    # --- one round --------------------------------------------------------------------

    def mine_one(self, max_steps: int = MAX_STEPS_PER_BLOCK) -> Optional[MinedBlock]:
        """One round on the current head; None if interrupted (new head, stop) or no ticket."""
        self._new_head.clear()
        head = self.chain.head()
        ahead = head.timestamp + 1 - (self.chain.clock() + MAX_FUTURE_SECONDS)
        if ahead > 0:  # the chain runs ahead of our clock: peers would refuse the block yet
            self._stop.wait(min(ahead, 1.0))
            return None
        head = self.chain.head()
        template = self.chain.build_template(self.coinbase, extra_data=self.extra_data, parent_hash=head.hash)
        if self._stop.is_set():
            return None
        return self.seal_template(template, max_steps=max_steps, watch_head=head.hash)

    def seal_template(
        self, template: Any, *, max_steps: int = MAX_STEPS_PER_BLOCK, watch_head: Optional[bytes] = None,
        job: Optional[JobRecord] = None,
    ) -> Optional[MinedBlock]:
        """Train on ``template`` until a winning point and return the sealed block with its
        payload; None if stopped (a new head when ``watch_head`` is given) or no ticket
        within ``max_steps``."""
        started = time.perf_counter()
        parent = self.chain.get_header_by_hash(template.header.parent_hash)
        difficulty = template.header.difficulty
        if job is None:
            job = self.choose_job(self.chain.state_at(parent), difficulty)
        assert job.spec is not None
        w = get_family(job.spec.family).work_units(job.spec)
        m = min(self.segment_steps, max_segment_steps(difficulty, w, self.config.challenge_count))
        h0 = current_checkpoint(job)
        seed = seal_seed(template.template_hash, self.coinbase, job.job_id, h0, m)
        dataset = load_dataset(job.spec, self.blobs, self.config.limits.max_dataset_bytes)
        trainer = Trainer(job.spec, dataset, checkpoint_state(job, self.blobs), seed, self.backend,
                          m=m, budget=job.budget_left, pipeline=self.pipeline)
        self._trainer = trainer
        self.current = CurrentWork(job.job_id, bytes(template.header.parent_hash), time.time())
        self.current_step = 0

        def on_step(i: int) -> None:
            self.meter.add(1, w)
            self.current_step = i
            if watch_head is not None and (
                self._new_head.is_set() or (i % HEAD_POLL_STEPS == 0 and self.chain.head().hash != watch_head)
            ):
                trainer.stop()
            self._log_progress(job.job_id, i, w, difficulty)

        try:
            if self._stop.is_set():
                return None
            result = trainer.run(max_steps=max_steps, until=ticket_condition(w, difficulty), on_step=on_step)
        finally:
            self._trainer = None
            self.current = None
        if result.reason != "condition":
            return None
        train_seconds = time.perf_counter() - started
        sealed_at = time.perf_counter()
        sealed = build_payload(trainer, self.config.challenge_count)
        seal = Seal(
            job_id=Hash32(job.job_id.to_bytes(32, "big")),
            start_checkpoint=Hash32(h0),
            step_count=trainer.step,
            final_state=Hash32(sealed.final_state),
            work_accumulator=Hash32(trainer.accumulator),
        )
        block = self.chain.seal_block(template, seal)
        return MinedBlock(block, sealed.payload.encode(), job.job_id, trainer.step, train_seconds,
                          time.perf_counter() - sealed_at)

    def _log_progress(self, job_id: int, step: int, w: int, difficulty: int) -> None:
        """Every PROGRESS_LOG_S seconds: what the miner trains and when it expects a block."""
        now = time.monotonic()
        if self._last_progress_log == 0.0:
            self._last_progress_log = now  # the first line one interval after mining starts
            return
        if now - self._last_progress_log < self.progress_log_s:
            return
        self._last_progress_log = now
        steps_per_s, _ = self.meter.rates()
        eta = difficulty / (w * steps_per_s) if steps_per_s > 0 else float("inf")
        log.info("mining job %s: step %d of this block, %.1f steps/s, expected time to a block %.0f s",
                 job_label(job_id), step, steps_per_s, eta)

    def mine_and_import(self) -> Optional[MinedBlock]:
        mined = self.mine_one()
        if mined is None:
            return None
        self.chain.import_block(mined.block, mined.payload)
        self.blocks_mined += 1
        self.last = mined
        log.info("mined block #%d %s: job %s, t=%d steps, D=%d, trained %.2fs", mined.block.number,
                 "0x" + mined.block.hash.hex()[:12], job_label(mined.job_id), mined.steps,
                 mined.block.header.difficulty, mined.train_seconds)
        if self.on_block is not None:
            self.on_block(mined.block)
        return mined

    # --- status -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def status(self) -> dict[str, Any]:
        """What pouw_minerStatus reports of this miner (plain Python values)."""
        steps_per_s, units_per_s = self.meter.rates()
        current = self.current
        last = self.last
        return {
            "mining": self.running,
            "coinbase": bytes(self.coinbase),
            "device": str(self.backend.device),
            "steps_per_second": steps_per_s,
            "work_units_per_second": units_per_s,
            "current": None if current is None else {
                "job_id": current.job_id, "parent_hash": current.parent_hash,
                "step": self.current_step, "seconds": max(0.0, time.time() - current.started),
            },
            "blocks_mined": self.blocks_mined,
            "last": None if last is None else {
                "number": last.block.number, "hash": bytes(last.block.hash), "job_id": last.job_id,
                "steps": last.steps, "train_seconds": last.train_seconds,
            },
        }

    # --- the thread -------------------------------------------------------------------

    def start(self) -> "Miner":
        self._thread = threading.Thread(target=self._run, name="miner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        trainer = self._trainer
        if trainer is not None:
            trainer.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def notify_new_head(self, *_: Any) -> None:
        """A block was imported by someone else: abandon the current trajectory."""
        self._new_head.set()
        trainer = self._trainer
        if trainer is not None:
            trainer.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.mine_and_import()
            except Exception:  # noqa: BLE001 - keep mining; log the reason
                log.exception("mining round failed")
                self._stop.wait(1.0)

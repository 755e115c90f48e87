"""What a running node saw of each block it imported: one log line, timings, the peer.

:class:`ImportLog` is attached to a running node's chain (``node.node.Node`` does it). It
wraps the chain's ``import_block`` and its seal engine's ``verify_work`` on those two
*instances* (the chain module itself is untouched), so every import is seen, whoever calls
it: the miner, the p2p service, automine, the dev block producer. For each block that was
new it

* logs one line: number, hash, job, steps, transactions, verification ms, import ms and
  where the block came from (a peer's name, ``local`` for blocks this node built), with
  the same facts as structured fields for ``--log-format json``;
* keeps an :class:`ImportRecord` of the last :data:`KEEP` blocks (the dashboard shows a
  block's verification time; ``pouw_blockImports`` serves them);
* calls its listeners (the metrics' histograms observe the timings).

The peer: the p2p service imports on its own thread without saying for whom; calling
:meth:`ImportLog.attribute_p2p` with the service records, for each block it is about to
import, the peer that sent it (by block hash), and the import looks it up.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from rpc.sources import ImportListener

log = logging.getLogger("chain.import")

KEEP = 1024
"""Import records kept in memory (newest first out of a bounded deque)."""

LOCAL = "local"
"""The source of a block this node built (miner, automine, dev producer)."""


@dataclass(frozen=True)
class ImportRecord:
    """One imported block as this node saw it."""

    number: int
    hash: bytes
    job_id: int
    """The job the block trained (0 on a chain without proof of work)."""
    steps: int
    transactions: int
    verify_seconds: Optional[float]
    """Time in the seal engine's work check (recomputing the sampled steps); None when the
    engine has no such check."""
    import_seconds: float
    """The whole import: decode, header checks, execution, work check, write."""
    source: str
    """The peer's name, ``local`` for a block built here, ``file`` for ``pouw-node import``."""
    time: float
    """When the import finished (Unix seconds)."""
    reorg: bool


Listener = ImportListener
"""Called with each new record (the RPC's metrics observe its timings)."""


def _job_id(header: Any) -> int:
    raw = getattr(header, "job_id", b"")
    return int.from_bytes(bytes(raw), "big") if raw else 0


class ImportLog:
    """The import observer of one chain (see the module doc)."""

    def __init__(self, chain: Any, *, job_label: Callable[[int], str] = str, keep: int = KEEP) -> None:
        self.chain = chain
        self.job_label = job_label
        """How a job id is written in the log line (the CLI passes 'standing-N' naming)."""
        self.listeners: list[Listener] = []
        self._records: "collections.deque[ImportRecord]" = collections.deque(maxlen=keep)
        self._by_hash: dict[bytes, ImportRecord] = {}
        self._sources: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._verify = threading.local()
        self._attached = False

    # --- hooks --------------------------------------------------------------------------

    def attach(self) -> "ImportLog":
        """Wrap the chain's ``import_block`` and its engine's ``verify_work`` (once)."""
        if self._attached:
            return self
        self._attached = True
        import_block = self.chain.import_block

        def timed_import(block_or_rlp: Any, payload: Optional[bytes] = None) -> Any:
            self._verify.seconds = None
            started = time.perf_counter()
            result = import_block(block_or_rlp, payload)
            if not getattr(result, "already_known", False):
                self._record(result, time.perf_counter() - started, getattr(self._verify, "seconds", None))
            return result

        self.chain.import_block = timed_import
        engine: Any = getattr(self.chain, "engine", None)
        verify_work = getattr(engine, "verify_work", None)
        if engine is not None and verify_work is not None:

            def timed_verify(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return verify_work(*args, **kwargs)
                finally:
                    self._verify.seconds = time.perf_counter() - started

            engine.verify_work = timed_verify
        return self

    def attribute_p2p(self, service: Any) -> None:
        """Remember which peer sent each block the p2p ``service`` imports (its
        ``import_from(peer, block_rlp, payload)``), so the log line can name it."""
        import_from = service.import_from

        async def import_from_peer(peer: Any, block_rlp: bytes, payload: Optional[bytes]) -> Any:
            key = _block_hash(block_rlp)
            if key is not None:
                with self._lock:
                    self._sources[key] = str(getattr(peer, "name", peer))
            try:
                return await import_from(peer, block_rlp, payload)
            finally:
                if key is not None:
                    with self._lock:
                        self._sources.pop(key, None)

        service.import_from = import_from_peer

    # --- records ------------------------------------------------------------------------

    def _record(self, result: Any, import_seconds: float, verify_seconds: Optional[float]) -> None:
        block = result.imported
        header = block.header
        block_hash = bytes(block.hash)
        with self._lock:
            source = self._sources.get(block_hash)
        if source is None:
            source = "p2p" if threading.current_thread().name.startswith("p2p") else LOCAL
        record = ImportRecord(
            number=int(header.block_number), hash=block_hash, job_id=_job_id(header),
            steps=int(getattr(header, "step_count", 0) or 0), transactions=len(block.transactions),
            verify_seconds=verify_seconds, import_seconds=import_seconds, source=source, time=time.time(),
            reorg=bool(getattr(result, "reorg", False)),
        )
        with self._lock:
            if len(self._records) == self._records.maxlen:
                old = self._records[0]
                if self._by_hash.get(old.hash) is old:
                    del self._by_hash[old.hash]
            self._records.append(record)
            self._by_hash[block_hash] = record
        self._log(record)
        for listener in list(self.listeners):
            try:
                listener(record)
            except Exception:  # noqa: BLE001 - an observer must never fail an import
                log.exception("import listener failed")

    def _log(self, r: ImportRecord) -> None:
        job = self.job_label(r.job_id) if r.job_id else "-"
        verify_ms = None if r.verify_seconds is None else round(r.verify_seconds * 1000, 2)
        fields = {
            "number": r.number, "hash": "0x" + r.hash.hex(), "job": job, "steps": r.steps, "txs": r.transactions,
            "verifyMs": verify_ms, "importMs": round(r.import_seconds * 1000, 2), "peer": r.source, "reorg": r.reorg,
        }
        log.info(
            "imported block #%d 0x%s job=%s steps=%d txs=%d verify=%s import=%.1fms peer=%s%s",
            r.number, r.hash.hex(), job, r.steps, r.transactions, "-" if verify_ms is None else f"{verify_ms:.1f}ms",
            r.import_seconds * 1000, r.source, " (reorg)" if r.reorg else "",
            extra={"fields": fields},
        )

    def recent(self, limit: int = 64) -> list[ImportRecord]:
        """The last ``limit`` import records, newest first."""
        with self._lock:
            items = list(self._records)[-limit:] if limit > 0 else []
        return items[::-1]

    def get(self, block_hash: bytes) -> Optional[ImportRecord]:
        """How this node imported the block ``block_hash`` (None if not in memory)."""
        with self._lock:
            return self._by_hash.get(bytes(block_hash))


def _block_hash(block_rlp: Any) -> Optional[bytes]:
    """The hash of a block from its RLP (header only), None if it does not parse: the
    import itself then reports what is wrong."""
    if not isinstance(block_rlp, (bytes, bytearray)):
        hash_ = getattr(block_rlp, "hash", None)
        return bytes(hash_) if hash_ is not None else None
    try:
        from node.node import _peek_header

        return bytes(_peek_header(bytes(block_rlp)).hash)
    except Exception:  # noqa: BLE001 - junk from a peer: the import says what is wrong
        return None


__all__ = ["ImportLog", "ImportRecord", "LOCAL", "KEEP"]

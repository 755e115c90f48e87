"""Audits over JSON-RPC (docs/rpc-pouw.md, "Audits and fraud proofs"):

* ``pouw_auditStatus()``: this node's auditor (``run --audit``): how far it has
  recomputed, how fast, what it found and what became of it;
* ``pouw_uploadProofState(blockHash, segment, state)``: put the start state of a
  fraud proof's segment on the node, so a ``proveFraud`` transaction naming it is
  accepted (the state must hash to the block's listed commitment before that segment:
  nothing else is stored, so the method cannot be used to fill the disk);
* :func:`audit_json`: the ``audit`` member of ``pouw_getJob`` and ``pouw_getJobResult``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, TypedDict

from eth_typing import Hash32

from chain.chain import Chain

from consensus.blobs import LevelDBBlobStore
from consensus.params import ConsensusConfig
from consensus.payload import WorkPayload
from pouw.blobstore import state_blob_hash
from rpc.context import CallContext
from rpc.errors import InvalidParams, ServerError
from rpc.hexcodec import data, parse_data, parse_hash, parse_quantity, quantity
from rpc.jsontypes import Json
from rpc.registry import Param, Registry

if TYPE_CHECKING:  # consensus.auditor imports torch: loaded on the first audit read, not at start
    from consensus.auditor import FraudFound, JobAuditView

audits = Registry()


def _chain(ctx: CallContext) -> Chain:
    chain = getattr(ctx.backend, "chain", None)
    if not isinstance(chain, Chain) or getattr(chain.engine_class, "config", None) is None:
        raise ServerError("this node's chain carries no proof of work to audit")
    return chain


class FoundJson(TypedDict):
    blockNumber: str
    blockHash: str
    jobId: str
    segment: str
    steps: list[str]
    startState: str
    status: str
    proofTransaction: str | None


class LastFraudJson(TypedDict):
    blockNumber: str
    blockHash: str
    segment: str


class AuditJson(TypedDict):
    """A job's audit state (``consensus.auditor.JobAuditView``)."""

    state: str
    auditedThrough: str | None
    complete: bool
    fraudsProven: str
    rollbacks: str
    lastFraud: LastFraudJson | None
    found: list[FoundJson]


def _found_json(found: FraudFound) -> FoundJson:
    return {
        "blockNumber": quantity(found.number),
        "blockHash": data(found.block_hash),
        "jobId": quantity(found.job_id),
        "segment": quantity(found.segment),
        "steps": [quantity(found.first_step), quantity(found.last_step)],
        "startState": data(found.start_state_hash),
        "status": found.status,
        "proofTransaction": data(found.proof_tx) if found.proof_tx is not None else None,
    }


def audit_view_json(view: JobAuditView) -> AuditJson:
    last = view.last_fraud
    return {
        "state": view.state,
        "auditedThrough": quantity(view.audited_through) if view.audited_through is not None else None,
        "complete": view.complete,
        "fraudsProven": quantity(view.frauds_proven),
        "rollbacks": quantity(view.rollbacks),
        "lastFraud": None if last is None else {
            "blockNumber": quantity(last.number), "blockHash": data(last.block_hash), "segment": quantity(last.segment),
        },
        "found": [_found_json(f) for f in view.found],
    }


def audit_json(ctx: CallContext, job_id: int) -> Optional[AuditJson]:
    """The ``audit`` member of a job's answer (None on a chain without proof of work)."""
    chain = getattr(ctx.backend, "chain", None)
    if not isinstance(chain, Chain) or getattr(chain.engine_class, "config", None) is None:
        return None
    from consensus.auditor import job_audit_view

    return audit_view_json(job_audit_view(chain, job_id, getattr(ctx.backend, "auditor", None)))


def _parse_segment(value: Json) -> int:
    segment = parse_quantity(value)
    if segment < 2:
        raise ValueError("segment must be 2 or more (segment 1 starts at the block's stored start checkpoint)")
    return segment


@audits.method("pouw_auditStatus", blocking=True)
def audit_status(ctx: CallContext) -> dict[str, object]:
    auditor = getattr(ctx.backend, "auditor", None)
    if auditor is None:
        return {"enabled": False}
    s = auditor.status()
    return {
        "enabled": True,
        "running": s.running,
        "workers": quantity(s.workers),
        "device": s.device,
        "fromBlock": quantity(s.first),
        "auditedThrough": quantity(s.through) if s.through is not None else None,
        "head": quantity(s.head),
        "behind": quantity(s.behind),
        "blocksAudited": quantity(s.blocks),
        "stepsAudited": quantity(s.steps),
        "stepsPerSecond": round(s.steps_per_second, 3),
        "workUnitsPerSecond": round(s.work_units_per_second, 3),
        "prover": data(s.prover) if s.prover is not None else None,
        "frauds": [_found_json(f) for f in s.frauds],
        "skipped": [{"blockNumber": quantity(b.number), "blockHash": data(b.block_hash), "reason": b.reason}
                    for b in s.skipped],
        "lastError": s.last_error,
    }


@audits.method(
    "pouw_uploadProofState", Param("blockHash", parse_hash), Param("segment", _parse_segment), Param("state", parse_data),
    blocking=True,
)
def upload_proof_state(ctx: CallContext, block_hash: bytes, segment: int, state: bytes) -> str:
    chain = _chain(ctx)
    config: ConsensusConfig = getattr(chain.engine_class, "config")  # checked by _chain
    raw = chain.get_payload(Hash32(block_hash))
    if raw is None:
        raise InvalidParams(f"block {data(block_hash)} is not on this node or carries no work")
    number = chain.get_header_by_hash(Hash32(block_hash)).block_number
    head = chain.head().block_number
    if bytes(chain.get_canonical_hash(number)) != bytes(block_hash) or head + 1 - config.coinbase_maturity > number:
        raise InvalidParams(f"block {data(block_hash)} is not a canonical block within the audit window "
                            f"(the last {config.coinbase_maturity} blocks): a proof of it would be refused")
    commitments = WorkPayload.decode(raw).commitments
    if segment > len(commitments):
        raise InvalidParams(f"segment {segment} out of range 1..{len(commitments)}")
    limit = config.limits.max_state_bytes
    if len(state) > limit:
        raise InvalidParams(f"state of {len(state)} bytes exceeds the chain's limit of {limit}")
    listed = commitments[segment - 2]
    if state_blob_hash(state) != listed:
        raise InvalidParams(f"the state does not hash to the block's listed state before segment {segment} "
                            f"({data(listed)})")
    return data(LevelDBBlobStore(chain.db).put_state(state))


__all__ = ["AuditJson", "audit_json", "audit_view_json", "audits"]

"""What the RPC reads from the other parts of a running node, as typed seams.

The RPC server sees the chain and its pool through :class:`rpc.backend.Backend`. The
node's other parts are optional (a node may run without a miner, without p2p) and are
attached by whoever assembles the node (``node.node.Node``), each through the one
Protocol below that names exactly what the RPC reads of it:

* :class:`MinerSource` -- ``eth_mining``, ``eth_hashrate``, ``pouw_minerStatus``, the
  pending block's coinbase, the metrics (``consensus.miner.Miner`` implements it);
* :class:`PeerSource` -- ``net_peerCount``, ``eth_syncing``, ``admin_nodeInfo``,
  ``admin_peers``, the metrics (``p2p.service.P2PService``);
* :class:`ImportSource` -- ``pouw_blockImports`` and the import histograms
  (``node.imports.ImportLog``);
* :class:`AuditSource` -- ``pouw_auditStatus`` and jobs' audit state
  (``consensus.auditor.Auditor``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # consensus.auditor imports torch: not at server start
    from consensus.auditor import AuditStatus, FraudFound, SkippedBlock


@runtime_checkable
class MinerSource(Protocol):
    """A miner running in this node."""

    coinbase: bytes

    @property
    def running(self) -> bool:
        """Whether it is mining now."""
        ...

    def status(self) -> dict[str, Any]:
        """Plain values: mining, coinbase, device, steps_per_second, work_units_per_second,
        current (job_id, parent_hash, step, seconds) or None, blocks_mined, last or None."""
        ...


class SyncStatus(Protocol):
    """Where this node's sync stands, as ``eth_syncing`` reports it (``p2p.sync.SyncProgress``)."""

    @property
    def starting_block(self) -> int: ...

    @property
    def current_block(self) -> int: ...

    @property
    def highest_block(self) -> int: ...


@runtime_checkable
class PeerSource(Protocol):
    """This node's p2p service."""

    @property
    def peer_count(self) -> int:
        """Connected peers."""
        ...

    def peer_summaries(self) -> Sequence[Mapping[str, object]]:
        """One dict per connected peer: id, address, outbound, head, number, total_work, score."""
        ...

    def node_summary(self) -> Mapping[str, object]:
        """This node as peers see it: id, listen_host, port, client."""
        ...

    def sync_status(self) -> SyncStatus | None:
        """None when in sync (no peer claims more work than our head has)."""
        ...


class ImportedBlock(Protocol):
    """One block the node imported, as its import log recorded it (``node.imports.ImportRecord``)."""

    @property
    def number(self) -> int: ...

    @property
    def hash(self) -> bytes: ...

    @property
    def job_id(self) -> int:
        """The job the block trained (0 on a chain without proof of work)."""
        ...

    @property
    def steps(self) -> int: ...

    @property
    def transactions(self) -> int: ...

    @property
    def verify_seconds(self) -> float | None:
        """Time in the seal engine's work check; None when the engine has none."""
        ...

    @property
    def import_seconds(self) -> float: ...

    @property
    def source(self) -> str:
        """The peer's name, ``local`` for a block built here, ``file`` for ``pouw-node import``."""
        ...

    @property
    def time(self) -> float:
        """When the import finished (Unix seconds)."""
        ...

    @property
    def reorg(self) -> bool: ...


ImportListener = Callable[[ImportedBlock], None]


@runtime_checkable
class ImportSource(Protocol):
    """The node's log of imported blocks."""

    listeners: list[ImportListener]
    """Called with each new import record."""

    def recent(self, limit: int) -> Sequence[ImportedBlock]:
        """The last ``limit`` import records, newest first."""
        ...


@runtime_checkable
class AuditSource(Protocol):
    """This node's auditor (``consensus.auditor.Auditor``): ``pouw_auditStatus`` and the
    ``audit`` member of ``pouw_getJob`` / ``pouw_getJobResult``."""

    first: int
    """The first block it audits."""

    def audited_through(self) -> int | None:
        """The last block of its contiguous audited range (None: none yet)."""
        ...

    def frauds_for(self, job_id: int) -> list[FraudFound]:
        """Frauds it found in the job's blocks."""
        ...

    def skipped_for(self, job_id: int) -> list[SkippedBlock]:
        """The job's blocks it could not audit."""
        ...

    def status(self) -> AuditStatus:
        """Its progress, rate and findings."""
        ...


__all__ = ["AuditSource", "ImportListener", "ImportSource", "ImportedBlock", "MinerSource", "PeerSource", "SyncStatus"]

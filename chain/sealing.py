"""The consensus plug: what a seal engine must provide, and the no-proof engine for tests.

A seal engine is a py-evm :class:`~eth.abc.ConsensusAPI` (swapped into our VM with
``VM.configure(consensus_class=...)``) with three checks of rising cost, called by
``Chain.import_block`` at these points:

1. :meth:`SealEngine.validate_seal` -- header alone, cheap (stage 1);
2. :meth:`SealEngine.validate_seal_extension` -- header against its parent (stage 2);
3. :meth:`SealEngine.verify_work` -- the check with the block's *work payload* (the
   states needed to recompute the trajectory's segments): cheap checks first, then the
   recomputation. Called after the body checks and BEFORE the block's transactions are
   executed: executing costs up to the gas limit, and a peer must not be able to make
   the node pay that with a block whose work is forged (the engine's cheap checks can be
   ground by a forger; the recomputation cannot). The payload is stored by import under
   ``schema.work_payload(block_hash)`` in the same write batch as the block.

and hooks used while executing a block:

* :meth:`SealEngine.apply_block_rewards` -- state changes at finalisation (block
  reward from the genesis schedule by default; the pouw engine adds the job's payment
  and its checkpoint update);
* :meth:`SealEngine.extra_precompiles` -- precompiled contracts added to the VM (the
  job registry);
* :meth:`SealEngine.max_payload_bytes` -- bound on the payload, checked before anything
  is decoded.

Engines get the genesis config as the class attribute ``genesis`` (set with
``Engine.configure(genesis=config)``, py-evm's Configurable pattern).
"""
from __future__ import annotations

import functools

from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from eth._utils.datatypes import Configurable
from eth.abc import BlockAPI, BlockHeaderAPI, ComputationAPI, ConsensusAPI, SignedTransactionAPI, StateAPI
from eth_typing import Address

from chain.errors import SealEngineUnavailable

if TYPE_CHECKING:
    from genesis.format import GenesisConfig


class WorkContext:
    """What :meth:`SealEngine.verify_work` may read besides the header and payload."""

    def __init__(self, parent_header: BlockHeaderAPI, read_parent_state: Callable[[], StateAPI]) -> None:
        self.parent_header = parent_header
        self._read_parent_state = read_parent_state

    @functools.cached_property
    def parent_state(self) -> StateAPI:
        """State before the block (e.g. the job's on-chain checkpoint h_0 lives here):
        built on first use, as engines that check no work (the dev chain's) never read
        it, and building one (Prague's system-contract set-up) costs about a tenth of
        importing a small block."""
        return self._read_parent_state()


class SealEngine(Configurable, ConsensusAPI):
    """Base class of seal engines. Subclasses override the checks they need."""

    name: str = "abstract"
    genesis: "GenesisConfig" = None  # type: ignore[assignment]
    precompiles: Mapping[Address, Callable[[ComputationAPI], ComputationAPI]] = {}
    """Precompiled contracts the engine adds (configured: ``Engine.configure(precompiles=...)``)."""
    blobs: Any = None
    """The content-addressed store (``pouw.blobstore.BlobStore``) the engine reads
    datasets and checkpoint states from; None for an engine that reads none."""

    def __init__(self, context: object) -> None:
        # py-evm passes a ConsensusContext (holding the db); engines that need it keep it.
        self.context = context

    # --- cheap checks -----------------------------------------------------------------

    def validate_seal(self, header: BlockHeaderAPI) -> None:
        """Header-only checks of the seal fields. Raise :class:`chain.errors.InvalidSeal`."""

    def validate_seal_extension(self, header: BlockHeaderAPI, parents: Iterable[BlockHeaderAPI]) -> None:
        """Checks of the seal against ancestors (``parents`` starts with the parent)."""

    @classmethod
    def get_fee_recipient(cls, header: BlockHeaderAPI) -> Address:
        """Transaction fees go to the header's coinbase."""
        return header.coinbase

    # --- payload ----------------------------------------------------------------------

    def max_payload_bytes(self) -> int:
        """Largest work payload accepted with a block (checked before decoding)."""
        return 0

    def payload_required(self, header: BlockHeaderAPI) -> bool:
        """Whether a block without a payload must be refused."""
        return True

    def verify_work(self, header: BlockHeaderAPI, payload: bytes | None, context: WorkContext) -> None:
        """The expensive check: recompute the challenged steps from the payload.

        Raise :class:`chain.errors.InvalidWork` for an invalid block, or
        :class:`chain.errors.WorkVerificationUnavailable` for a transient failure
        (not a verdict on the block).
        """
        raise NotImplementedError

    def blobs_for_block(self, header: BlockHeaderAPI, parent_state: StateAPI) -> tuple[bytes, ...]:
        """The blobs (datasets, checkpoint states) that verifying this block reads from
        the engine's blob store (``self.blobs``) besides its payload, by the hash the chain
        names them with; blobs every node derives itself are left out. Block files carry
        them (``pouw-node export``), so an import needs no peer. Default: none."""
        return ()

    def transaction_blobs(self, tx: SignedTransactionAPI) -> tuple[bytes, ...]:
        """Blobs that executing ``tx`` reads from the blob store (a fraud proof's start
        state), by hash: a cheap lookup, no execution. Block files carry them too.
        Default: none."""
        return ()

    def missing_transaction_blobs(self, tx: SignedTransactionAPI) -> tuple[bytes, ...]:
        """Those of :meth:`transaction_blobs` this node lacks. The chain asks before it
        executes a block (a missing one is :class:`chain.errors.WorkBlobMissing`: fetched
        from a peer, then the block is retried) and the pool before it admits a
        transaction, so execution never meets a missing blob."""
        needed = self.transaction_blobs(tx)
        if not needed or self.blobs is None:
            return needed
        return tuple(h for h in needed if not self.blobs.has(h))

    # --- execution hooks --------------------------------------------------------------

    @classmethod
    def extra_precompiles(cls) -> Mapping[Address, Callable[[ComputationAPI], ComputationAPI]]:
        """Precompiled contracts the engine adds to the VM (e.g. the job registry at its
        reserved address, bound to this chain's configuration), merged over Prague's by
        :func:`chain.vm.build_vm_class`."""
        return dict(cls.precompiles)

    def apply_block_rewards(self, state: StateAPI, block: BlockAPI) -> None:
        """State changes made when a block is finalised, after its transactions.

        Default: credit the coinbase with the genesis schedule's reward for this block
        number. Coinbase maturity is not enforced here (the consensus milestone does).
        """
        reward = self.genesis.block_reward(block.number) if self.genesis is not None else 0
        # Credit even a zero reward: the coinbase is then "touched" (EIP-161), as in py-evm.
        state.delta_balance(block.header.coinbase, reward)


class NoProofEngine(SealEngine):
    """Accepts any seal, with or without a payload. For tests and dev chains only
    (genesis ``"sealEngine": "noproof"``); never for a network with value."""

    name = "noproof"

    def max_payload_bytes(self) -> int:
        return 16 * 1024 * 1024

    def payload_required(self, header: BlockHeaderAPI) -> bool:
        return False

    def verify_work(self, header: BlockHeaderAPI, payload: bytes | None, context: WorkContext) -> None:
        return None


__all__ = ["NoProofEngine", "SealEngine", "WorkContext", "engine_for_genesis"]


def engine_for_genesis(genesis: "GenesisConfig", engines: Mapping[str, type[SealEngine]]) -> type[SealEngine]:
    """The engine the genesis file names (``consensus.sealEngine``), from ``engines`` (name
    to class, supplied by whoever assembles the node: the chain knows no engine but its
    own no-proof one), configured with that genesis."""
    engine = engines.get(genesis.seal_engine)
    if engine is None:
        raise SealEngineUnavailable(
            f"no seal engine {genesis.seal_engine!r} in this build (known: {', '.join(sorted(engines)) or 'none'})"
        )
    return engine.configure(genesis=genesis)

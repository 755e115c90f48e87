"""Errors of the chain package.

Every error the chain raises derives from :class:`ChainError`. Rules of validation have
their own subclass that carries what was expected and what was found, so callers (the
CLI, the RPC, peers) can report precisely what was wrong without parsing messages.
"""
from __future__ import annotations

from typing import Any

from common.errors import PouwNodeError
from genesis.errors import GenesisError


class ChainError(PouwNodeError):
    """Root of every error raised by the chain package."""


class ValidationError(ChainError):
    """Something offered to the chain (a block, a transaction, a file) breaks a rule.

    ``expected`` and ``got`` are kept on the exception for callers; the message says both.
    """


# --- Genesis: genesis.errors.GenesisError, re-exported ------------------------------


class WrongChain(ChainError):
    """The database was initialised with another genesis: refuse to mix two chains."""


class SealEngineUnavailable(ChainError):
    """The genesis asks for a seal engine this build does not provide."""


# --- Block import: the stages of validation -------------------------------------------
#
# The classes mirror the stages of ``Chain.import_block`` (cheapest first). Every rule
# raises its own subclass so a peer or a test can tell exactly which rule a block broke.


class InvalidBlock(ValidationError):
    """A block breaks a consensus rule. The block is rejected and nothing is written."""


class MalformedBlock(InvalidBlock):
    """The bytes do not decode to a block (bad RLP, wrong field count or sizes)."""


class OversizedBlock(InvalidBlock):
    """The encoded block, one of its transactions or its work payload is too large."""


class InvalidHeader(InvalidBlock):
    """The header alone breaks a rule (field bounds, extra data, future timestamp...)."""


class UnknownParent(ChainError):
    """The block's parent is not known. Not invalid: an orphan that may become valid
    once its parent arrives. Kept apart from :class:`InvalidBlock` so peers are not
    punished for it."""

    def __init__(self, message: str, *, parent_hash: bytes) -> None:
        self.parent_hash = parent_hash
        super().__init__(message)


class InvalidBlockNumber(InvalidHeader):
    """number != parent.number + 1."""


class InvalidTimestamp(InvalidHeader):
    """Timestamp not after the parent's, or too far in the future."""


class InvalidGasLimit(InvalidHeader):
    """Gas limit outside the bounds allowed from the parent's gas limit."""


class InvalidGasUsed(InvalidBlock):
    """Gas used above the gas limit, or differing from the execution's."""


class InvalidBaseFee(InvalidHeader):
    """Base fee differs from the EIP-1559 value computed from the parent."""


class InvalidDifficulty(InvalidHeader):
    """Difficulty differs from the retarget rule of chain/difficulty.py."""


class InvalidSeal(InvalidHeader):
    """The seal fields fail the seal engine's header checks."""


class InvalidBody(InvalidBlock):
    """The body does not match the header (transaction root, uncles, withdrawals)."""


class InvalidTransactionRoot(InvalidBody):
    """Header transaction root differs from the root of the body's transactions."""


class InvalidBlockTransaction(InvalidBody):
    """A transaction in the body is not acceptable (type, signature, chain id, or it
    fails against the state: nonce, balance, gas)."""

    def __init__(self, message: str, *, index: int, expected: Any = None, got: Any = None) -> None:
        self.index = index
        super().__init__(f"transaction {index}: {message}", expected=expected, got=got)


class InvalidExecution(InvalidBlock):
    """A post-execution commitment in the header differs from the computed value."""


class InvalidStateRoot(InvalidExecution):
    """state_root differs from the state after execution."""


class InvalidReceiptRoot(InvalidExecution):
    """receipt_root differs from the root of the computed receipts."""


class InvalidBloom(InvalidExecution):
    """logs bloom differs from the union of the receipts' blooms."""


class InvalidWork(InvalidBlock):
    """The seal engine's payload check (the expensive work verification) failed."""


class WorkVerificationUnavailable(ChainError):
    """A transient failure while verifying work (e.g. the verifier ran out of memory).
    Not a verdict on the block: kept apart from :class:`InvalidWork`."""


class WorkBlobMissing(WorkVerificationUnavailable):
    """Verifying needs a blob (a dataset, a checkpoint state) this node lacks;
    ``blob_hash`` names it, so the caller can fetch it and try again."""

    def __init__(self, message: str, *, blob_hash: bytes) -> None:
        super().__init__(message)
        self.blob_hash = bytes(blob_hash)

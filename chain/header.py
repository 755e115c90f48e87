"""The block header of a proof-of-useful-work chain, and the template hash it seals.

Our header is py-evm's Prague header with ethash's ``mix_hash`` and ``nonce`` replaced
by the five fields of the training seal (see docs: PROTOCOL-BRIEF section 3). The
post-merge fields py-evm's Prague machinery reads are kept, pinned to fixed values,
so that py-evm executes our blocks unchanged:

===========================  ==========================================================
``uncles_hash``              always ``EMPTY_UNCLE_HASH`` (no uncles on this chain)
``withdrawals_root``         always the empty trie root (no beacon-chain withdrawals)
``blob_gas_used``            always 0 (blob transactions, type 3, are refused)
``excess_blob_gas``          always 0
``parent_beacon_block_root`` always 32 zero bytes (no beacon chain)
``requests_hash``            computed by py-evm's Prague post-processing; with no
                             deposit/withdrawal/consolidation contracts in genesis it
                             is sha256(b"") and import checks it like any root
===========================  ==========================================================

``difficulty`` is a real field: it is the work (in work units) the block claims, set by
``chain/difficulty.py``, and cumulative difficulty is the fork-choice score.

The EVM's PREVRANDAO (opcode 0x44) reads ``mix_hash``; here that is the *parent hash*,
which commits to the parent's work accumulator. It does not depend on this block's own
seal, so the result of executing a block's transactions is fixed by its template.
"""
from __future__ import annotations

from typing import Any, Callable, cast

import rlp
from eth.abc import BlockHeaderAPI
from eth.constants import (
    BLANK_ROOT_HASH,
    EMPTY_SHA256,
    EMPTY_UNCLE_HASH,
    GENESIS_PARENT_HASH,
    ZERO_ADDRESS,
    ZERO_HASH32,
)
from eth.rlp.sedes import hash32, trie_root, uint256
from eth.vm.forks.prague.blocks import PragueBlock
from eth.vm.forks.prague.receipts import PragueReceiptBuilder
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth.vm.forks.shanghai.withdrawals import Withdrawal
from eth_typing import Address, BlockNumber, Hash32
from eth_utils import encode_hex, keccak
from rlp.sedes import Binary, CountableList, big_endian_int, binary

address_strict = Binary.fixed_length(20)

ZERO_NONCE = b"\x00" * 8

SEAL_FIELDS = ("job_id", "start_checkpoint", "step_count", "final_state", "work_accumulator")
"""Header fields that depend on the outcome of the work (filled in by the miner last)."""


class PouwBlockHeader(rlp.Serializable, BlockHeaderAPI):
    """A block header whose seal is a trajectory of exact training steps."""

    fields = [
        ("parent_hash", hash32),
        ("uncles_hash", hash32),
        ("coinbase", address_strict),
        ("state_root", trie_root),
        ("transaction_root", trie_root),
        ("receipt_root", trie_root),
        ("bloom", uint256),
        ("difficulty", big_endian_int),
        ("block_number", big_endian_int),
        ("gas_limit", big_endian_int),
        ("gas_used", big_endian_int),
        ("timestamp", big_endian_int),
        ("extra_data", binary),
        # --- the seal (replaces ethash's mix_hash and nonce) ---
        ("job_id", hash32),
        ("start_checkpoint", hash32),
        ("step_count", big_endian_int),
        ("final_state", hash32),
        ("work_accumulator", hash32),
        # --- post-London fields kept for py-evm (values pinned, see module doc) ---
        ("base_fee_per_gas", big_endian_int),
        ("withdrawals_root", trie_root),
        ("blob_gas_used", big_endian_int),
        ("excess_blob_gas", big_endian_int),
        ("parent_beacon_block_root", hash32),
        ("requests_hash", hash32),
    ]

    # Docstrings of the seal fields (rlp.Serializable makes plain properties of fields,
    # so the reasons live here, next to the field list):
    #
    # job_id           -- which job the miner trained on. The seal seed commits to it so
    #                     work done for one job cannot be claimed for another.
    # start_checkpoint -- h_0, the commitment of the job's state the trajectory started
    #                     from. It must equal the job's checkpoint on chain: miners
    #                     continue the job's training rather than restart it, and the
    #                     seed commits to it.
    # step_count       -- t, the index of the winning step (the ticket). The coinbase is
    #                     paid t x price from the job's escrow; verification recomputes
    #                     step t always.
    # final_state      -- h_t, commitment of the state after step t: the job's new
    #                     checkpoint once the block is accepted.
    # work_accumulator -- a_t = H(a_{t-1}, h_t), chained over the whole trajectory from
    #                     a_0 = H(seal_seed, h_0). H(a_t) is the lottery ticket, and the
    #                     challenged step indices are drawn from it (never from the block
    #                     hash, which a miner could re-roll for free).

    def __init__(
        self,
        difficulty: int,
        block_number: BlockNumber,
        gas_limit: int,
        timestamp: int,
        coinbase: Address = ZERO_ADDRESS,
        parent_hash: Hash32 = ZERO_HASH32,
        uncles_hash: Hash32 = EMPTY_UNCLE_HASH,
        state_root: Hash32 = BLANK_ROOT_HASH,
        transaction_root: Hash32 = BLANK_ROOT_HASH,
        receipt_root: Hash32 = BLANK_ROOT_HASH,
        bloom: int = 0,
        gas_used: int = 0,
        extra_data: bytes = b"",
        job_id: Hash32 = ZERO_HASH32,
        start_checkpoint: Hash32 = ZERO_HASH32,
        step_count: int = 0,
        final_state: Hash32 = ZERO_HASH32,
        work_accumulator: Hash32 = ZERO_HASH32,
        base_fee_per_gas: int = 0,
        withdrawals_root: Hash32 = BLANK_ROOT_HASH,
        blob_gas_used: int = 0,
        excess_blob_gas: int = 0,
        parent_beacon_block_root: Hash32 = ZERO_HASH32,
        requests_hash: Hash32 = EMPTY_SHA256,
        **kwargs: Any,
    ) -> None:
        # py-evm passes ethash/post-merge fields around (mix_hash, nonce); they are not
        # part of this header, so they are accepted and dropped.
        kwargs.pop("mix_hash", None)
        kwargs.pop("nonce", None)
        if kwargs:
            raise TypeError(f"unknown header fields: {sorted(kwargs)}")
        # positionally, in the order of ``fields``: rlp's keyword path merges and checks
        # the names again on every header (several per transaction in a block)
        super().__init__(
            parent_hash, uncles_hash, coinbase, state_root, transaction_root, receipt_root, bloom,
            difficulty, block_number, gas_limit, gas_used, timestamp, extra_data,
            job_id, start_checkpoint, step_count, final_state, work_accumulator,
            base_fee_per_gas, withdrawals_root, blob_gas_used, excess_blob_gas, parent_beacon_block_root,
            requests_hash,
        )

    def __str__(self) -> str:
        return f"<PouwBlockHeader #{self.block_number} {encode_hex(self.hash)[2:10]}>"

    _hash: Hash32 | None = None

    @property
    def hash(self) -> Hash32:
        """keccak256 of the RLP of all fields, seal included: the block's identity."""
        if self._hash is None:
            self._hash = cast(Hash32, keccak(rlp.encode(self)))
        return self._hash

    @property
    def mining_hash(self) -> Hash32:
        """What the work commits to: the :func:`template_hash`."""
        return template_hash(self)

    @property
    def hex_hash(self) -> str:
        return encode_hex(self.hash)

    @property
    def is_genesis(self) -> bool:
        return self.parent_hash == GENESIS_PARENT_HASH and self.block_number == 0

    @property
    def mix_hash(self) -> Hash32:  # type: ignore[override]
        """PREVRANDAO for the EVM: the parent hash (see the module docstring)."""
        return self.parent_hash

    @property
    def nonce(self) -> bytes:  # type: ignore[override]
        """Not a field of this header; eight zero bytes for py-evm code that asks."""
        return ZERO_NONCE


class PouwBlock(PragueBlock):
    """py-evm's Prague block carrying our header. Uncles must be empty (enforced by
    the sedes); withdrawals must be empty (enforced by import)."""

    transaction_builder = PragueTransactionBuilder
    receipt_builder = PragueReceiptBuilder
    fields = [
        ("header", PouwBlockHeader),
        ("transactions", CountableList(transaction_builder)),
        ("uncles", CountableList(None, max_length=0)),
        ("withdrawals", CountableList(Withdrawal)),
    ]

    def copy(self, *args: object, **kwargs: object) -> "PouwBlock":
        """rlp's copy without deep-copying the fields it keeps: they are immutable rlp
        objects in tuples, and a block's every transaction was deep-copied on each copy
        (twice while finishing a block: about a tenth of building one)."""
        if args:
            return cast("PouwBlock", super().copy(*args, **kwargs))
        kept = {name: getattr(self, name) for name in self._meta.field_names if name not in kwargs}
        make = cast(Callable[..., "PouwBlock"], type(self))
        return make(**kept, **kwargs)


# --- The template hash ----------------------------------------------------------------

TEMPLATE_FIELDS = (
    "parent_hash",
    "block_number",
    "timestamp",
    "gas_limit",
    "extra_data",
    "coinbase",
    "difficulty",
    "base_fee_per_gas",
    "transaction_root",
)
"""The header fields fixed before any work starts, in the order they are hashed."""


def template_hash(header: BlockHeaderAPI) -> Hash32:
    """keccak256(rlp([parent_hash, block_number, timestamp, gas_limit, extra_data,
    coinbase, difficulty, base_fee_per_gas, transaction_root])).

    Integers are RLP big-endian scalars (no leading zeros), byte strings as they are.
    ``transaction_root`` commits to the ordered transaction list. Everything computed
    after the work (state root, receipts, gas used, bloom) and the seal fields are left
    out. Consensus derives ``seal_seed = H(template_hash, coinbase, job_id, h_0)`` from
    it, so work cannot be stockpiled across blocks, moved to another coinbase, or reused
    for a sibling block with other transactions.
    """
    return cast(Hash32, keccak(rlp.encode([getattr(header, name) for name in TEMPLATE_FIELDS])))

"""Our virtual machine: py-evm's Prague fork, our header, our seal, plus CLZ.

Why Prague: PUSH0 (Shanghai), MCOPY and TSTORE/TLOAD (Cancun) and the Prague call
rules are what current Solidity output uses. Why CLZ too: solc 0.8.37 (npm ``solc``,
latest at the time of writing) targets **osaka** by default, and osaka output may use
the CLZ opcode (0x1e, EIP-7939). We add CLZ to the opcode table so that contracts
compiled with default settings run. No other Osaka change is taken (no new
precompiles, no modexp repricing, no transaction gas cap): those are not emitted by
compilers and would need their own review.

What differs from py-evm's PragueVM:

* blocks use :class:`chain.header.PouwBlockHeader` (seal fields instead of mix_hash and
  nonce; difficulty is real);
* ``create_header_from_parent`` computes the base fee with EIP-1559 from the parent;
  difficulty needs the parent's ancestors (``chain/difficulty.py``), so the chain
  computes it and passes it in (``Chain.difficulty_for_child``);
* block rewards come from the seal engine (``SealEngine.apply_block_rewards``), which
  applies the genesis reward schedule by default;
* :meth:`PouwVM.execute_block` executes a block without trusting any of its
  post-execution fields, and returns the block as computed so that the chain can
  compare field by field (py-evm's own ``import_block`` would copy mix_hash/nonce).

Header and body validation live in ``chain/chain.py`` (staged, with typed errors);
this class only executes.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, cast

from eth import constants
from eth.abc import BlockAPI, BlockHeaderAPI, ComputationAPI, ReceiptAPI, SignedTransactionAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA256, EMPTY_UNCLE_HASH, ZERO_HASH32
from eth.db.trie import make_trie_root_and_nodes
from eth_typing import Hash32
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.opcodes import PRAGUE_OPCODES
from eth.vm.forks.prague.state import PragueState
from eth.vm.opcode import as_opcode

from eth_utils import ValidationError as EthValidationError
from eth_utils import get_extended_debug_logger

from chain.account_db import FastAccountDB
from chain.errors import InvalidBlockTransaction
from chain.header import PouwBlock, PouwBlockHeader
from chain.sealing import NoProofEngine, SealEngine

# --- CLZ (EIP-7939) ------------------------------------------------------------------

CLZ = 0x1E
CLZ_GAS = constants.GAS_LOW
"""5 gas, as in the final EIP-7939 (the price of MUL)."""


def clz(computation: ComputationAPI) -> None:
    """Count leading zero bits of the top stack word; 256 for zero."""
    value = computation.stack_pop1_int()
    computation.stack_push_int(256 - value.bit_length())


POUW_OPCODES = {
    **PRAGUE_OPCODES,
    CLZ: as_opcode(logic_fn=clz, mnemonic="CLZ", gas_cost=CLZ_GAS),
}


class PouwComputation(PragueComputation):
    """Prague computation with CLZ. Precompiles beyond Prague's come from the chain's seal
    engine (``SealEngine.extra_precompiles``: the pouw engine's job registry, configured
    with its genesis), merged in by :func:`build_vm_class`."""

    opcodes = POUW_OPCODES


class PouwState(PragueState):
    computation_class = PouwComputation
    account_db_class = FastAccountDB
    # py-evm's BaseState.logger looks its logger up by name on every use (a few times
    # per transaction, even with logging off): one lookup, here, is enough
    logger = get_extended_debug_logger("eth.vm.state.PouwState")


# --- Header construction ----------------------------------------------------------------


def create_pouw_header_from_parent(parent: Optional[BlockHeaderAPI], **fields: Any) -> PouwBlockHeader:
    """A header for a child of ``parent`` with the derived fields it can know.

    Derived fields: number, parent hash, state root (the parent's, until execution),
    base fee (EIP-1559), gas limit (the parent's). The caller supplies coinbase,
    timestamp, extra data and the difficulty, which the retarget reads from the
    parent's ancestors (``Chain.difficulty_for_child``); left out, it is the parent's
    (enough for a header only used to execute calls: PREVRANDAO reads ``mix_hash``). A
    passed ``base_fee_per_gas`` is respected (tests build invalid blocks).
    """
    fields.pop("mix_hash", None)
    fields.pop("nonce", None)
    if parent is None:
        return PouwBlockHeader(**fields)
    fields.setdefault("timestamp", parent.timestamp + 1)
    fields.setdefault("block_number", parent.block_number + 1)
    fields.setdefault("parent_hash", parent.hash)
    fields.setdefault("state_root", parent.state_root)
    fields.setdefault("gas_limit", parent.gas_limit)
    fields.setdefault("difficulty", parent.difficulty)
    fields.setdefault("base_fee_per_gas", calculate_expected_base_fee_per_gas(parent))
    return PouwBlockHeader(**fields)


# --- Per-chain configuration ---------------------------------------------------------------


def build_vm_class(engine_class: type[SealEngine]) -> type["PouwVM"]:
    """Our VM configured for one chain: its seal engine, and the engine's extra
    precompiles (if any) merged into the computation class."""
    state_class: type[PouwState] = PouwState
    extra = dict(engine_class.extra_precompiles())
    if extra:
        computation_class = type(
            "PouwComputationWithEngine",
            (PouwComputation,),
            {"_precompiles": {**PouwComputation.get_precompiles(), **extra}},
        )
        state_class = type("PouwStateWithEngine", (PouwState,), {"computation_class": computation_class})
    return PouwVM.configure(
        consensus_class=engine_class,
        _state_class=state_class,
    )


# --- The VM --------------------------------------------------------------------------------


class PouwVM(PragueVM):
    """Prague + CLZ, with our header, seal engine and reward hook.

    Configure per chain: ``PouwVM.configure(consensus_class=Engine)`` (``build_vm_class``).
    """

    fork = "pouw-prague"
    block_class = PouwBlock
    _state_class = PouwState
    consensus_class = NoProofEngine

    @classmethod
    def create_header_from_parent(  # type: ignore[override]
        cls, parent_header: Optional[BlockHeaderAPI], **header_params: Any
    ) -> BlockHeaderAPI:
        return create_pouw_header_from_parent(parent_header, **header_params)

    def configure_header(self, **header_params: Any) -> BlockHeaderAPI:  # type: ignore[override]
        header_params.pop("mix_hash", None)
        header_params.pop("nonce", None)
        header = self.get_header().copy(**header_params)
        self._block = self.get_block().copy(header=header)
        return header

    @classmethod
    def validate_header(cls, header: BlockHeaderAPI, parent_header: BlockHeaderAPI) -> None:
        """Header rules live in chain/chain.py (staged, typed errors); py-evm's Paris
        rules (difficulty == 0, nonce == 0) do not apply to this chain."""

    def _assign_block_rewards(self, block: BlockAPI) -> None:
        engine = self._consensus
        assert isinstance(engine, SealEngine)
        engine.apply_block_rewards(self.state, block)

    def execute_block(self, block: BlockAPI) -> Tuple[BlockAPI, Tuple[ReceiptAPI, ...]]:
        """Execute ``block`` on top of the VM's parent state; return it as computed.

        Only the template fields (coinbase, timestamp, ...) and the seal fields are
        taken from the block; every post-execution field is recomputed from scratch:
        state root, transaction and receipt roots, gas used, bloom, requests hash.
        The state changes are persisted into ``self.chaindb.db`` (the import's batch).
        """
        header = self.begin_block(block.header)
        receipts = []
        for index, transaction in enumerate(block.transactions):
            try:
                receipt, _ = self.apply_transaction(header, transaction)
            except EthValidationError as exc:  # nonce, balance, gas, fee cap...
                raise InvalidBlockTransaction(str(exc), index=index) from None
            header = self.add_receipt_to_header(header, receipt)
            receipts.append(receipt)
        return self.finish_block(header, block.transactions, receipts), tuple(receipts)

    def begin_block(self, block_header: BlockHeaderAPI) -> BlockHeaderAPI:
        """Start a block: reset every post-execution field of ``block_header``, build
        the parent's state under it and run the fork's pre-block system updates.

        Returns the header to apply transactions with (``apply_transaction`` then
        ``add_receipt_to_header`` per transaction). Seal fields do not reach execution
        (PREVRANDAO reads the parent hash), so a template can be executed before its
        work is done and sealed after (:meth:`finish_block`), with the same result as
        :meth:`execute_block` on the sealed block.
        """
        base = self.get_header()  # from create_header_from_parent: parent's state root
        header = block_header.copy(
            state_root=base.state_root,
            transaction_root=BLANK_ROOT_HASH,
            receipt_root=BLANK_ROOT_HASH,
            bloom=0,
            gas_used=0,
            uncles_hash=EMPTY_UNCLE_HASH,
            withdrawals_root=BLANK_ROOT_HASH,
            blob_gas_used=0,
            excess_blob_gas=0,
            parent_beacon_block_root=ZERO_HASH32,
            requests_hash=EMPTY_SHA256,
        )
        self._initial_header = header
        self._block = self.get_block_class()(header, transactions=[], uncles=[], withdrawals=[])
        self._state = self.build_state(self.chaindb.db, header, self.chain_context, self.previous_hashes or ())
        self.block_preprocessing(self._block)
        return header

    def finish_block(
        self,
        header: BlockHeaderAPI,
        transactions: Sequence[SignedTransactionAPI],
        receipts: Sequence[ReceiptAPI],
        *,
        tx_trie: Optional[Tuple[Hash32, Dict[Hash32, bytes]]] = None,
    ) -> BlockAPI:
        """End a block begun with :meth:`begin_block`: commit the transactions and
        receipts, run the post-block system calls, apply the engine's rewards (which
        read the seal fields of ``header``) and persist the state; the computed block.

        What py-evm's ``set_block_transactions_and_withdrawals`` does (there are no
        withdrawals), taking the transaction trie from ``tx_trie`` when the builder
        already made it for the template's header."""
        tx_root, tx_nodes = tx_trie if tx_trie is not None else make_trie_root_and_nodes(transactions)
        self.chaindb.persist_trie_data_dict(tx_nodes)
        receipt_root, receipt_nodes = make_trie_root_and_nodes(receipts)
        self.chaindb.persist_trie_data_dict(receipt_nodes)
        filled = self.get_block().copy(
            transactions=transactions, header=header.copy(transaction_root=tx_root, receipt_root=receipt_root)
        )
        processed = self.block_postprocessing(filled, receipts)
        return self.finalize_block(processed).block

    def block_postprocessing(self, block: BlockAPI, receipts: Optional[Sequence[ReceiptAPI]] = None) -> BlockAPI:
        """Prague's post-block requests. py-evm reads the block's receipts back from the
        database for the deposit requests (EIP-6110); ``receipts``, when given, are the
        ones just stored under the block's receipt root, and py-evm's code reads them
        from here instead (a tenth of building a small block went to that read)."""
        if receipts is None:
            return super().block_postprocessing(block)
        return super().block_postprocessing(cast(BlockAPI, _WithReceipts(block, tuple(receipts))))


class _WithReceipts:
    """A block whose ``get_receipts`` answers with the receipts at hand (everything else,
    ``block_requests`` included, is the block's own): what py-evm's Prague
    post-processing is given by :meth:`PouwVM.block_postprocessing`."""

    def __init__(self, block: BlockAPI, receipts: Tuple[ReceiptAPI, ...]) -> None:
        self._block = block
        self._receipts = receipts

    def get_receipts(self, chaindb: object) -> Tuple[ReceiptAPI, ...]:
        return self._receipts

    def __getattr__(self, name: str) -> object:
        return getattr(self._block, name)

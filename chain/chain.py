"""The node's chain: open a datadir, import blocks in validation stages, build blocks.

``Chain.import_block`` reads like a checklist, cheapest checks first, so that a bad
block costs as little as possible before it is refused:

1. decode: size limits, RLP; then the header alone (field bounds, extra data, gas used
   <= gas limit, timestamp not in the future, pinned post-merge fields) and the seal
   engine's header-only check;
2. header against parent: parent known (else :class:`UnknownParent`, an orphan, not an
   invalid block), number, timestamp, gas limit bounds, EIP-1559 base fee,
   difficulty (``chain/difficulty.py``), then the seal engine's extension check;
3. body against header: no withdrawals, transaction root, each transaction's size,
   type (0, 1, 2 only), signature and chain id;
4. the seal engine's work check with the block's payload, on the parent state: its
   cheap checks (hashing only), then the recomputation of the trajectory's segments.
   It comes BEFORE execution, so a block with forged work never costs the node an
   EVM execution (a forger can grind the cheap checks, never the recomputation);
5. execution on the parent state: every transaction must apply (nonce, balance, gas),
   then gas used, bloom, receipt root, state root and requests hash must equal the
   computed ones.

Everything one import writes (state trie nodes, header, body, receipts, score,
canonical pointers, transaction lookups, the work payload) goes into ONE batch view
of the database that is committed once, at the end, as one LevelDB write batch. A
refused block, or a crash at any instant, leaves the database as it was.

Fork choice is py-evm's: the head moves only to a block of strictly greater score
(cumulative difficulty), so ties go to the block seen first. On a reorg, the
transactions of abandoned blocks that the new branch lacks go back to the tx pool.
"""
from __future__ import annotations

import collections
import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, Iterator, Optional, Sequence, TypeVar, Union

import rlp
from eth.abc import (
    AtomicDatabaseAPI,
    BlockAPI,
    BlockHeaderAPI,
    DatabaseAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    TransactionBuilderAPI,
)
from eth.consensus.context import ConsensusContext
from eth.constants import (
    BLANK_ROOT_HASH,
    EMPTY_UNCLE_HASH,
    ZERO_HASH32,
)
from eth._utils.headers import compute_gas_limit_bounds
from eth.db.chain import ChainDB
from eth.db.trie import make_trie_root_and_nodes
from eth.exceptions import CanonicalHeadNotFound, HeaderNotFound, TransactionNotFound
from eth.validation import validate_word
from eth.vm.chain_context import ChainContext
from eth.vm.forks.london.headers import calculate_expected_base_fee_per_gas
from eth_typing import Address, BlockNumber, Hash32
from eth_utils import ValidationError as EthValidationError
from eth_utils import encode_hex

from chain import schema
from chain.db import BatchView, batch_view
from chain.errors import (
    ChainError,
    InvalidBaseFee,
    InvalidBlockNumber,
    InvalidBlockTransaction,
    InvalidBloom,
    InvalidBody,
    InvalidDifficulty,
    InvalidExecution,
    InvalidGasLimit,
    InvalidGasUsed,
    InvalidHeader,
    InvalidReceiptRoot,
    InvalidSeal,
    InvalidStateRoot,
    InvalidTimestamp,
    InvalidTransactionRoot,
    InvalidWork,
    MalformedBlock,
    OversizedBlock,
    UnknownParent,
    WorkBlobMissing,
    WrongChain,
)
from chain.header import SEAL_FIELDS, PouwBlock, PouwBlockHeader, template_hash
from chain.transactions import (
    InvalidTransaction,
    OversizedTransaction,
    validate_chain_id,
    validate_transaction,
)
from chain.sealing import NoProofEngine, SealEngine, WorkContext, engine_for_genesis
from chain.state_reader import StateReader
from chain.vm import PouwVM, build_vm_class
from chain.difficulty import BlockPoint, next_difficulty, window_pairs
from genesis.format import MAX_EXTRA_DATA_BYTES, GenesisConfig

MAX_FUTURE_SECONDS = 15
"""A block whose timestamp is further ahead of our clock is refused (it may be
offered again later). Bounds how far a miner can push difficulty down by lying."""
BLOCK_CACHE = 8
"""Decoded blocks, and receipt lists, kept by block hash (most recent reads: the head
and the few blocks below it are what receipt polls and calls on ``latest`` read). A
full block (about 1,400 transfers at a 30 M gas limit) decodes to about 1.3 MB of
Python objects (measured), its receipts to about as much again."""
POINT_LINKS = 4096
"""Blocks whose (timestamp, score) and parent hash retargets keep (cleared when full):
a retarget walks window + smoothing blocks (at most 1,256); about 250 bytes each."""
T = TypeVar("T")

MAX_SEALED_KEPT = 8
"""Sealed blocks whose executed state the chain keeps for their import (a miner seals
one block per round and imports it at once; the bound covers stray seals)."""

UINT64_LIMIT = 2**64
UINT256_LIMIT = 2**256


# --- Data types ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    """What an import did. Hashes are block hashes, oldest first."""

    imported: BlockAPI
    new_canonical: tuple[Hash32, ...]
    """Blocks that became canonical (the imported one and, on a reorg, its branch)."""
    old_canonical: tuple[Hash32, ...]
    """Blocks that stopped being canonical (non-empty only on a reorg)."""
    reorg: bool
    already_known: bool = False


@dataclass(frozen=True)
class Seal:
    """The outcome of the work, to be written into a template's header."""

    job_id: Hash32 = ZERO_HASH32
    start_checkpoint: Hash32 = ZERO_HASH32
    step_count: int = 0
    final_state: Hash32 = ZERO_HASH32
    work_accumulator: Hash32 = ZERO_HASH32

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SEAL_FIELDS}


#: A transaction trie's root and its nodes (``make_trie_root_and_nodes``).
TrieRootAndNodes = tuple[Hash32, dict[Hash32, bytes]]
_ExecutedTemplate = tuple[BatchView, PouwVM, BlockHeaderAPI, tuple[ReceiptAPI, ...], TrieRootAndNodes]


class TemplateExecution:
    """A template's transactions, already executed, waiting for the seal.

    :meth:`Chain.build_template` executes the transactions once to choose them; this
    keeps that VM (its state, receipts and the batch its writes go to) so that
    :meth:`Chain.seal_block` only finishes the block: rewards, which read the seal,
    and the state root. Single use: a second seal of the same template executes
    from scratch. Owned by one thread (the miner's) until taken.
    """

    def __init__(self, view: BatchView, vm: PouwVM, header: BlockHeaderAPI, receipts: Sequence[ReceiptAPI],
                 tx_trie: TrieRootAndNodes) -> None:
        self._run: Optional[_ExecutedTemplate] = (view, vm, header, tuple(receipts), tx_trie)
        self._lock = threading.Lock()

    def take(self) -> Optional[_ExecutedTemplate]:
        with self._lock:
            run, self._run = self._run, None
        return run

    def discard(self) -> None:
        run = self.take()
        if run is not None:
            run[0].discard()


@dataclass(frozen=True)
class BlockTemplate:
    """A block before its work: header without seal (and without post-execution
    fields), and the ordered transactions it commits to."""

    header: BlockHeaderAPI
    transactions: tuple[SignedTransactionAPI, ...]
    execution: Optional[TemplateExecution] = field(default=None, compare=False, repr=False)
    """The transactions' execution, reused by the seal (absent: the seal executes)."""

    @property
    def template_hash(self) -> Hash32:
        return template_hash(self.header)


SealFunction = Callable[[BlockTemplate], "tuple[Seal, Optional[bytes]]"]


@dataclass(frozen=True)
class TransactionLocation:
    transaction: SignedTransactionAPI
    block_hash: Hash32
    index: int


class HeadStateView:
    """A snapshot of the head for the tx pool (``chain.txpool.StateView``): account
    nonces and balances, and the base fee and gas limit of the *next* block."""

    def __init__(self, head: BlockHeaderAPI, state: "StateReader") -> None:
        self.head = head
        self.state = state

    def get_nonce(self, address: bytes) -> int:
        return self.state.get_nonce(Address(address))

    def get_balance(self, address: bytes) -> int:
        return self.state.get_balance(Address(address))

    def base_fee(self) -> int:
        return calculate_expected_base_fee_per_gas(self.head)

    def block_gas_limit(self) -> int:
        return self.head.gas_limit


# --- Storage adapter -------------------------------------------------------------------


@functools.lru_cache(256)
def decode_header(header_rlp: bytes) -> PouwBlockHeader:
    return rlp.decode(header_rlp, sedes=PouwBlockHeader)


class PouwChainDB(ChainDB):
    """py-evm's ChainDB, decoding headers as :class:`PouwBlockHeader` (py-evm's own
    decoder only knows Ethereum's header layouts)."""

    @staticmethod
    def _get_block_header_by_hash(db: DatabaseAPI, block_hash: Hash32) -> BlockHeaderAPI:
        validate_word(block_hash, title="Block Hash")
        try:
            header_rlp = db[block_hash]
        except KeyError:
            raise HeaderNotFound(f"No header with hash {encode_hex(block_hash)} found") from None
        return decode_header(header_rlp)

    @classmethod
    def _persist_block(
        cls, db: DatabaseAPI, block: BlockAPI, genesis_parent_hash: Hash32
    ) -> tuple[tuple[Hash32, ...], tuple[Hash32, ...]]:
        """py-evm's persist, plus what it leaves out on a reorg: the transaction
        lookups of abandoned blocks are removed, and the abandoned blocks reported
        include those above the new head's number (py-evm reports only the heights the
        new branch covers, and never deletes their transaction lookups)."""
        try:
            old_head: Optional[BlockHeaderAPI] = cls._get_canonical_head(db)
        except CanonicalHeadNotFound:
            old_head = None
        new_hashes, _ = super()._persist_block(db, block, genesis_parent_hash)
        if not new_hashes or old_head is None or block.header.parent_hash == old_head.hash:
            return new_hashes, ()
        abandoned = cls._abandoned_branch(db, old_head)
        for header in abandoned:
            for tx_hash in cls._get_block_transaction_hashes(db, header):
                cls._remove_transaction_from_canonical_chain(db, tx_hash)
        for block_hash in new_hashes:  # re-add: a transaction may be on both branches
            header = cls._get_block_header_by_hash(db, block_hash)
            for index, tx_hash in enumerate(cls._get_block_transaction_hashes(db, header)):
                cls._add_transaction_to_canonical_chain(db, tx_hash, header, index)
        return new_hashes, tuple(header.hash for header in abandoned)

    @classmethod
    def _abandoned_branch(cls, db: DatabaseAPI, old_head: BlockHeaderAPI) -> list[BlockHeaderAPI]:
        """Headers from ``old_head`` down to (excluding) the first canonical one, oldest first."""
        abandoned = []
        header = old_head
        while True:
            try:
                if cls._get_canonical_block_hash(db, header.block_number) == header.hash:
                    break
            except HeaderNotFound:
                pass
            abandoned.append(header)
            header = cls._get_block_header_by_hash(db, header.parent_hash)
        return abandoned[::-1]


# --- The chain -------------------------------------------------------------------------


class RecentByHash(Generic[T]):
    """The ``size`` most recently read values of something immutable by hash (a block,
    its receipts), shared by threads. A failed read is not kept."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: "collections.OrderedDict[bytes, T]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes, read: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = read()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


class Chain:
    """A chain over one database. Create with :meth:`Chain.open`."""

    def __init__(
        self,
        db: AtomicDatabaseAPI,
        genesis: GenesisConfig,
        engine_class: type[SealEngine],
        txpool: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.genesis = genesis
        self.engine_class = engine_class
        self.vm_class: type[PouwVM] = build_vm_class(engine_class)
        self.engine = engine_class(ConsensusContext(db))
        self.chain_context = ChainContext(genesis.chain_id)
        self.chaindb = PouwChainDB(db)
        self.txpool = txpool
        self.clock = clock
        self._write_lock = threading.RLock()
        # blocks this chain sealed, with the batch holding their executed state: their
        # import commits it instead of executing again (bounded; oldest discarded)
        self._sealed: "collections.OrderedDict[Hash32, BatchView]" = collections.OrderedDict()
        self._sealed_lock = threading.Lock()
        # Blocks and receipts by block hash never change: the most recent reads are kept
        # decoded (a receipt poll or eth_call on the head would otherwise decode the
        # same block again and again). Bounded: BLOCK_CACHE of each.
        self._blocks: RecentByHash[BlockAPI] = RecentByHash(BLOCK_CACHE)
        self._receipts: RecentByHash[tuple[ReceiptAPI, ...]] = RecentByHash(BLOCK_CACHE)
        # A child's difficulty is fixed by its parent's hash (the retarget window is that
        # block's own ancestry): a block is built on a parent, then imported against it.
        self._child_difficulty: RecentByHash[int] = RecentByHash(BLOCK_CACHE)
        # block hash -> ((timestamp, score), parent hash), all fixed by the hash: a
        # retarget walks ~window + smoothing of them, the next block's retarget the same
        # ones shifted by one (a plain dict: each operation atomic under the GIL)
        self._point_links: dict[bytes, tuple[BlockPoint, bytes]] = {}
        # Readers of recent states (chain/state_reader.py), by state root, with the
        # accounts they decoded: the pool and the RPC read the head's again and again.
        self._readers: RecentByHash[StateReader] = RecentByHash(BLOCK_CACHE)

    # --- opening --------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        db: AtomicDatabaseAPI,
        genesis_config: GenesisConfig,
        *,
        seal_engine: Optional[type[SealEngine]] = None,
        txpool: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> "Chain":
        """Open the chain stored in ``db``, writing the genesis block if ``db`` is empty.

        ``seal_engine``: the engine class (configured here with the genesis). The chain
        knows only its no-proof engine, used when omitted for a genesis that asks for it;
        any other engine is passed in by whoever assembles the node (``node.engines``).
        Refuses a database whose genesis differs.
        """
        if seal_engine is not None:
            engine = seal_engine.configure(genesis=genesis_config)
        else:
            engine = engine_for_genesis(genesis_config, {"noproof": NoProofEngine})
        chain = cls(db, genesis_config, engine, txpool=txpool, clock=clock)
        chain._init_or_check_genesis()
        return chain

    def _init_or_check_genesis(self) -> None:
        meta = schema.read_metadata(self.db)
        if meta is None and schema.canonical_head_hash() in self.db:
            raise WrongChain("datadir holds blocks but no chain metadata: not a pouw-node datadir")
        view = batch_view(self.db)
        try:
            genesis_block = self._write_genesis(view)
            if meta is None:
                schema.write_metadata(view, self.genesis.chain_id, genesis_block.hash)
                view.commit()
                return
        finally:
            if not view.closed:
                view.discard()
        if meta.genesis_hash != genesis_block.hash:
            raise WrongChain(
                f"datadir belongs to another chain (genesis {encode_hex(meta.genesis_hash)} "
                f"!= {encode_hex(genesis_block.hash)})"
            )
        if meta.chain_id != self.genesis.chain_id:
            raise WrongChain(
                f"datadir belongs to another chain (chain id {meta.chain_id} != {self.genesis.chain_id})"
            )
        if meta.schema_version != schema.SCHEMA_VERSION:
            raise WrongChain(
                f"datadir schema version {meta.schema_version} != {schema.SCHEMA_VERSION}"
            )

    def _write_genesis(self, db: AtomicDatabaseAPI) -> BlockAPI:
        """Write the genesis state and block into ``db``; return the block."""
        state = self.vm_class.build_state(db, self.genesis_header_template(), self.chain_context)
        for address, account in self.genesis.alloc.items():
            state.set_balance(address, account.balance)
            state.set_nonce(address, account.nonce)
            state.set_code(address, account.code)
            for slot, value in account.storage.items():
                state.set_storage(address, slot, value)
        state.persist()
        header = self.genesis_header_template().copy(state_root=state.state_root)
        block = PouwBlock(header, transactions=[], uncles=[], withdrawals=[])
        PouwChainDB(db).persist_block(block)
        return block

    def genesis_header_template(self) -> PouwBlockHeader:
        g = self.genesis
        return PouwBlockHeader(
            difficulty=g.initial_difficulty,
            block_number=BlockNumber(0),
            gas_limit=g.gas_limit,
            timestamp=g.timestamp,
            extra_data=g.extra_data,
            base_fee_per_gas=g.base_fee_per_gas,
            state_root=BLANK_ROOT_HASH,
            # The genesis block has no work: its accumulator commits to the chain's
            # parameters instead, so any change of them changes the genesis hash.
            work_accumulator=Hash32(g.parameters_hash),
        )

    # --- import -------------------------------------------------------------------------

    @property
    def write_lock(self) -> "threading.RLock":
        """The one lock over the chain's writes: every import holds it (reentrant). A
        producer that must build on the head and import with no other block in between
        (automine) holds it around both; nobody else needs a lock to import, and no
        reader ever takes it (reads see committed batches only)."""
        return self._write_lock

    def import_block(
        self, block_or_rlp: Union[BlockAPI, bytes], payload: Optional[bytes] = None
    ) -> ImportResult:
        """Validate ``block_or_rlp`` in stages and, if valid, store it atomically.

        Raises a subclass of :class:`chain.errors.InvalidBlock` (nothing written),
        :class:`UnknownParent` for an orphan, or a transient error from the engine.
        """
        with self._write_lock:
            block = decode_block(block_or_rlp, self.genesis)                     # stage 1
            if self.chaindb.header_exists(block.hash):
                return ImportResult(block, (), (), reorg=False, already_known=True)
            validate_header_alone(block.header, self.genesis, self.clock())
            validate_payload_size(payload, self.engine)
            self._seal_check(self.engine.validate_seal, block.header)
            parent = self._get_parent(block.header)                              # stage 2
            validate_header_against_parent(block.header, parent, self.genesis, self.difficulty_for_child(parent))
            self._seal_check(self.engine.validate_seal_extension, block.header, (parent,))
            validate_body(block, self.genesis)                                   # stage 3
            executed = self._take_sealed(block.hash)  # our own block: executed when sealed
            with executed if executed is not None else batch_view(self.db) as view:
                chaindb = PouwChainDB(view)
                self._verify_work(chaindb, parent, block, payload)               # stage 4
                if executed is None:
                    computed = self._execute(chaindb, parent, block)             # stage 5
                    validate_execution(block.header, computed.header)
                new_canonical, old_canonical = chaindb.persist_block(block)
                if payload is not None:
                    view[schema.work_payload(block.hash)] = payload
            # committed: one write batch
            result = ImportResult(
                block, tuple(new_canonical), tuple(old_canonical), reorg=bool(old_canonical)
            )
            self._update_txpool(result)
            return result

    def _get_parent(self, header: BlockHeaderAPI) -> BlockHeaderAPI:
        try:
            return self.chaindb.get_block_header_by_hash(header.parent_hash)
        except HeaderNotFound:
            raise UnknownParent(
                f"parent {encode_hex(header.parent_hash)} of block #{header.block_number} is unknown",
                parent_hash=header.parent_hash,
            ) from None

    @staticmethod
    def _seal_check(check: Callable[..., None], *args: Any) -> None:
        """Engines may raise py-evm's ValidationError; report it as InvalidSeal."""
        try:
            check(*args)
        except InvalidSeal:
            raise
        except EthValidationError as exc:
            raise InvalidSeal(f"seal: {exc}") from exc

    def _vm(self, chaindb: PouwChainDB, parent: BlockHeaderAPI, header: BlockHeaderAPI) -> PouwVM:
        base = self.vm_class.create_header_from_parent(
            parent, timestamp=header.timestamp, coinbase=header.coinbase
        )
        return self.vm_class(
            header=base,
            chaindb=chaindb,
            chain_context=self.chain_context,
            consensus_context=ConsensusContext(chaindb.db),
        )

    def _execute(self, chaindb: PouwChainDB, parent: BlockHeaderAPI, block: BlockAPI) -> BlockAPI:
        computed, _ = self._vm(chaindb, parent, block.header).execute_block(block)
        return computed

    def _verify_work(
        self, chaindb: PouwChainDB, parent: BlockHeaderAPI, block: BlockAPI, payload: Optional[bytes]
    ) -> None:
        if payload is None and self.engine.payload_required(block.header):
            raise InvalidWork("block comes without its work payload", expected="payload", got=None)
        context = WorkContext(parent, lambda: self._state(chaindb.db, parent))
        self.engine.verify_work(block.header, payload, context)
        for tx in block.transactions:  # blobs execution will read (fraud proofs' states)
            missing = self.engine.missing_transaction_blobs(tx)
            if missing:
                raise WorkBlobMissing(f"blob 0x{missing[0].hex()} read by transaction 0x{tx.hash.hex()} "
                                      "is not on this node", blob_hash=missing[0])

    def _keep_sealed(self, block_hash: Hash32, view: BatchView) -> None:
        with self._sealed_lock:
            self._sealed[block_hash] = view
            while len(self._sealed) > MAX_SEALED_KEPT:
                _, oldest = self._sealed.popitem(last=False)
                oldest.discard()

    def _take_sealed(self, block_hash: Hash32) -> Optional[BatchView]:
        """The batch holding the state of a block this chain sealed, if still kept.

        Sound for any block with that hash: the hash fixes the header (so the state
        root, receipts root and gas used that execution gave) and the body was checked
        against the header's transaction root in stage 3."""
        with self._sealed_lock:
            return self._sealed.pop(block_hash, None)

    def _update_txpool(self, result: ImportResult) -> None:
        """Tell the pool about the new head; after a reorg, hand back the transactions
        of abandoned blocks that the new branch does not contain (the pool re-checks
        them against the new head and skips those no longer valid)."""
        if self.txpool is None or not result.new_canonical:
            return
        self.txpool.on_new_head(self.state_view())
        if result.reorg:
            kept = {
                tx.hash
                for block_hash in result.new_canonical
                for tx in self.get_block_by_hash(block_hash).transactions
            }
            dropped = [
                tx
                for block_hash in result.old_canonical
                for tx in self.get_block_by_hash(block_hash).transactions
                if tx.hash not in kept
            ]
            if dropped:
                self.txpool.readd(dropped)

    # --- building -----------------------------------------------------------------------

    def build_template(
        self,
        coinbase: Address,
        *,
        timestamp: Optional[int] = None,
        transactions: Optional[Sequence[SignedTransactionAPI]] = None,
        extra_data: bytes = b"",
        parent_hash: Optional[Hash32] = None,
    ) -> BlockTemplate:
        """Phase one of mining: fix the header's template fields and the transactions.

        ``transactions`` given: all are included in order, and one that does not apply
        raises :class:`InvalidBlockTransaction`. Omitted: the pool's ``pending()`` are
        tried in order and those that do not apply are skipped. ``timestamp`` defaults
        to the clock (at least parent + 1). ``parent_hash`` defaults to the head.
        """
        parent = self.head() if parent_hash is None else self.chaindb.get_block_header_by_hash(parent_hash)
        if timestamp is None:
            timestamp = max(int(self.clock()), parent.timestamp + 1)
        strict = transactions is not None
        if transactions is None:
            transactions = list(self.txpool.pending()) if self.txpool is not None else []
        transactions = [normalize_transaction(tx) for tx in transactions]
        header = self.vm_class.create_header_from_parent(
            parent, coinbase=coinbase, timestamp=timestamp, extra_data=extra_data,
            difficulty=self.difficulty_for_child(parent),
        )
        view = batch_view(self.db)
        try:
            vm = self._vm(PouwChainDB(view), parent, header)
            executed_header = vm.begin_block(header)
            included, receipts, executed_header, reverted = select_transactions(
                vm, executed_header, transactions, strict, self.genesis)
        except BaseException:
            view.discard()
            raise
        tx_trie = make_trie_root_and_nodes(included)
        tx_root = tx_trie[0]
        execution: Optional[TemplateExecution] = None
        if reverted:  # rare (the pool re-checks on every head): the seal executes afresh
            view.discard()
        else:
            execution = TemplateExecution(view, vm, executed_header, receipts, tx_trie)
        return BlockTemplate(header.copy(transaction_root=tx_root), tuple(included), execution)

    def seal_block(self, template: BlockTemplate, seal: Seal) -> BlockAPI:
        """Phase two: write the seal into the template and finish its execution, giving
        the final block (state root, receipts, gas used, bloom computed).

        Nothing is stored: the executed state is kept (a few blocks, in memory) for the
        block's import, which then neither executes it again nor needs the template."""
        header = template.header.copy(**seal.fields())
        run = template.execution.take() if template.execution is not None else None
        if run is None:  # sealed before, or built elsewhere: execute from scratch
            block = PouwBlock(header, transactions=list(template.transactions), uncles=[], withdrawals=[])
            parent = self.chaindb.get_block_header_by_hash(header.parent_hash)
            view = batch_view(self.db)
            try:
                computed = self._execute(PouwChainDB(view), parent, block)
            except BaseException:
                view.discard()
                raise
        else:
            view, vm, executed_header, receipts, tx_trie = run
            try:
                computed = vm.finish_block(executed_header.copy(**seal.fields()), template.transactions, receipts,
                                           tx_trie=tx_trie)
            except BaseException:
                view.discard()
                raise
        self._keep_sealed(computed.hash, view)
        return computed

    def build_block(
        self,
        coinbase: Address,
        timestamp: Optional[int] = None,
        transactions: Optional[Sequence[SignedTransactionAPI]] = None,
        extra_data: bytes = b"",
        seal: Union[Seal, SealFunction, None] = None,
        *,
        parent_hash: Optional[Hash32] = None,
    ) -> tuple[BlockAPI, Optional[bytes]]:
        """Template, seal, execute: a valid block on the head (or ``parent_hash``).

        ``seal`` is a :class:`Seal`, or a function called with the template that does
        the work and returns ``(seal, payload)``; None gives the empty seal (valid for
        the no-proof engine). The block is not imported: pass it to ``import_block``.
        """
        template = self.build_template(
            coinbase, timestamp=timestamp, transactions=transactions,
            extra_data=extra_data, parent_hash=parent_hash,
        )
        payload: Optional[bytes] = None
        if seal is None:
            seal = Seal()
        elif callable(seal):
            seal, payload = seal(template)
        return self.seal_block(template, seal), payload

    # --- reading ------------------------------------------------------------------------

    def head(self) -> BlockHeaderAPI:
        """Header of the canonical head."""
        return self.chaindb.get_canonical_head()

    def head_block(self) -> BlockAPI:
        return self.get_block_by_hash(self.head().hash)

    @property
    def genesis_hash(self) -> Hash32:
        return self.chaindb.get_canonical_block_hash(BlockNumber(0))

    def get_canonical_hash(self, number: int) -> Hash32:
        """Raises eth.exceptions.HeaderNotFound above the head."""
        return self.chaindb.get_canonical_block_hash(BlockNumber(number))

    def get_header_by_hash(self, block_hash: Hash32) -> BlockHeaderAPI:
        return self.chaindb.get_block_header_by_hash(block_hash)

    def get_block_by_hash(self, block_hash: Hash32) -> BlockAPI:
        """Raises eth.exceptions.HeaderNotFound if unknown."""
        def read() -> BlockAPI:
            return PouwBlock.from_header(self.chaindb.get_block_header_by_hash(block_hash), self.chaindb)

        return self._blocks.get(bytes(block_hash), read)

    def get_block_by_number(self, number: int) -> BlockAPI:
        return self.get_block_by_hash(self.get_canonical_hash(number))

    def get_receipts(self, block: Union[BlockAPI, BlockHeaderAPI]) -> tuple[ReceiptAPI, ...]:
        header = block.header if isinstance(block, BlockAPI) else block
        return self._receipts.get(
            bytes(header.hash), lambda: tuple(self.chaindb.get_receipts(header, PouwBlock.get_receipt_builder())))

    def get_transaction_by_hash(self, tx_hash: Hash32) -> Optional[TransactionLocation]:
        """A canonical transaction and where it is, or None."""
        try:
            number, index = self.chaindb.get_transaction_index(tx_hash)
        except TransactionNotFound:
            return None
        block = self.get_block_by_number(number)
        if index >= len(block.transactions) or block.transactions[index].hash != tx_hash:
            return None  # a stale lookup must never return another transaction
        return TransactionLocation(block.transactions[index], block.hash, index)

    def difficulty_for_child(self, parent: BlockHeaderAPI) -> int:
        """The difficulty a child of ``parent`` must carry: the retarget rule
        (``chain/difficulty.py``) over ``parent``'s own branch of ancestors."""
        return self._child_difficulty.get(parent.hash, lambda: self._retarget(parent))

    def _retarget(self, parent: BlockHeaderAPI) -> int:
        params = self.genesis.difficulty_params
        pairs = window_pairs(parent.block_number, params)
        if not pairs:
            return next_difficulty(parent.difficulty, (), params)
        points = self._points_down_to(parent, min(start for _, start in pairs))
        return next_difficulty(parent.difficulty, [(points[end], points[start]) for end, start in pairs], params)

    def _points_down_to(self, tip: BlockHeaderAPI, lowest: int) -> dict[int, BlockPoint]:
        """(timestamp, score) of ``tip`` and its ancestors down to block ``lowest``, by
        number, walking ``tip``'s own branch through parent hashes (canonical or not)."""
        points: dict[int, BlockPoint] = {}
        links = self._point_links
        block_hash: bytes = tip.hash
        for number in range(tip.block_number, lowest - 1, -1):
            link = links.get(block_hash)
            if link is None:
                header = self.chaindb.get_block_header_by_hash(Hash32(block_hash))
                link = (BlockPoint(header.timestamp, self.chaindb.get_score(Hash32(block_hash))), header.parent_hash)
                if len(links) >= POINT_LINKS:
                    links.clear()
                links[block_hash] = link
            points[number] = link[0]
            block_hash = link[1]
        return points

    def score(self, block_hash: Hash32) -> int:
        """Cumulative difficulty of the chain ending at ``block_hash`` (fork choice)."""
        return self.chaindb.get_score(block_hash)

    def get_payload(self, block_hash: Hash32) -> Optional[bytes]:
        try:
            return self.db[schema.work_payload(block_hash)]
        except KeyError:
            return None

    def state_at(self, header: Optional[BlockHeaderAPI] = None) -> StateAPI:
        """State after ``header`` (default: the head). Treat as read-only."""
        return self._state(self.db, header if header is not None else self.head())

    def state_view(self) -> "HeadStateView":
        """The head state as the tx pool reads it (nonces, balances, next base fee)."""
        head = self.head()
        return HeadStateView(head, self.reader_at(head))

    def reader_at(self, header: Optional[BlockHeaderAPI] = None) -> StateReader:
        """Balances, nonces, code and storage after ``header`` (default: the head),
        read straight from the tries (chain/state_reader.py): cheaper than
        :meth:`state_at` for reads alone."""
        root = (header if header is not None else self.head()).state_root
        return self._readers.get(root, lambda: StateReader(self.db, root))

    def _state(self, db: AtomicDatabaseAPI, header: BlockHeaderAPI) -> StateAPI:
        return self.vm_class.build_state(db, header, self.chain_context)

    def _header_for(self, block: Union[None, int, bytes, BlockHeaderAPI]) -> BlockHeaderAPI:
        if block is None:
            return self.head()
        if isinstance(block, int):
            return self.chaindb.get_canonical_block_header_by_number(BlockNumber(block))
        if isinstance(block, bytes):
            return self.chaindb.get_block_header_by_hash(Hash32(block))
        return block

    def get_balance(self, address: Address, block: Union[None, int, bytes, BlockHeaderAPI] = None) -> int:
        return self.reader_at(self._header_for(block)).get_balance(address)

    def get_nonce(self, address: Address, block: Union[None, int, bytes, BlockHeaderAPI] = None) -> int:
        return self.reader_at(self._header_for(block)).get_nonce(address)

    def get_code(self, address: Address, block: Union[None, int, bytes, BlockHeaderAPI] = None) -> bytes:
        return self.reader_at(self._header_for(block)).get_code(address)

    def get_storage(
        self, address: Address, slot: int, block: Union[None, int, bytes, BlockHeaderAPI] = None
    ) -> int:
        return self.reader_at(self._header_for(block)).get_storage(address, slot)

    def call(
        self,
        to: Address,
        data: bytes = b"",
        *,
        sender: Address = Address(b"\x00" * 20),
        value: int = 0,
        gas: Optional[int] = None,
        block: Union[None, int, bytes, BlockHeaderAPI] = None,
    ) -> Any:
        """Run a message call on the state after ``block`` (default: head) and throw the
        changes away (for eth_call and tests). Returns py-evm's computation: ``output``,
        ``is_error``, ``get_gas_used()``, ``get_log_entries()``."""
        header = self._header_for(block)
        view = batch_view(self.db)
        try:
            child = self.vm_class.create_header_from_parent(
                header, timestamp=header.timestamp + 1, coinbase=header.coinbase
            )
            vm = self._vm(PouwChainDB(view), header, child)
            return vm.execute_bytecode(
                origin=sender, gas_price=0, gas=gas if gas is not None else header.gas_limit,
                to=to, sender=sender, value=value, data=data,
                code=vm.state.get_code(to), code_address=to,
            )
        finally:
            view.discard()

    def export_blocks(self, start: int = 0, end: Optional[int] = None) -> Iterator[bytes]:
        """RLP of canonical blocks ``start..end`` inclusive (default: to the head)."""
        last = self.head().block_number if end is None else end
        for number in range(start, last + 1):
            yield rlp.encode(self.get_block_by_number(number))


# --- Stage 1: decoding and the header alone ------------------------------------------------


def decode_block(block_or_rlp: Union[BlockAPI, bytes], genesis: GenesisConfig) -> BlockAPI:
    """Bytes (or a block object) to a :class:`PouwBlock`, refusing oversized input."""
    decoded: Optional[BlockAPI] = None
    if isinstance(block_or_rlp, (bytes, bytearray, memoryview)):
        data = bytes(block_or_rlp)
    elif isinstance(block_or_rlp, BlockAPI):
        data = rlp.encode(block_or_rlp)
        if _is_decoded_form(block_or_rlp):  # built here: what decoding its bytes would give
            decoded = block_or_rlp
    else:
        raise MalformedBlock(f"expected a block or its RLP bytes, got {type(block_or_rlp).__name__}")
    if len(data) > genesis.max_block_bytes:
        raise OversizedBlock("encoded block too large", expected=f"<= {genesis.max_block_bytes}", got=len(data))
    if decoded is not None:
        return decoded
    try:
        return rlp.decode(data, sedes=PouwBlock)
    except (rlp.DecodingError, rlp.DeserializationError, TypeError, ValueError) as exc:
        raise MalformedBlock(f"block does not decode: {exc}") from None


def _is_decoded_form(block: BlockAPI) -> bool:
    """Whether ``block`` is made of the classes decoding its RLP gives (a block this
    process built): then it need not be decoded again, and its transactions keep the
    senders already recovered."""
    classes = _builder_classes(PouwBlock.get_transaction_builder())
    return (type(block) is PouwBlock and type(block.header) is PouwBlockHeader
            and not block.uncles and not block.withdrawals
            and all(type(tx) in classes for tx in block.transactions))


def validate_header_alone(header: BlockHeaderAPI, genesis: GenesisConfig, now: float) -> None:
    """Rules a header must meet whatever its parent."""
    for name in ("block_number", "gas_limit", "gas_used", "timestamp", "step_count"):
        if getattr(header, name) >= UINT64_LIMIT:
            raise InvalidHeader(f"{name} out of range", expected="< 2**64", got=getattr(header, name))
    for name in ("difficulty", "base_fee_per_gas"):
        if getattr(header, name) >= UINT256_LIMIT:
            raise InvalidHeader(f"{name} out of range", expected="< 2**256", got=getattr(header, name))
    if header.block_number == 0:
        raise InvalidBlockNumber("a genesis block cannot be imported", expected=">= 1", got=0)
    if len(header.extra_data) > MAX_EXTRA_DATA_BYTES:
        raise InvalidHeader(
            "extra data too long", expected=f"<= {MAX_EXTRA_DATA_BYTES} bytes", got=len(header.extra_data)
        )
    if header.gas_used > header.gas_limit:
        raise InvalidGasUsed("gas used above gas limit", expected=f"<= {header.gas_limit}", got=header.gas_used)
    if header.timestamp > now + MAX_FUTURE_SECONDS:
        raise InvalidTimestamp(
            "timestamp too far in the future", expected=f"<= {int(now) + MAX_FUTURE_SECONDS}", got=header.timestamp
        )
    pinned = {
        "uncles_hash": EMPTY_UNCLE_HASH,
        "withdrawals_root": BLANK_ROOT_HASH,
        "blob_gas_used": 0,
        "excess_blob_gas": 0,
        "parent_beacon_block_root": ZERO_HASH32,
    }
    for name, value in pinned.items():
        if getattr(header, name) != value:
            raise InvalidHeader(f"{name} must be fixed on this chain", expected=value, got=getattr(header, name))


def validate_payload_size(payload: Optional[bytes], engine: SealEngine) -> None:
    if payload is not None and len(payload) > engine.max_payload_bytes():
        raise OversizedBlock(
            "work payload too large", expected=f"<= {engine.max_payload_bytes()}", got=len(payload)
        )


# --- Stage 2: header against parent ---------------------------------------------------------


def validate_header_against_parent(
    header: BlockHeaderAPI, parent: BlockHeaderAPI, genesis: GenesisConfig, expected_difficulty: int
) -> None:
    """``expected_difficulty``: the retarget rule over the parent's ancestors
    (:meth:`Chain.difficulty_for_child`). Timestamps strictly increase, as on Ethereum
    (contracts rely on it); so a block's timestamp also exceeds the median of its last
    11 ancestors' (Bitcoin's median-time-past rule) without a check of its own."""
    if header.block_number != parent.block_number + 1:
        raise InvalidBlockNumber("number must be parent's + 1", expected=parent.block_number + 1, got=header.block_number)
    if header.timestamp <= parent.timestamp:
        raise InvalidTimestamp("timestamp must be after parent's", expected=f"> {parent.timestamp}", got=header.timestamp)
    low, high = compute_gas_limit_bounds(parent.gas_limit)
    if not low <= header.gas_limit <= high:
        raise InvalidGasLimit("gas limit moved too far from parent's", expected=f"[{low}, {high}]", got=header.gas_limit)
    expected_base_fee = calculate_expected_base_fee_per_gas(parent)
    if header.base_fee_per_gas != expected_base_fee:
        raise InvalidBaseFee("base fee differs from EIP-1559", expected=expected_base_fee, got=header.base_fee_per_gas)
    if header.difficulty != expected_difficulty:
        raise InvalidDifficulty("difficulty differs from the retarget rule", expected=expected_difficulty, got=header.difficulty)


# --- Stage 3: body against header ------------------------------------------------------------


def validate_body(block: BlockAPI, genesis: GenesisConfig) -> None:
    if block.uncles:
        raise InvalidBody("uncles are not allowed", expected=0, got=len(block.uncles))
    if block.withdrawals:
        raise InvalidBody("withdrawals are not allowed", expected=0, got=len(block.withdrawals))
    tx_root, _ = make_trie_root_and_nodes(block.transactions)
    if tx_root != block.header.transaction_root:
        raise InvalidTransactionRoot("transaction root differs from body", expected=tx_root, got=block.header.transaction_root)
    for index, tx in enumerate(block.transactions):
        validate_block_transaction(index, tx, genesis)


def validate_block_transaction(index: int, tx: SignedTransactionAPI, genesis: GenesisConfig) -> None:
    """Stateless checks of one transaction, shared with the RPC and the pool
    (``chain/transactions.py``): size, type (0, 1, 2), field ranges, signature, chain
    id. Unprotected (pre-EIP-155) legacy transactions are refused by consensus too:
    they would replay from any other chain. State checks happen during execution.

    A transaction object that passed is marked (in its ``__dict__``, beside py-evm's
    cached sender) with the limits it passed under: building a block, sealing it and
    importing it check the same immutable objects, which pass again by the same rules."""
    passed_under = (genesis.max_transaction_bytes, genesis.chain_id)
    if tx.__dict__.get(_CHECKED_UNDER) == passed_under:
        return
    try:
        validate_transaction(tx, max_size=genesis.max_transaction_bytes)
        validate_chain_id(tx, genesis.chain_id, allow_unprotected=False)
    except OversizedTransaction as exc:
        raise OversizedBlock(f"transaction {index}: {exc}", expected=exc.expected, got=exc.got) from None
    except InvalidTransaction as exc:
        raise InvalidBlockTransaction(str(exc), index=index) from None
    tx.__dict__[_CHECKED_UNDER] = passed_under


_CHECKED_UNDER = "_pouw_block_checks_passed_under"


# --- Stage 4: execution ------------------------------------------------------------------


def validate_execution(header: BlockHeaderAPI, computed: BlockHeaderAPI) -> None:
    """Every post-execution commitment of the header must equal the computed one."""
    checks: Iterable[tuple[str, type[InvalidExecution] | type[InvalidGasUsed]]] = (
        ("gas_used", InvalidGasUsed),
        ("bloom", InvalidBloom),
        ("receipt_root", InvalidReceiptRoot),
        ("state_root", InvalidStateRoot),
        ("requests_hash", InvalidExecution),
    )
    for name, error in checks:
        if getattr(header, name) != getattr(computed, name):
            raise error(f"{name} differs from execution", expected=getattr(computed, name), got=getattr(header, name))


def normalize_transaction(tx: Union[SignedTransactionAPI, bytes]) -> SignedTransactionAPI:
    """The transaction as our block's transaction builder decodes it (py-evm's signing
    helpers return classes of older forks, which the Prague block sedes cannot encode)."""
    builder = PouwBlock.get_transaction_builder()
    if not isinstance(tx, (bytes, bytearray)) and type(tx) in _builder_classes(builder):
        return tx  # decoded by our builder already (the pool's): keeps its recovered sender
    raw = tx if isinstance(tx, (bytes, bytearray)) else tx.encode()
    return builder.decode(bytes(raw))


def _builder_classes(builder: type[TransactionBuilderAPI]) -> tuple[type, ...]:
    """The classes ``builder`` decodes legacy and typed transactions to (py-evm's fork
    builders have both; the abstract API does not name them)."""
    return (getattr(builder, "legacy_signed"), getattr(builder, "typed_transaction"))


def select_transactions(
    vm: PouwVM,
    header: BlockHeaderAPI,
    candidates: Sequence[SignedTransactionAPI],
    strict: bool,
    genesis: GenesisConfig,
) -> tuple[list[SignedTransactionAPI], list[ReceiptAPI], BlockHeaderAPI, bool]:
    """Apply candidates in order on the block begun in ``vm`` (``header`` from
    ``vm.begin_block``); keep those that apply. Returns them, their receipts, the
    header with their gas and bloom, ready for ``vm.finish_block``, and whether a
    candidate was rolled back after it started to apply (then the VM's journal is not
    the one a plain execution of the kept ones leaves, and must not be finished).

    ``strict``: a candidate that fails raises :class:`InvalidBlockTransaction` instead
    of being skipped (the caller chose the transactions).
    """
    included: list[SignedTransactionAPI] = []
    receipts: list[ReceiptAPI] = []
    reverted = False
    gas_header = header
    for index, tx in enumerate(candidates):
        try:
            validate_block_transaction(index, tx, genesis)
            snapshot = vm.state.snapshot()
            try:
                receipt, _ = vm.apply_transaction(gas_header, tx)
            except Exception:
                try:
                    vm.state.revert(snapshot)
                except EthValidationError:
                    # py-evm locks the journal (lock_changes) before checks such as the
                    # intrinsic gas: the snapshot is gone. The error to report is the
                    # transaction's, and the template's journal is not a plain run's.
                    reverted = True
                raise
        except (InvalidBlockTransaction, OversizedBlock):
            if strict:
                raise
            continue
        except EthValidationError as exc:
            if strict:
                raise InvalidBlockTransaction(str(exc), index=index) from None
            reverted = True
            continue
        except WorkBlobMissing:  # a blob gone since the pool took the transaction
            if strict:
                raise
            reverted = True
            continue
        gas_header = vm.add_receipt_to_header(gas_header, receipt)
        included.append(tx)
        receipts.append(receipt)
    return included, receipts, gas_header, reverted


__all__ = [
    "BlockTemplate",
    "Chain",
    "ChainError",
    "ImportResult",
    "PouwChainDB",
    "Seal",
    "TransactionLocation",
    "decode_block",
    "validate_body",
    "validate_execution",
    "validate_header_against_parent",
    "validate_header_alone",
]

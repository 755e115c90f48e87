"""The transaction pool: signed transactions waiting for a block.

A transaction is admitted after checks in order of cost, cheapest first:

1. static (no state): size, type, strict decoding, signature ranges, fields, sender
   recovery (:mod:`chain.transactions`), chain id / replay protection;
2. against the chain's limits: intrinsic gas, block gas limit, minimum tip, fee cap
   against the current base fee;
3. against the sender's state and pool entries (under the lock): already known, nonce
   too low, balance (this tx alone, then with the sender's other pooled txs),
   replacement price bump, per-sender limit, and room in the pool (evicting the
   cheapest entry only if the newcomer pays more).

Per sender, *pending* transactions are those with contiguous nonces starting at the
state nonce (executable in order now); *queued* ones sit behind a gap and are promoted
implicitly when the gap fills, because the classification is computed from the nonces
rather than stored (so it can never go stale).

Error messages are geth's, word for word (``str(err)``), because the RPC returns them
and wallets match on them; ``err.detail`` has the specifics and ``err.expected`` /
``err.got`` the values.

Memory is bounded by *slots*: a transaction takes ``ceil(size / 32 KiB)`` slots (as in
geth), so ``max_slots=4096`` caps the pool near 128 MiB of raw transactions.

Threads: RPC handlers and the miner call in concurrently; one re-entrant lock guards
all state. Decoding and sender recovery, the expensive part, run outside it. The
``StateView`` passed in must be safe to read from those threads (a snapshot of the
head state is).

Head changes (the node's duty): after each import call ``on_new_head(view)`` with the
new head's state; on a reorg also ``readd(txs)`` with the transactions of the abandoned
blocks that the new branch does not contain (before or after ``on_new_head``; see
``readd``).
"""
from __future__ import annotations

import heapq
import itertools
import threading
from dataclasses import dataclass, field
from typing import (
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Protocol,
    Tuple,
    Type,
    Union,
)

from eth.constants import GAS_TX
from eth.vm.forks.prague.constants import STANDARD_TOKEN_COST, TOTAL_COST_FLOOR_PER_TOKEN
from eth.abc import SignedTransactionAPI, TransactionBuilderAPI

from chain.errors import ChainError
from chain.transactions import (
    DEFAULT_BUILDER,
    MAX_TX_SIZE,
    InvalidSignature,
    InvalidTransaction,
    InvalidTransactionFields,
    MalformedTransaction,
    OversizedTransaction,
    TipAboveFeeCap,
    UnprotectedTransaction,
    UnsupportedTransactionType,
    WrongChainId,
    decode_raw_transaction,
    fee_cap_and_tip,
    validate_chain_id,
    validate_transaction,
)

Address = bytes
Hash32 = bytes

#: geth's txSlotSize: a slot holds up to 32 KiB of transaction.
SLOT_SIZE = 32 * 1024


class StateView(Protocol):
    """What the pool needs from the head state; the node supplies a snapshot of it."""

    def get_nonce(self, address: Address) -> int: ...

    def get_balance(self, address: Address) -> int: ...

    def base_fee(self) -> int:
        """Base fee per gas of the next block (what a tx must cover to be included)."""
        ...

    def block_gas_limit(self) -> int:
        """Gas limit of the next block (a tx above it can never be included)."""
        ...


# ------------------------------------------------------------------------- errors


def floor_data_gas(data: bytes) -> int:
    """EIP-7623's minimum gas of a transaction carrying ``data``."""
    zeros = data.count(0)
    tokens = zeros + STANDARD_TOKEN_COST * (len(data) - zeros)
    return GAS_TX + TOTAL_COST_FLOOR_PER_TOKEN * tokens


class TxPoolError(ChainError):
    """A transaction refused by the pool. ``str()`` is geth's message for the same case."""

    message: str = "transaction refused"  # per class; InvalidFields sets it per instance

    def __init__(
        self,
        detail: str = "",
        *,
        expected: object = None,
        got: object = None,
        message: Optional[str] = None,
    ) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)  # geth's message alone; the specifics are attributes
        self.detail = detail
        self.expected = expected
        self.got = got

    def __str__(self) -> str:
        return self.message

    @property
    def rpc_message(self) -> str:
        """What the RPC answers (same attribute as chain.transactions' errors)."""
        return self.message

    @property
    def full_message(self) -> str:
        """geth's message with specifics, for logs: ``"nonce too low: next 5, tx 3"``."""
        return f"{self.message}: {self.detail}" if self.detail else self.message


class AlreadyKnown(TxPoolError):
    message = "already known"


class NonceTooLow(TxPoolError):
    message = "nonce too low"


class InsufficientFunds(TxPoolError):
    message = "insufficient funds for gas * price + value"


class ReplacementUnderpriced(TxPoolError):
    message = "replacement transaction underpriced"


class Underpriced(TxPoolError):
    """Tip (or legacy gas price) below the pool's minimum."""

    message = "transaction underpriced"


class FeeCapTooLow(TxPoolError):
    message = "max fee per gas less than block base fee"


class TipAboveFeeCapError(TxPoolError):
    message = "max priority fee per gas higher than max fee per gas"


class IntrinsicGasTooLow(TxPoolError):
    message = "intrinsic gas too low"


class FloorDataGasTooLow(TxPoolError):
    """EIP-7623 (Prague): a transaction must offer at least 21,000 + 10 gas per calldata
    token (a zero byte one token, any other byte four). py-evm 0.12 does not refuse one
    under that floor; it charges the floor anyway, more than the sender's gas limit; so
    the pool refuses it, as geth's does."""

    message = "insufficient gas for floor data gas cost"


class GasLimitExceeded(TxPoolError):
    message = "exceeds block gas limit"


class OversizedData(TxPoolError):
    message = "oversized data"


class TxTypeNotSupported(TxPoolError):
    message = "transaction type not supported"


class InvalidSender(TxPoolError):
    message = "invalid sender"


class InvalidChainId(TxPoolError):
    message = "invalid chain id for signer"


class UnprotectedTx(TxPoolError):
    message = "only replay-protected (EIP-155) transactions allowed over RPC"


class MalformedTx(TxPoolError):
    message = "rlp: invalid transaction encoding"


class InvalidFields(TxPoolError):
    """A field out of range; the message is geth's for that field (set per instance)."""

    message = "invalid transaction fields"


class AccountLimitExceeded(TxPoolError):
    message = "account limit exceeded"


class BlobNotHere(TxPoolError):
    """The transaction's execution reads a blob this node does not have (a fraud proof's
    start state): upload the blob first. Carries its hash."""

    message = "a blob this transaction reads is not on this node: upload it first"

    def __init__(self, detail: str = "", *, blob_hash: bytes = b"") -> None:
        super().__init__(detail or f"blob 0x{blob_hash.hex()} is not on this node", expected=blob_hash.hex())
        self.blob_hash = blob_hash

    @property
    def rpc_message(self) -> str:
        """Names the blob (a fraud proof's start state: ``pouw_uploadProofState``)."""
        return f"{self.message} (blob 0x{self.blob_hash.hex()})" if self.blob_hash else self.message


class TxPoolFull(TxPoolError):
    message = "txpool is full"


#: Static refusals from chain.transactions, and the pool error each becomes.
_STATIC_ERRORS: Tuple[Tuple[Type[InvalidTransaction], Type[TxPoolError]], ...] = (
    (OversizedTransaction, OversizedData),
    (UnsupportedTransactionType, TxTypeNotSupported),
    (MalformedTransaction, MalformedTx),
    (TipAboveFeeCap, TipAboveFeeCapError),
    (InvalidTransactionFields, InvalidFields),
    (InvalidSignature, InvalidSender),
    (WrongChainId, InvalidChainId),
    (UnprotectedTransaction, UnprotectedTx),
)


def _pool_error(exc: InvalidTransaction) -> TxPoolError:
    for static_cls, pool_cls in _STATIC_ERRORS:
        if isinstance(exc, static_cls):
            message = exc.reason if pool_cls is InvalidFields else None
            return pool_cls(str(exc), expected=exc.expected, got=exc.got, message=message)
    return TxPoolError(str(exc), expected=exc.expected, got=exc.got)


# -------------------------------------------------------------------- pool entries


@dataclass(frozen=True)
class PoolTx:
    """A transaction with everything the pool sorts and checks by, computed once."""

    tx: SignedTransactionAPI
    hash: Hash32
    sender: Address
    nonce: int
    fee_cap: int
    tip: int
    gas: int
    cost: int  # gas * fee_cap + value: the most the sender can be charged
    size: int
    slots: int
    seq: int = field(compare=False)  # arrival order: ties go to the first seen

    def effective_tip(self, base_fee: int) -> int:
        """Per-gas reward to the miner at ``base_fee``; negative if not includable."""
        return min(self.tip, self.fee_cap - base_fee)


#: (effective tip at the heap's base fee, -nonce, -seq, hash): cheapest first, then
#: higher nonce, then later arrival.
_HeapItem = Tuple[int, int, int, Hash32]


def _heap_item(entry: PoolTx, base_fee: int) -> _HeapItem:
    return (entry.effective_tip(base_fee), -entry.nonce, -entry.seq, entry.hash)


@dataclass(frozen=True)
class PoolStats:
    pending: int
    queued: int
    slots: int
    max_slots: int


# ---------------------------------------------------------------------- the pool


@dataclass(frozen=True)
class TxPoolLimits:
    """The pool's limits (geth's ``--txpool.*``), as one value to pass around."""

    max_slots: int = 4096
    max_per_sender: int = 64
    price_bump_percent: int = 10
    min_gas_price: int = 1


class TxPool:
    """Pending and queued transactions, bounded, thread safe; see the module docstring."""

    def __init__(
        self,
        chain_id: int,
        state: StateView,
        *,
        max_slots: int = 4096,
        max_per_sender: int = 64,
        price_bump_percent: int = 10,
        max_tx_size: int = MAX_TX_SIZE,
        min_gas_price: int = 1,
        allow_unprotected: bool = False,
        block_gas_limit_fn: Optional[Callable[[], int]] = None,
        builder: Type[TransactionBuilderAPI] = DEFAULT_BUILDER,
        limits: Optional[TxPoolLimits] = None,
        missing_blobs: Optional[Callable[[SignedTransactionAPI], tuple[bytes, ...]]] = None,
    ) -> None:
        """``min_gas_price`` is the minimum tip (legacy: gas price), geth's
        ``--txpool.pricelimit``. ``block_gas_limit_fn`` overrides ``state.block_gas_limit``.
        ``builder`` must be the transaction builder of the VM that will execute the txs,
        so decoding and intrinsic gas follow the same fork. ``limits``, when given,
        overrides the four pool limits it carries. ``missing_blobs`` (the seal engine's
        ``missing_transaction_blobs``) names blobs a transaction needs that this node
        lacks: such a transaction is refused (:class:`BlobNotHere`) until they are here,
        so every block built from the pool can be executed by its builder."""
        if limits is not None:
            max_slots, max_per_sender = limits.max_slots, limits.max_per_sender
            price_bump_percent, min_gas_price = limits.price_bump_percent, limits.min_gas_price
        self.chain_id = chain_id
        self.max_slots = max_slots
        self.max_per_sender = max_per_sender
        self.price_bump_percent = price_bump_percent
        self.max_tx_size = max_tx_size
        self.min_gas_price = min_gas_price
        self.allow_unprotected = allow_unprotected
        self.builder = builder
        self._block_gas_limit_fn = block_gas_limit_fn
        self._missing_blobs = missing_blobs
        self._state = state
        self._lock = threading.RLock()
        self._by_hash: Dict[Hash32, PoolTx] = {}
        self._by_sender: Dict[Address, Dict[int, PoolTx]] = {}
        self._nonces: Dict[Address, int] = {}  # state nonces of the current head, cached
        self._deferred: Dict[Hash32, SignedTransactionAPI] = {}  # reorg txs awaiting a head
        # eviction candidates, cheapest first, at _heap_base_fee; removals are lazy
        self._price_heap: List[_HeapItem] = []
        self._heap_base_fee: Optional[int] = None
        self._slots = 0
        self._seq = itertools.count()
        #: Bumped on every insertion and removal: readers cache what they derive from
        #: the pool's contents (the RPC's pending block) by it.
        self.version = 0

    # ------------------------------------------------------------------ admission

    def add(self, tx_or_raw: Union[bytes, SignedTransactionAPI]) -> Hash32:
        """Admit a transaction (raw network bytes or a py-evm object); return its hash."""
        entry = self._prepare(tx_or_raw)
        self._check_limits(entry)
        missing = self._missing_blobs(entry.tx) if self._missing_blobs is not None else ()
        if missing:
            raise BlobNotHere(f"blob 0x{missing[0].hex()} is not on this node (pouw_uploadProofState puts it there)", blob_hash=missing[0])
        with self._lock:
            self._admit(entry)
        return entry.hash

    def _prepare(self, tx_or_raw: Union[bytes, SignedTransactionAPI]) -> PoolTx:
        """Stage 1, outside the lock: everything that needs only the transaction."""
        try:
            if isinstance(tx_or_raw, (bytes, bytearray)):
                tx = decode_raw_transaction(bytes(tx_or_raw), max_size=self.max_tx_size, builder=self.builder)
                encoded = bytes(tx_or_raw)
            else:
                tx = tx_or_raw
                encoded = validate_transaction(tx, max_size=self.max_tx_size)
            validate_chain_id(tx, self.chain_id, allow_unprotected=self.allow_unprotected)
        except InvalidTransaction as exc:
            raise _pool_error(exc) from exc
        fee_cap, tip = fee_cap_and_tip(tx)
        return PoolTx(
            tx=tx,
            hash=tx.hash,
            sender=tx.sender,
            nonce=tx.nonce,
            fee_cap=fee_cap,
            tip=tip,
            gas=tx.gas,
            cost=tx.gas * fee_cap + tx.value,
            size=len(encoded),
            slots=-(-len(encoded) // SLOT_SIZE),
            seq=next(self._seq),
        )

    def _check_limits(self, entry: PoolTx) -> None:
        """Stage 2: the chain's limits, which do not depend on the sender's account."""
        intrinsic = entry.tx.intrinsic_gas
        if entry.gas < intrinsic:
            raise IntrinsicGasTooLow(f"gas {entry.gas}, minimum needed {intrinsic}", expected=intrinsic, got=entry.gas)
        floor = floor_data_gas(entry.tx.data)
        if entry.gas < floor:
            raise FloorDataGasTooLow(f"gas {entry.gas}, minimum needed {floor}", expected=floor, got=entry.gas)
        gas_limit = self._block_gas_limit()
        if entry.gas > gas_limit:
            raise GasLimitExceeded(f"gas {entry.gas}, block gas limit {gas_limit}", expected=gas_limit, got=entry.gas)
        if entry.tip < self.min_gas_price:
            raise Underpriced(
                f"tip needed {self.min_gas_price}, tip permitted {entry.tip}",
                expected=self.min_gas_price,
                got=entry.tip,
            )
        base_fee = self._state.base_fee()
        if entry.fee_cap < base_fee:
            raise FeeCapTooLow(
                f"maxFeePerGas: {entry.fee_cap}, baseFee: {base_fee}", expected=base_fee, got=entry.fee_cap
            )

    def _admit(self, entry: PoolTx) -> None:
        """Stage 3, under the lock: the sender's account and the pool's contents."""
        if entry.hash in self._by_hash:
            raise AlreadyKnown(entry.hash.hex())
        state_nonce = self._state_nonce(entry.sender)
        if entry.nonce < state_nonce:
            raise NonceTooLow(f"next nonce {state_nonce}, tx nonce {entry.nonce}", expected=state_nonce, got=entry.nonce)
        balance = self._state.get_balance(entry.sender)
        if entry.cost > balance:
            raise InsufficientFunds(f"balance {balance}, tx cost {entry.cost}", expected=entry.cost, got=balance)

        own = self._by_sender.get(entry.sender, {})
        replaced = own.get(entry.nonce)
        if replaced is not None:
            self._check_replacement(replaced, entry)
        elif len(own) >= self.max_per_sender:
            raise AccountLimitExceeded(
                f"sender has {len(own)} transactions pooled", expected=self.max_per_sender, got=len(own) + 1
            )
        queued_cost = sum(p.cost for p in own.values() if p is not replaced)
        if queued_cost + entry.cost > balance:
            raise InsufficientFunds(
                f"balance {balance}, queued cost {queued_cost}, tx cost {entry.cost}",
                expected=queued_cost + entry.cost,
                got=balance,
            )

        freed = replaced.slots if replaced is not None else 0
        victims = self._victims(entry, self._slots - freed + entry.slots - self.max_slots)
        for victim in victims:
            self._remove(victim)
        if replaced is not None:
            self._remove(replaced)
        self._insert(entry)

    def _check_replacement(self, old: PoolTx, new: PoolTx) -> None:
        """geth's rule: both fee cap and tip strictly higher and at least bumped by N%."""
        bump = 100 + self.price_bump_percent
        min_fee_cap = old.fee_cap * bump // 100
        min_tip = old.tip * bump // 100
        if (
            new.fee_cap <= old.fee_cap
            or new.tip <= old.tip
            or new.fee_cap < min_fee_cap
            or new.tip < min_tip
        ):
            raise ReplacementUnderpriced(
                f"needs fee cap >= {min_fee_cap} and tip >= {min_tip}, "
                f"got fee cap {new.fee_cap} and tip {new.tip}",
                expected=(min_fee_cap, min_tip),
                got=(new.fee_cap, new.tip),
            )

    def _victims(self, entry: PoolTx, slots_needed: int) -> List[PoolTx]:
        """Cheapest entries (by effective tip now) to evict for ``entry``, or refuse.

        The sender's own entries are never victims (evicting its lower nonces would only
        queue the newcomer). Ties evict the higher nonce first (the end of a sequence, or
        a queued tx, rather than what makes the rest executable), then the later arrival.
        Uses the lazily maintained price heap, so a full pool costs O(log n) per add
        instead of a sort of the whole pool.
        """
        if slots_needed <= 0:
            return []
        base_fee = self._state.base_fee()
        heap = self._price_heap_at(base_fee)
        new_tip = entry.effective_tip(base_fee)
        victims: List[PoolTx] = []
        kept: List[_HeapItem] = []  # popped but not evicted: pushed back before returning
        freed = 0
        try:
            while freed < slots_needed:
                if not heap or heap[0][0] >= new_tip:
                    cheapest = heap[0][0] if heap else None
                    raise TxPoolFull(
                        f"new tx pays effective tip {new_tip}, cheapest pooled {cheapest}",
                        expected=f"> {cheapest}",
                        got=new_tip,
                    )
                item = heapq.heappop(heap)
                live = self._by_hash.get(item[-1])
                if live is None or live.seq != -item[2]:
                    continue  # stale: removed (or removed and re-added) since it was pushed
                kept.append(item)
                if live.sender == entry.sender:
                    continue
                victims.append(live)
                freed += live.slots
        except TxPoolFull:
            victims = []
            raise
        finally:
            evicted = {v.hash for v in victims}
            for item in kept:
                if item[-1] not in evicted:
                    heapq.heappush(heap, item)
        return victims

    def _price_heap_at(self, base_fee: int) -> List["_HeapItem"]:
        """The eviction heap keyed for ``base_fee``; rebuilt when the base fee changed
        or when stale items outnumber live ones."""
        if base_fee != self._heap_base_fee or len(self._price_heap) > 2 * len(self._by_hash) + 64:
            self._heap_base_fee = base_fee
            self._price_heap = [_heap_item(p, base_fee) for p in self._by_hash.values()]
            heapq.heapify(self._price_heap)
        return self._price_heap

    # --------------------------------------------------------------- bookkeeping

    def _insert(self, entry: PoolTx) -> None:
        self._by_hash[entry.hash] = entry
        self._by_sender.setdefault(entry.sender, {})[entry.nonce] = entry
        self._slots += entry.slots
        self.version += 1
        if self._heap_base_fee is not None:
            if len(self._price_heap) > 2 * len(self._by_hash) + 64:
                self._drop_price_heap()  # mostly stale: rebuilt when next needed
            else:
                heapq.heappush(self._price_heap, _heap_item(entry, self._heap_base_fee))

    def _drop_price_heap(self) -> None:
        self._price_heap = []
        self._heap_base_fee = None

    def _remove(self, entry: PoolTx) -> None:
        del self._by_hash[entry.hash]
        own = self._by_sender[entry.sender]
        del own[entry.nonce]
        if not own:
            del self._by_sender[entry.sender]
        self._slots -= entry.slots
        self.version += 1

    def _state_nonce(self, sender: Address) -> int:
        nonce = self._nonces.get(sender)
        if nonce is None:
            nonce = self._nonces[sender] = self._state.get_nonce(sender)
        return nonce

    def _block_gas_limit(self) -> int:
        if self._block_gas_limit_fn is not None:
            return self._block_gas_limit_fn()
        return self._state.block_gas_limit()

    def _split(self, sender: Address) -> Tuple[List[PoolTx], List[PoolTx]]:
        """(pending, queued) of one sender: pending are contiguous from the state nonce."""
        own = self._by_sender.get(sender, {})
        pending: List[PoolTx] = []
        nonce = self._state_nonce(sender)
        while nonce in own:
            pending.append(own[nonce])
            nonce += 1
        queued = sorted((p for n, p in own.items() if n >= nonce), key=lambda p: p.nonce)
        return pending, queued

    # ------------------------------------------------------------------ queries

    def pending(self, base_fee: Optional[int] = None) -> List[SignedTransactionAPI]:
        """Transactions ready for a block, best first, each sender's in nonce order.

        geth's price-and-nonce order: repeatedly take the sender head paying the highest
        effective tip at ``base_fee`` (ties to the first seen). A sender's sequence stops
        at its first tx whose fee cap is below the base fee, as later nonces need it.
        """
        with self._lock:
            base = self._state.base_fee() if base_fee is None else base_fee
            queues: Dict[Address, List[PoolTx]] = {}
            for sender in self._by_sender:
                ready, _ = self._split(sender)
                includable = list(itertools.takewhile(lambda p: p.fee_cap >= base, ready))
                if includable:
                    queues[sender] = includable
            heads = [(-q[0].effective_tip(base), q[0].seq, sender, 0) for sender, q in queues.items()]
            heapq.heapify(heads)
            ordered: List[SignedTransactionAPI] = []
            while heads:
                _, _, sender, index = heapq.heappop(heads)
                queue = queues[sender]
                ordered.append(queue[index].tx)
                if index + 1 < len(queue):
                    nxt = queue[index + 1]
                    heapq.heappush(heads, (-nxt.effective_tip(base), nxt.seq, sender, index + 1))
            return ordered

    def content(self) -> Dict[str, Dict[Address, Dict[int, SignedTransactionAPI]]]:
        """Like geth's ``txpool_content``: ``{"pending"|"queued": {sender: {nonce: tx}}}``."""
        with self._lock:
            result: Dict[str, Dict[Address, Dict[int, SignedTransactionAPI]]] = {"pending": {}, "queued": {}}
            for sender in self._by_sender:
                pending, queued = self._split(sender)
                if pending:
                    result["pending"][sender] = {p.nonce: p.tx for p in pending}
                if queued:
                    result["queued"][sender] = {p.nonce: p.tx for p in queued}
            return result

    def stats(self) -> PoolStats:
        """Counts for ``txpool_status`` and metrics."""
        with self._lock:
            pending = queued = 0
            for sender in self._by_sender:
                p, q = self._split(sender)
                pending += len(p)
                queued += len(q)
            return PoolStats(pending=pending, queued=queued, slots=self._slots, max_slots=self.max_slots)

    def get(self, tx_hash: Hash32) -> Optional[SignedTransactionAPI]:
        with self._lock:
            entry = self._by_hash.get(tx_hash)
            return None if entry is None else entry.tx

    def __contains__(self, tx_hash: object) -> bool:
        with self._lock:
            return tx_hash in self._by_hash

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_hash)

    def next_nonce(self, sender: Address) -> int:
        """The nonce a new tx from ``sender`` should use (``eth_getTransactionCount`` pending)."""
        with self._lock:
            pending, _ = self._split(sender)
            return pending[-1].nonce + 1 if pending else self._state_nonce(sender)

    # ------------------------------------------------------------- head changes

    def remove_included(self, txs: Iterable[SignedTransactionAPI]) -> List[Hash32]:
        """Drop transactions a new block included, and any pooled tx their nonces made stale.

        A cheap step right after import; ``on_new_head`` does the full re-check.
        """
        removed: List[Hash32] = []
        with self._lock:
            for tx in txs:
                sender, nonce = tx.sender, tx.nonce
                self._nonces[sender] = max(self._state_nonce(sender), nonce + 1)
                for entry in [p for n, p in self._by_sender.get(sender, {}).items() if n <= nonce]:
                    self._remove(entry)
                    removed.append(entry.hash)
        return removed

    def on_new_head(self, state: StateView) -> List[Hash32]:
        """Re-check the whole pool against a new head state (after import or reorg).

        Drops stale nonces, transactions the sender can no longer afford and ones above
        the new block gas limit. Promotion and demotion follow from the new nonces.

        The account reads (one nonce and one balance per sender, from the database) run
        before the lock is taken, so a user's ``add`` waits at most for the short
        bookkeeping pass, never for the reads of a large pool. A sender that arrives in
        between is read under the lock (rare, and one account).
        """
        with self._lock:
            senders = list(self._by_sender)
        accounts = {sender: (state.get_nonce(sender), state.get_balance(sender)) for sender in senders}
        gas_limit = self._block_gas_limit_fn() if self._block_gas_limit_fn is not None else state.block_gas_limit()
        dropped: List[Hash32] = []
        with self._lock:
            self._state = state
            self._nonces = {sender: nonce for sender, (nonce, _) in accounts.items()}
            self._drop_price_heap()  # keyed by the old base fee, and full of removals
            for sender in list(self._by_sender):
                nonce = self._state_nonce(sender)
                balance = accounts[sender][1] if sender in accounts else state.get_balance(sender)
                for entry in list(self._by_sender[sender].values()):
                    if entry.nonce < nonce or entry.cost > balance or entry.gas > gas_limit:
                        self._remove(entry)
                        dropped.append(entry.hash)
            deferred, self._deferred = self._deferred, {}
        self._retry(deferred)
        return dropped

    def readd(self, txs: Iterable[SignedTransactionAPI]) -> List[Hash32]:
        """Return transactions of abandoned blocks to the pool after a reorg.

        Those no longer valid are skipped silently, as geth does. Works before or after
        ``on_new_head`` for the new branch: a tx refused only for its account state
        (nonce too low, funds), which may be the old branch's state still, is kept aside
        and retried once at the next ``on_new_head``. Returns the hashes added now.
        """
        added: List[Hash32] = []
        for tx in sorted(txs, key=lambda t: (t.sender, t.nonce)):
            try:
                added.append(self.add(tx))
            except (NonceTooLow, InsufficientFunds):
                with self._lock:
                    if len(self._deferred) < self.max_slots:
                        self._deferred[tx.hash] = tx
            except TxPoolError:
                continue
        return added

    def _retry(self, deferred: Dict[Hash32, SignedTransactionAPI]) -> None:
        """Re-add reorged transactions kept aside by ``readd`` (each ``add`` locks briefly)."""
        for tx in sorted(deferred.values(), key=lambda t: (t.sender, t.nonce)):
            try:
                self.add(tx)
            except TxPoolError:
                continue

    # ------------------------------------------------------------------ limits

    def limits(self) -> Dict[str, int]:
        """The configured limits (``txpool_status`` and ``admin_nodeInfo`` report them)."""
        return {
            "accountSlots": self.max_per_sender,
            "globalSlots": self.max_slots,
            "priceBump": self.price_bump_percent,
            "priceLimit": self.min_gas_price,
        }

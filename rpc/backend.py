"""The adapter between the RPC methods and the chain: the one module that touches chain internals.

Methods in ``rpc/eth_methods.py`` see only :class:`Backend`: blocks, receipts and
transactions as py-evm objects, state reads at a header, simulations for eth_call and
eth_estimateGas, and the transaction pool. :class:`ChainBackend` implements it on the
node's ``chain.chain.Chain`` (itself built on py-evm).

Thread safety: the RPC calls these from the event loop and from executor threads at
once. Reads go to committed data only (the chain writes each import as one batch). The
pool has its own short lock (``chain.txpool.TxPool``); block imports serialise on the
chain's own write lock (``Chain.write_lock``), which no RPC method takes, so
``eth_sendRawTransaction`` never waits behind a block import.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, cast

from eth.abc import (
    AccountDatabaseAPI,
    BlockAPI,
    BlockHeaderAPI,
    ChainDatabaseAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    UnsignedTransactionAPI,
)
from eth.exceptions import BlockNotFound, HeaderNotFound
from eth.vm.spoof import SpoofTransaction
from eth.vm.state import BaseState
from eth_typing import Address, Hash32

from chain.chain import Chain
from chain.txpool import TxPool
from chain.state_reader import StateReader
from chain.vm import PouwVM

from rpc.errors import RpcLayerError
from rpc.events import ChainChange, EventHub
from rpc.sources import AuditSource, ImportSource, MinerSource, PeerSource
from rpc.evm_deadline import CallTimeout, LeaveTheLoop

if TYPE_CHECKING:
    from rpc.accounts import DevAccounts
    from rpc.pouw_view import PouwView
    from rpc.proofs import ProofJson
    from rpc.simulate import SimulatedBlockJson, SimulatePayload

ZERO_ADDRESS = Address(b"\x00" * 20)
CREATE = Address(b"")
"""The ``to`` of a contract creation (py-evm's empty address)."""


class BackendError(RpcLayerError):
    """Root of the errors the backend raises for the RPC layer to translate."""


class TransactionRejected(BackendError):
    """The pool refused a transaction; the message is geth's ("nonce too low", ...).
    ``refusal``: the pool's own error (typed, with its fields), when there is one."""

    def __init__(self, message: str, *, refusal: Exception | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


class CallInvalid(BackendError):
    """A simulated call could not start (e.g. insufficient funds); geth's message."""


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A transaction to simulate (eth_call / eth_estimateGas / eth_createAccessList)."""

    sender: Address = ZERO_ADDRESS
    to: Address | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None
    access_list: tuple[tuple[Address, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class AccountOverride:
    """eth_call state override for one account (geth's ``stateOverride`` entry)."""

    balance: int | None = None
    nonce: int | None = None
    code: bytes | None = None
    #: Replace the whole storage with these slots.
    state: dict[int, int] | None = None
    #: Change only these slots.
    state_diff: dict[int, int] | None = None


@dataclass
class ExecutionResult:
    """Outcome of one simulated call."""

    success: bool
    output: bytes
    gas_used: int
    reverted: bool = False
    #: The VM error when the call failed for another reason ("out of gas", ...).
    error: str | None = None
    #: Addresses and storage slots touched, for eth_createAccessList.
    accessed: dict[Address, set[int]] = field(default_factory=dict)


class Simulation(abc.ABC):
    """A state at some block on which calls run and are rolled back one by one."""

    gas_limit: int
    base_fee: int | None

    @abc.abstractmethod
    def run(self, call: CallRequest, gas: int, *, trace_access: bool = False) -> ExecutionResult:
        """Execute ``call`` with ``gas`` and roll the state back afterwards."""

    @abc.abstractmethod
    def balance(self, address: Address) -> int:
        """Balance in this simulation's state (after overrides)."""


class Backend(abc.ABC):
    """What the RPC layer needs from the node."""

    #: Where the node announces new heads and pool transactions.
    events: EventHub
    chain_id: int
    client_version: str = "pouw-node/0.1.0/python"
    #: The node's other parts, attached by whoever assembles the node (rpc/sources.py);
    #: None where the node runs without them.
    miner: MinerSource | None = None
    peers: PeerSource | None = None
    imports: ImportSource | None = None
    auditor: AuditSource | None = None
    accounts: "DevAccounts | None" = None
    """Keys the node signs with (``--dev-accounts``, development genesis only; rpc/accounts.py)."""

    # -- blocks ------------------------------------------------------------
    @abc.abstractmethod
    def head(self) -> BlockAPI:
        """The canonical head block."""

    @abc.abstractmethod
    def block_by_number(self, number: int) -> BlockAPI | None:
        """The canonical block at ``number``, or None."""

    def head_header(self) -> BlockHeaderAPI:
        """The canonical head's header (cheap: eth_blockNumber reads only this)."""
        return self.head().header

    def pending_block(self) -> BlockAPI:
        """The block the node would build next (number head + 1); default: none is built,
        the head stands in."""
        return self.head()

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        """The canonical header at ``number`` (cheaper than the block: log scans use it)."""
        block = self.block_by_number(number)
        return None if block is None else block.header

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        """The header of the block with this hash, if known (cheaper than the block)."""
        block = self.block_by_hash(block_hash)
        return None if block is None else block.header

    @abc.abstractmethod
    def block_by_hash(self, block_hash: bytes) -> BlockAPI | None:
        """Any stored block with this hash (canonical or not), or None."""

    @abc.abstractmethod
    def is_canonical(self, block: BlockAPI) -> bool:
        """Is this block on the canonical chain?"""

    @abc.abstractmethod
    def receipts(self, block: BlockAPI) -> list[ReceiptAPI]:
        """The receipts of a stored block, in transaction order."""

    @abc.abstractmethod
    def transaction_location(self, tx_hash: bytes) -> tuple[BlockAPI, int] | None:
        """(canonical block, index) of a mined transaction, or None."""

    def total_difficulty(self, block_hash: bytes) -> int | None:
        """Cumulative difficulty (fork-choice score) of a block, if known."""
        return None

    # -- state -------------------------------------------------------------
    @abc.abstractmethod
    def state_at(self, header: BlockHeaderAPI) -> StateReader:
        """Balances, nonces, code and storage after ``header`` (chain/state_reader.py)."""

    @abc.abstractmethod
    def simulate(
        self, header: BlockHeaderAPI, overrides: dict[Address, AccountOverride] | None = None
    ) -> contextlib.AbstractContextManager[Simulation]:
        """A simulation on the state after ``header`` (block context: the next block)."""

    # -- pool --------------------------------------------------------------
    def account_proof(self, header: BlockHeaderAPI, address: bytes, slots: list[int]) -> ProofJson:
        """EIP-1186 account and storage proofs at ``header`` (eth_getProof)."""
        raise NotImplementedError

    def simulate_blocks(self, header: BlockHeaderAPI, payload: SimulatePayload, gas_cap: int) -> list[SimulatedBlockJson]:
        """eth_simulateV1's blocks on top of ``header``."""
        raise NotImplementedError

    @abc.abstractmethod
    def submit_raw_transaction(self, raw: bytes) -> SignedTransactionAPI:
        """Decode and add a signed transaction to the pool; return it. Raises TransactionRejected."""

    @abc.abstractmethod
    def pending_transactions(self) -> list[SignedTransactionAPI]:
        """Transactions in the pool."""

    @abc.abstractmethod
    def pool_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        """A pool transaction by hash, or None."""

    def pending_nonce(self, address: Address) -> int:
        """The next nonce for ``address`` counting its consecutive pool transactions."""
        nonce = int(self.state_at(self.head().header).get_nonce(address))
        taken = {tx.nonce for tx in self.pending_transactions() if tx.sender == address}
        while nonce in taken:
            nonce += 1
        return nonce

    # -- derived -----------------------------------------------------------
    def head_change(self, old_hash: bytes, new_hash: bytes, max_depth: int = 1024, *, receipts: bool = True) -> ChainChange:
        """Blocks a head change removed and added (walks both branches back to their fork).

        Reorgs deeper than ``max_depth`` are reported up to that depth only. With
        ``receipts=False`` the blocks come with empty receipt lists (nobody wants logs).
        """
        new = self.block_by_hash(new_hash)
        if new is None:
            return ChainChange([], [])
        old = self.block_by_hash(old_hash)
        added: list[BlockAPI] = []
        removed: list[BlockAPI] = []
        while old is not None and new is not None and old.hash != new.hash and len(added) < max_depth:
            if new.number >= old.number:
                added.append(new)
                new = self._parent(new)
            if old is not None and new is not None and old.number > new.number:
                removed.append(old)
                old = self._parent(old)
        if old is None and not added and new is not None:
            added.append(new)
        added.reverse()
        def with_receipts(block: BlockAPI) -> tuple[BlockAPI, list[ReceiptAPI]]:
            return block, self.receipts(block) if receipts else []

        return ChainChange(removed=[with_receipts(b) for b in removed], added=[with_receipts(b) for b in added])

    def _parent(self, block: BlockAPI) -> BlockAPI | None:
        return None if block.number == 0 else self.block_by_hash(block.header.parent_hash)


class PyEvmSimulation(Simulation):
    """A simulation on a py-evm state with base fee 0 (geth's eth_call: no fee checks)."""

    def __init__(self, vm_class: type[PouwVM], state: BaseState, base_fee: int | None) -> None:
        self.vm_class = vm_class
        self.state = state
        self.gas_limit = state.gas_limit
        self.base_fee = base_fee

    def balance(self, address: Address) -> int:
        return int(self.state.get_balance(address))

    def run(self, call: CallRequest, gas: int, *, trace_access: bool = False) -> ExecutionResult:
        from eth.exceptions import Revert

        state = self.state
        nonce = state.get_nonce(call.sender) if call.nonce is None else call.nonce
        unsigned = self.vm_class.create_unsigned_transaction(
            nonce=nonce, gas_price=0, gas=gas, to=call.to or CREATE, value=call.value, data=call.data
        )
        tx = spoofed(unsigned, call.sender)
        snapshot = state.snapshot()
        accessed: dict[Address, set[int]] = {}
        account_db = state._account_db
        traced = _trace_access(account_db, accessed) if trace_access else []
        try:
            balance = state.get_balance(call.sender)
            if balance < call.value:
                raise CallInvalid(
                    f"insufficient funds for gas * price + value: address 0x{call.sender.hex()} "
                    f"have {balance} want {call.value}"
                )
            state.set_nonce(call.sender, nonce)
            try:
                computation = state.apply_transaction(tx)
            except (CallTimeout, LeaveTheLoop):
                raise
            except Exception as exc:  # noqa: BLE001 - py-evm's ValidationError: the tx cannot start
                raise CallInvalid(_validation_message(str(exc))) from None
            gas_used = self.vm_class.finalize_gas_used(tx, computation)
            if computation.is_error:
                reverted = isinstance(computation.error, Revert)
                return ExecutionResult(
                    False,
                    bytes(computation.output) if reverted else b"",
                    gas_used,
                    reverted=reverted,
                    error=None if reverted else _vm_error_message(computation.error),
                    accessed=accessed,
                )
            return ExecutionResult(True, bytes(computation.output), gas_used, accessed=accessed)
        finally:
            for name in traced:
                delattr(account_db, name)
            state.revert(snapshot)


def spoofed(unsigned: UnsignedTransactionAPI, sender: bytes) -> SignedTransactionAPI:
    """``unsigned`` as if ``sender`` had signed it (py-evm's ``SpoofTransaction``, which
    stands in for a signed transaction, as py-evm's own gas estimator uses it)."""
    return cast(SignedTransactionAPI, SpoofTransaction(unsigned, from_=sender))


def _validation_message(message: str) -> str:
    if "intrinsic gas" in message.lower():
        return "intrinsic gas too low"
    return message


def _trace_access(account_db: AccountDatabaseAPI, accessed: dict[Address, set[int]]) -> list[str]:
    """Record every address and slot the EVM warms, by wrapping the account db's markers."""
    mark_address = account_db.mark_address_warm
    mark_storage = account_db.mark_storage_warm

    def address_warm(address: Address) -> None:
        accessed.setdefault(Address(bytes(address)), set())
        mark_address(address)

    def storage_warm(address: Address, slot: int) -> None:
        accessed.setdefault(Address(bytes(address)), set()).add(int(slot))
        mark_storage(address, slot)

    setattr(account_db, "mark_address_warm", address_warm)
    setattr(account_db, "mark_storage_warm", storage_warm)
    return ["mark_address_warm", "mark_storage_warm"]


def _vm_error_message(error: BaseException | None) -> str:
    """geth's wording for common VM errors."""
    name = type(error).__name__
    return {
        "OutOfGas": "out of gas",
        "InsufficientStack": "stack underflow",
        "FullStack": "stack overflow",
        "InvalidJumpDestination": "invalid jump destination",
        "InvalidInstruction": "invalid opcode",
        "WriteProtection": "write protection",
        "InsufficientFunds": "insufficient balance for transfer",
        "StackDepthLimit": "max call depth exceeded",
        "ContractCreationCollision": "contract address collision",
        "OutOfBoundsRead": "return data out of bounds",
        "ReservedBytesInCode": "invalid code: must not begin with 0xef",
    }.get(name, str(error) or name)


def apply_overrides(state: StateAPI, overrides: dict[Address, AccountOverride]) -> None:
    """Apply eth_call state overrides to a py-evm state."""
    for address, override in overrides.items():
        if override.balance is not None:
            state.set_balance(address, override.balance)
        if override.nonce is not None:
            state.set_nonce(address, override.nonce)
        if override.code is not None:
            state.set_code(address, override.code)
        if override.state is not None:
            state.delete_storage(address)
            for slot, value in override.state.items():
                state.set_storage(address, slot, value)
        if override.state_diff is not None:
            for slot, value in override.state_diff.items():
                state.set_storage(address, slot, value)


class ChainBackend(Backend):
    """The backend over the node's :class:`chain.chain.Chain` and its transaction pool.

    The node wires block import to ``self.events`` (or calls :meth:`notify_new_head`);
    transactions accepted here are announced by this class itself.
    """

    def __init__(self, chain: Chain, *, events: EventHub | None = None) -> None:
        self.chain = chain
        self.chain_id = int(chain.genesis.chain_id)
        self.events = events or EventHub()
        self._sim_cache = threading.local()
        self.miner = None
        self.peers = None
        self.imports = None
        self.transaction_listeners: list[Callable[[SignedTransactionAPI], None]] = []
        """Called, in the submitting thread, with each transaction the pool admits here
        (rpc/automine.py wakes on it); keep them quick."""
        self._pouw_view: PouwView | None = None
        self._pending_lock = threading.Lock()
        self._pending_cache: tuple[tuple[Hash32, int | None], BlockAPI] | None = None
        self._pouw_lock = threading.Lock()

    @property
    def pouw(self) -> PouwView:
        """The job market's reads (rpc.pouw_view.PouwView), built on first use."""
        with self._pouw_lock:
            if self._pouw_view is None:
                from rpc.pouw_view import PouwView

                self._pouw_view = PouwView(self.chain)
            return self._pouw_view

    # -- blocks --
    def head(self) -> BlockAPI:
        return self.chain.head_block()

    def block_by_number(self, number: int) -> BlockAPI | None:
        try:
            return self.chain.get_block_by_number(number)
        except (HeaderNotFound, BlockNotFound, KeyError):
            return None

    def head_header(self) -> BlockHeaderAPI:
        return self.chain.head()

    def header_by_number(self, number: int) -> BlockHeaderAPI | None:
        try:
            return self.chain.get_header_by_hash(self.chain.get_canonical_hash(number))
        except (HeaderNotFound, KeyError):
            return None

    def header_by_hash(self, block_hash: bytes) -> BlockHeaderAPI | None:
        try:
            return self.chain.get_header_by_hash(Hash32(block_hash))
        except (HeaderNotFound, KeyError):
            return None

    def block_by_hash(self, block_hash: bytes) -> BlockAPI | None:
        try:
            return self.chain.get_block_by_hash(Hash32(block_hash))
        except (HeaderNotFound, BlockNotFound, KeyError):
            return None

    def is_canonical(self, block: BlockAPI) -> bool:
        try:
            return bool(self.chain.get_canonical_hash(block.number) == block.hash)
        except HeaderNotFound:
            return False

    def receipts(self, block: BlockAPI) -> list[ReceiptAPI]:
        return list(self.chain.get_receipts(block))

    def transaction_location(self, tx_hash: bytes) -> tuple[BlockAPI, int] | None:
        location = self.chain.get_transaction_by_hash(Hash32(tx_hash))
        if location is None:
            return None
        block = self.block_by_hash(location.block_hash)
        return None if block is None else (block, location.index)

    def total_difficulty(self, block_hash: bytes) -> int | None:
        try:
            return int(self.chain.score(Hash32(block_hash)))
        except (HeaderNotFound, KeyError):
            return None

    # -- state --
    def state_at(self, header: BlockHeaderAPI) -> StateReader:
        return self.chain.reader_at(header)

    @contextlib.contextmanager
    def simulate(self, header: BlockHeaderAPI, overrides: dict[Address, AccountOverride] | None = None) -> Iterator[Simulation]:
        """State after ``header``; block context: its child, with base fee 0 (as geth).

        Without overrides, each executor thread reuses its last state for the same block
        (calls roll back to a snapshot), so py-evm's account and trie-node caches stay
        warm across calls: about twice the eth_call throughput on a hot contract.
        """
        if overrides:
            simulation = self._new_simulation(header)
            apply_overrides(simulation.state, overrides)
            yield simulation
            return
        cached = getattr(self._sim_cache, "entry", None)
        if cached is None or cached[0] != header.hash:
            cached = (header.hash, self._new_simulation(header))
            self._sim_cache.entry = cached
        simulation = cached[1]
        snapshot = simulation.state.snapshot()
        try:
            yield simulation
        except BaseException:
            self._sim_cache.entry = None  # a call stopped half-way (timeout): start afresh
            raise
        finally:
            simulation.state.revert(snapshot)

    def account_proof(self, header: BlockHeaderAPI, address: bytes, slots: list[int]) -> ProofJson:
        """eth_getProof's answer at ``header``'s state (rpc/proofs.py)."""
        from rpc.proofs import account_proof

        return account_proof(self.chain.reader_at(header), address, slots)

    def simulate_blocks(self, header: BlockHeaderAPI, payload: SimulatePayload, gas_cap: int) -> list[SimulatedBlockJson]:
        """eth_simulateV1 on the state after ``header`` (rpc/simulate.py)."""
        from rpc.simulate import simulate_v1

        return simulate_v1(self, header, payload, gas_cap)

    @functools.cached_property
    def simulation_vm_class(self) -> type[PouwVM]:
        """The chain's VM whose computations stop at the calling thread's deadline
        (rpc/evm_deadline.py); block import keeps the chain's own VM."""
        from rpc.evm_deadline import vm_with_deadline

        return vm_with_deadline(self.chain.vm_class)

    @functools.cached_property
    def transfer_tracing_vm_class(self) -> type[PouwVM]:
        """The simulation VM that can also log ether transfers (eth_simulateV1's
        traceTransfers; rpc/simulate.py)."""
        from rpc.simulate import vm_with_transfer_logs

        return vm_with_transfer_logs(self.simulation_vm_class)

    def _new_simulation(self, header: BlockHeaderAPI) -> PyEvmSimulation:
        chain = self.chain
        vm_class = self.simulation_vm_class
        child = vm_class.create_header_from_parent(
            header, coinbase=header.coinbase, timestamp=header.timestamp + 1
        )
        base_fee = getattr(child, "base_fee_per_gas", None)
        context_header = child.copy(state_root=header.state_root, base_fee_per_gas=0)
        state = vm_class.build_state(
            chain.db, context_header, chain.chain_context, _Ancestors(chain.chaindb, header)
        )
        assert isinstance(state, BaseState), "access tracing wraps py-evm's account db"
        return PyEvmSimulation(vm_class, state, base_fee)

    def pending_block(self) -> BlockAPI:
        """The block this node would build now: number head + 1, the pool's pending
        transactions that fit, executed on the head state (nothing is stored). Built
        again only when the head or the pool changed."""
        head = self.chain.head()
        version = getattr(self.pool, "version", None)
        key = (head.hash, version)
        with self._pending_lock:
            cached = self._pending_cache
            if cached is not None and cached[0] == key and version is not None:
                return cached[1]
        coinbase = getattr(self.miner, "coinbase", None) or ZERO_ADDRESS
        block, _ = self.chain.build_block(coinbase, parent_hash=head.hash)
        with self._pending_lock:
            self._pending_cache = (key, block)
        return block

    # -- pool --
    @property
    def pool(self) -> TxPool | None:
        return self.chain.txpool

    def submit_raw_transaction(self, raw: bytes) -> SignedTransactionAPI:
        """Hand the raw bytes to the pool, which decodes and checks them (geth's messages)."""
        if self.pool is None:
            raise TransactionRejected("transaction pool disabled on this node")
        try:
            tx_hash = self.pool.add(raw)
        except Exception as exc:  # noqa: BLE001 - the pool's typed errors carry geth's message
            if isinstance(exc, (AssertionError, AttributeError, TypeError, NameError)):
                raise  # a bug, not a rejection: reported as -32603 and logged
            raise TransactionRejected(getattr(exc, "rpc_message", None) or str(exc), refusal=exc) from None
        tx = self.pool.get(tx_hash)
        if tx is None:  # admitted and already gone (mined or evicted): decode for the record
            from chain.transactions import decode_raw_transaction

            tx = decode_raw_transaction(raw, max_size=len(raw))
        self.events.notify_new_transaction(tx)
        for listener in list(self.transaction_listeners):
            listener(tx)
        return tx

    def pending_transactions(self) -> list[SignedTransactionAPI]:
        if self.pool is None:
            return []
        return list(self.pool.pending())

    def pool_transaction(self, tx_hash: bytes) -> SignedTransactionAPI | None:
        if self.pool is None:
            return None
        return self.pool.get(Hash32(tx_hash))

    def pending_nonce(self, address: Address) -> int:
        pool = self.pool
        if pool is not None and hasattr(pool, "next_nonce"):
            return int(pool.next_nonce(address))
        return super().pending_nonce(address)

    # -- events --
    def notify_new_head(self, block_hash: bytes) -> None:
        """Call after an import changed the canonical head (any thread)."""
        self.events.notify_new_head(block_hash)


class _Ancestors:
    """Hashes of ``header`` and its ancestors, newest first, read lazily (BLOCKHASH in calls)."""

    def __init__(self, chaindb: ChainDatabaseAPI, header: BlockHeaderAPI, limit: int = 256) -> None:
        self.chaindb = chaindb
        self.header = header
        self.limit = limit

    def __iter__(self) -> Iterator[Hash32]:
        header = self.header
        for _ in range(self.limit):
            yield header.hash
            if header.block_number == 0:
                return
            header = self.chaindb.get_block_header_by_hash(header.parent_hash)

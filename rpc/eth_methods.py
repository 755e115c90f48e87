"""The eth_, net_ and web3_ namespaces.

Handlers that read the chain are plain functions marked ``blocking=True`` (they run in
the thread executor); those that only touch the filter table or a connection are
coroutines on the loop, and so are those whose work is small and bounded: state reads
of the head, ``eth_sendRawTransaction``, and ``eth_call``'s first try (rpc/evm_deadline.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Literal, NotRequired, TypedDict, TypeVar

from eth.abc import BlockAPI, BlockHeaderAPI
from eth_typing import Address, Hash32
from eth_utils import keccak

from rpc import encoding
from chain.state_reader import StateReader
from rpc.backend import AccountOverride, CallInvalid, CallRequest, ExecutionResult, Simulation, TransactionRejected
from rpc.call_cache import CallOutcome, request_bytes
from rpc.context import CallContext
from rpc.evm_deadline import fits_on_the_loop
from rpc.errors import (
    ExecutionReverted,
    InvalidParams,
    LimitExceeded,
    ResourceNotFound,
    ServerError,
)
from rpc.encoding import BlockJson, LogJson, ReceiptJson, TransactionJson
from rpc.filters import Filter, FilterItem, LogCriteria
from rpc.hexcodec import data, parse_address, parse_data, parse_hash, parse_storage_slot, quantity
from rpc.params import (
    LATEST,
    BlockId,
    FilterQuery,
    parse_block_id,
    parse_block_number,
    parse_bool,
    parse_call,
    parse_filter,
    parse_index,
    parse_overrides,
)
from rpc.jsontypes import Json, JsonObject
from rpc.registry import Param, Registry

if TYPE_CHECKING:
    from rpc.proofs import ProofJson
    from rpc.simulate import SimulatedBlockJson, SimulatePayload

eth = Registry()

TX_GAS = 21_000
#: Precompiles through Prague (0x01..0x11), left out of access lists like geth does.
PRECOMPILES = frozenset(i.to_bytes(20, "big") for i in range(1, 0x12))
DEFAULT_TIP = 1_000_000_000  # 1 gwei when recent blocks hold no transactions
FEE_HISTORY_MAX_BLOCKS = 1024


# -- web3 / net -------------------------------------------------------------

@eth.method("web3_clientVersion")
async def web3_client_version(ctx: CallContext) -> str:
    return ctx.backend.client_version


@eth.method("web3_sha3", Param("data", parse_data))
async def web3_sha3(ctx: CallContext, payload: bytes) -> str:
    return data(keccak(payload))


@eth.method("net_version")
async def net_version(ctx: CallContext) -> str:
    return str(ctx.backend.chain_id)


@eth.method("net_listening")
async def net_listening(ctx: CallContext) -> bool:
    return True


@eth.method("net_peerCount")
async def net_peer_count(ctx: CallContext) -> str:
    peers = ctx.backend.peers
    return quantity(peers.peer_count if peers is not None else 0)


# -- node state -------------------------------------------------------------

@eth.method("eth_chainId")
async def chain_id(ctx: CallContext) -> str:
    return quantity(ctx.backend.chain_id)


class SyncingJson(TypedDict):
    startingBlock: str
    currentBlock: str
    highestBlock: str


@eth.method("eth_syncing")
async def syncing(ctx: CallContext) -> Literal[False] | SyncingJson:
    """False when in sync; else geth's object: where sync started, where we are, the best
    peer's head (p2p knows: ``rpc.sources.PeerSource.sync_status``)."""
    peers = ctx.backend.peers
    status = peers.sync_status() if peers is not None else None
    if status is None:
        return False
    return {"startingBlock": quantity(status.starting_block), "currentBlock": quantity(status.current_block),
            "highestBlock": quantity(status.highest_block)}


@eth.method("eth_blockNumber")
async def block_number(ctx: CallContext) -> str:
    # One small key read (the head header is cached after decoding): fine on the loop.
    return quantity(ctx.backend.head_header().block_number)


@eth.method("eth_mining")
async def mining(ctx: CallContext) -> bool:
    miner = ctx.backend.miner
    return bool(miner is not None and miner.running)


@eth.method("eth_hashrate")
async def hashrate(ctx: CallContext) -> str:
    """Useful work units per second trained by this node's miner (0 when it does not mine)."""
    miner = ctx.backend.miner
    if miner is None or not miner.running:
        return quantity(0)
    return quantity(int(miner.status()["work_units_per_second"]))


# -- helpers ----------------------------------------------------------------

def resolve_block(ctx: CallContext, block_id: BlockId, *, pending: bool = False) -> BlockAPI | None:
    """The block a BlockId names, or None. ``pending`` is the block the node would build
    next (number head + 1, from the pool) where ``pending=True`` (methods that return
    blocks and their transactions), the head for state reads (its state is not stored);
    safe/finalized are the head (there is no finality gadget)."""
    backend = ctx.backend
    if pending and block_id.tag == "pending":
        return backend.pending_block()
    if block_id.block_hash is not None:
        block = backend.block_by_hash(block_id.block_hash)
        if block is not None and block_id.require_canonical and not backend.is_canonical(block):
            raise ServerError(f"hash 0x{block_id.block_hash.hex()} is not currently canonical")
        return block
    if block_id.number is not None:
        return backend.block_by_number(block_id.number)
    if block_id.tag == "earliest":
        return backend.block_by_number(0)
    return backend.head()


def require_block(ctx: CallContext, block_id: BlockId) -> BlockAPI:
    """Like resolve_block but missing is an error (state methods), with geth's message."""
    block = resolve_block(ctx, block_id)
    if block is None:
        raise ServerError("header not found" if block_id.block_hash is None else "header for hash not found")
    return block


def block_result(ctx: CallContext, block: BlockAPI | None, full: bool, *, pending: bool = False) -> BlockJson | None:
    if block is None:
        return None
    result = encoding.block_json(block, full_transactions=full)
    if pending:  # geth: a pending block has no hash, nonce or miner yet
        result["hash"] = result["nonce"] = result["miner"] = None
        if full:
            for tx in result["transactions"]:
                if isinstance(tx, dict):
                    tx["blockHash"] = None
    return result


# -- state ------------------------------------------------------------------

#: Tags that name the head for state reads (``pending`` too: its state is not stored).
HEAD_TAGS = ("latest", "pending", "safe", "finalized")

T = TypeVar("T")


async def _read_state(ctx: CallContext, block_id: BlockId, read: Callable[[StateReader], T]) -> T:
    """``read`` of the state ``block_id`` names. The head's is read on the event loop: a
    few trie nodes, and the head's reader keeps the accounts it decoded (handing such a
    read to a thread cost more than the read). Other blocks are read in the executor."""
    backend = ctx.backend
    if block_id.tag in HEAD_TAGS:
        return read(backend.state_at(backend.head_header()))

    def at_block() -> T:
        return read(backend.state_at(require_block(ctx, block_id).header))

    return await ctx.services.run_blocking(at_block)


@eth.method("eth_getBalance", Param("address", parse_address), Param("block", parse_block_id, LATEST))
async def get_balance(ctx: CallContext, address: Address, block_id: BlockId) -> str:
    return quantity(await _read_state(ctx, block_id, lambda state: state.get_balance(address)))


@eth.method("eth_getTransactionCount", Param("address", parse_address), Param("block", parse_block_id, LATEST))
async def get_transaction_count(ctx: CallContext, address: Address, block_id: BlockId) -> str:
    if block_id.tag == "pending":
        return quantity(ctx.backend.pending_nonce(address))
    return quantity(await _read_state(ctx, block_id, lambda state: state.get_nonce(address)))


@eth.method("eth_getCode", Param("address", parse_address), Param("block", parse_block_id, LATEST))
async def get_code(ctx: CallContext, address: Address, block_id: BlockId) -> str:
    return data(await _read_state(ctx, block_id, lambda state: state.get_code(address)))


@eth.method(
    "eth_getStorageAt",
    Param("address", parse_address),
    Param("slot", parse_storage_slot),
    Param("block", parse_block_id, LATEST),
)
async def get_storage_at(ctx: CallContext, address: Address, slot: int, block_id: BlockId) -> str:
    value = await _read_state(ctx, block_id, lambda state: state.get_storage(address, slot))
    return data(int(value).to_bytes(32, "big"))


# -- execution --------------------------------------------------------------

def _call_gas(ctx: CallContext, call: CallRequest) -> int:
    cap = ctx.config.gas_cap
    return cap if call.gas is None else min(call.gas, cap)


def _raise_for(result: ExecutionResult) -> None:
    if result.reverted:
        raise ExecutionReverted(result.output)
    if not result.success:
        raise ServerError(result.error or "execution failed")


@eth.method(
    "eth_call",
    Param("transaction", parse_call),
    Param("block", parse_block_id, LATEST),
    Param("stateOverrides", parse_overrides, None),
)
async def call(
    ctx: CallContext, request: CallRequest, block_id: BlockId, overrides: dict[Address, AccountOverride] | None
) -> str:
    """Runs under the wall-clock limit, tried first on the event loop (a cheap call) and
    else in the EVM executor (``Services.run_evm``). A call on the head (or on a block
    named by hash) without overrides is answered from rpc/call_cache.py when the same
    call ran on the same block before, or waits for it if it is running."""
    services = ctx.services
    header = None if overrides else _header_without_block(ctx, block_id)
    if header is None:  # overrides (applying them is not metered) or a block to decode: a thread
        return _answer(await services.run_evm(_call_outcome, ctx, block_id, request, overrides))
    inline = fits_on_the_loop(len(request.data), len(request.access_list))
    cache = services.call_cache
    if cache is None:
        return _answer(await services.run_evm(_call_outcome, ctx, header, request, None, try_inline=inline))
    outcome = await cache.run(
        (header.hash, request), request_bytes(request),
        lambda: services.run_evm(_call_outcome, ctx, header, request, None, try_inline=inline),
    )
    return _answer(outcome)


def _header_without_block(ctx: CallContext, block_id: BlockId) -> BlockHeaderAPI | None:
    """The header an eth_call on ``block_id`` runs after, when it can be had without
    decoding a whole block: the head for the tags that mean it here, a header by hash.
    None for numbers, ``earliest`` and hashes that must be canonical: those calls are
    neither cached nor tried on the event loop (a 2 MB block is not decoded there)."""
    backend = ctx.backend
    if block_id.tag in HEAD_TAGS:
        return backend.head_header()
    if block_id.block_hash is not None and not block_id.require_canonical:
        header = backend.header_by_hash(block_id.block_hash)
        if header is None:
            raise ServerError("header for hash not found")
        return header
    return None


def _call_outcome(
    ctx: CallContext,
    target: BlockId | BlockHeaderAPI,
    request: CallRequest,
    overrides: dict[Address, AccountOverride] | None,
) -> CallOutcome:
    header = require_block(ctx, target).header if isinstance(target, BlockId) else target
    with ctx.backend.simulate(header, overrides) as sim:
        try:
            result = sim.run(request, _call_gas(ctx, request))
        except CallInvalid as exc:
            return CallOutcome(error=str(exc))
    if result.reverted:
        return CallOutcome(reverted=result.output)
    if not result.success:
        return CallOutcome(error=result.error or "execution failed")
    return CallOutcome(output=data(result.output))


def _answer(outcome: CallOutcome) -> str:
    if outcome.output is not None:
        return outcome.output
    if outcome.reverted is not None:
        raise ExecutionReverted(outcome.reverted)
    raise ServerError(outcome.error or "execution failed")


@eth.method(
    "eth_estimateGas",
    Param("transaction", parse_call),
    Param("block", parse_block_id, LATEST),
    Param("stateOverrides", parse_overrides, None),
    evm=True,
)
def estimate_gas(
    ctx: CallContext, request: CallRequest, block_id: BlockId, overrides: dict[Address, AccountOverride] | None
) -> str:
    block = require_block(ctx, block_id)
    with ctx.backend.simulate(block.header, overrides) as sim:
        try:
            return quantity(_estimate(ctx, sim, request, block.header.gas_limit))
        except CallInvalid as exc:
            raise ServerError(str(exc)) from None


def _estimate(ctx: CallContext, sim: Simulation, request: CallRequest, block_gas_limit: int) -> int:
    """geth's estimator: run at the cap, then binary-search the least gas that succeeds
    (to within 1.5%), starting from the gas the capped run used."""
    hi = request.gas if request.gas is not None and request.gas >= TX_GAS else block_gas_limit
    hi = min(hi, ctx.config.gas_cap)
    fee_cap = request.gas_price or request.max_fee_per_gas or 0
    if fee_cap:
        balance = sim.balance(request.sender)
        if request.value > balance:
            raise ServerError("insufficient funds for transfer")
        allowance = (balance - request.value) // fee_cap
        if allowance < hi:
            hi = allowance
    if hi < TX_GAS:
        raise ServerError(f"gas required exceeds allowance ({hi})")
    result = sim.run(request, hi)
    if not result.success:
        if result.reverted:
            raise ExecutionReverted(result.output)
        if result.error == "out of gas":
            raise ServerError(f"gas required exceeds allowance ({hi})")
        raise ServerError(result.error or "execution failed")
    if not request.data and request.to is not None and result.gas_used == TX_GAS:
        return TX_GAS  # a plain transfer
    lo = result.gas_used - 1
    optimistic = (result.gas_used + 2300) * 64 // 63
    if optimistic < hi:
        if sim.run(request, optimistic).success:
            hi = optimistic
        else:
            lo = optimistic
    while lo + 1 < hi:
        if (hi - lo) / hi < 0.015:
            break
        mid = (hi + lo) // 2
        if mid > lo * 2:
            mid = lo * 2  # most calls need little more than they used: probe low first
        if sim.run(request, mid).success:
            hi = mid
        else:
            lo = mid
    return hi


class AccessListResultJson(TypedDict):
    accessList: list[encoding.AccessListEntryJson]
    gasUsed: str
    error: NotRequired[str]


@eth.method(
    "eth_createAccessList",
    Param("transaction", parse_call),
    Param("block", parse_block_id, LATEST),
    evm=True,
)
def create_access_list(ctx: CallContext, request: CallRequest, block_id: BlockId) -> AccessListResultJson:
    block = require_block(ctx, block_id)
    with ctx.backend.simulate(block.header) as sim:
        try:
            result = sim.run(request, _call_gas(ctx, request), trace_access=True)
        except CallInvalid as exc:
            raise ServerError(str(exc)) from None
    excluded = PRECOMPILES | {request.sender, block.header.coinbase}
    if request.to is not None:
        excluded = excluded | {request.to}
    entries = [
        (address, tuple(sorted(slots)))
        for address, slots in result.accessed.items()
        if address not in excluded or (slots and address == request.to)
    ]
    answer: AccessListResultJson = {"accessList": encoding.access_list_json(entries), "gasUsed": quantity(result.gas_used)}
    if not result.success:
        answer["error"] = "execution reverted" if result.reverted else (result.error or "execution failed")
    return answer


def _parse_slots(value: Json) -> list[int]:
    from rpc.proofs import MAX_PROOF_SLOTS

    if not isinstance(value, list):
        raise ValueError("expected array of storage keys")
    if len(value) > MAX_PROOF_SLOTS:
        raise ValueError(f"too many storage keys (at most {MAX_PROOF_SLOTS})")
    return [parse_storage_slot(slot) for slot in value]


@eth.method(
    "eth_getProof",
    Param("address", parse_address),
    Param("storageKeys", _parse_slots),
    Param("block", parse_block_id, LATEST),
    blocking=True,
)
def get_proof(ctx: CallContext, address: bytes, slots: list[int], block_id: BlockId) -> ProofJson:
    """EIP-1186 account and storage proofs against the block's state root (rpc/proofs.py)."""
    block = require_block(ctx, block_id)
    return ctx.backend.account_proof(block.header, address, slots)


def _parse_simulate(value: Json) -> SimulatePayload:
    from rpc.simulate import parse_simulate_payload

    return parse_simulate_payload(value)


@eth.method("eth_simulateV1", Param("payload", _parse_simulate), Param("block", parse_block_id, LATEST), evm=True)
def simulate_v1(ctx: CallContext, payload: SimulatePayload, block_id: BlockId) -> list[SimulatedBlockJson]:
    """Calls in a chain of simulated blocks on the block's state (rpc/simulate.py)."""
    block = require_block(ctx, block_id)
    return ctx.backend.simulate_blocks(block.header, payload, ctx.config.gas_cap)


# -- transactions -----------------------------------------------------------

@eth.method("eth_sendRawTransaction", Param("transaction", parse_data))
async def send_raw_transaction(ctx: CallContext, raw: bytes) -> str:
    """On the event loop: the work is bounded (decoding at most the pool's transaction
    size, one signature recovery, the sender's account read, the pool's bookkeeping:
    about 0.1 ms for a transfer), less than handing it to a thread and back."""
    return submit_raw(ctx, raw)


def submit_raw(ctx: CallContext, raw: bytes) -> str:
    """Hand ``raw`` to the pool; its hash, or -32000 with the pool's (geth's) reason."""
    try:
        tx = ctx.backend.submit_raw_transaction(raw)
    except TransactionRejected as exc:
        raise ServerError(str(exc)) from None
    return data(tx.hash)


@eth.method("eth_getTransactionByHash", Param("hash", parse_hash), blocking=True)
def get_transaction_by_hash(ctx: CallContext, tx_hash: Hash32) -> TransactionJson | None:
    """Chain, then pool, then chain again: an import commits its block before it takes
    the transaction out of the pool, so a transaction that left the pool between the
    first two looks is found by the third (never a false null during an import)."""
    backend = ctx.backend
    location = backend.transaction_location(tx_hash)
    if location is None:
        tx = backend.pool_transaction(tx_hash)
        if tx is not None:
            return encoding.transaction_json(tx)
        location = backend.transaction_location(tx_hash)
    if location is None:
        return None
    block, index = location
    return _tx_in_block(block, index)


def _tx_in_block(block: BlockAPI, index: int) -> TransactionJson | None:
    if index >= len(block.transactions):
        return None
    return encoding.transaction_json(
        block.transactions[index], block_hash=block.hash, block_number=block.number, index=index,
        base_fee=getattr(block.header, "base_fee_per_gas", None), block_timestamp=block.header.timestamp,
    )


@eth.method("eth_getTransactionReceipt", Param("hash", parse_hash), blocking=True)
def get_transaction_receipt(ctx: CallContext, tx_hash: Hash32) -> ReceiptJson | None:
    location = ctx.backend.transaction_location(tx_hash)
    if location is None:
        return None
    block, index = location
    return encoding.receipt_json(block, ctx.backend.receipts(block), index)


@eth.method("eth_getBlockReceipts", Param("block", parse_block_id), blocking=True)
def get_block_receipts(ctx: CallContext, block_id: BlockId) -> list[ReceiptJson] | None:
    block = resolve_block(ctx, block_id)
    if block is None:
        return None
    receipts = ctx.backend.receipts(block)
    return [encoding.receipt_json(block, receipts, i) for i in range(len(block.transactions))]


@eth.method(
    "eth_getTransactionByBlockHashAndIndex", Param("blockHash", parse_hash), Param("index", parse_index), blocking=True
)
def get_tx_by_block_hash_and_index(ctx: CallContext, block_hash: Hash32, index: int) -> TransactionJson | None:
    block = ctx.backend.block_by_hash(block_hash)
    return None if block is None else _tx_in_block(block, index)


@eth.method(
    "eth_getTransactionByBlockNumberAndIndex", Param("block", parse_block_number), Param("index", parse_index), blocking=True
)
def get_tx_by_block_number_and_index(ctx: CallContext, block_id: BlockId, index: int) -> TransactionJson | None:
    block = resolve_block(ctx, block_id, pending=True)
    return None if block is None else _tx_in_block(block, index)


def _raw_in_block(block: BlockAPI | None, index: int) -> str | None:
    if block is None or index >= len(block.transactions):
        return None
    return data(block.transactions[index].encode())


@eth.method("eth_getRawTransactionByHash", Param("hash", parse_hash), blocking=True)
def get_raw_transaction_by_hash(ctx: CallContext, tx_hash: bytes) -> str | None:
    """The signed transaction's bytes (the EIP-2718 envelope), mined or pooled; looked
    up in the same order as eth_getTransactionByHash."""
    backend = ctx.backend
    location = backend.transaction_location(tx_hash)
    if location is None:
        tx = backend.pool_transaction(tx_hash)
        if tx is not None:
            return data(tx.encode())
        location = backend.transaction_location(tx_hash)
    return None if location is None else _raw_in_block(*location)


@eth.method(
    "eth_getRawTransactionByBlockHashAndIndex", Param("blockHash", parse_hash), Param("index", parse_index), blocking=True
)
def get_raw_tx_by_block_hash_and_index(ctx: CallContext, block_hash: bytes, index: int) -> str | None:
    return _raw_in_block(ctx.backend.block_by_hash(block_hash), index)


@eth.method(
    "eth_getRawTransactionByBlockNumberAndIndex", Param("block", parse_block_number), Param("index", parse_index), blocking=True
)
def get_raw_tx_by_block_number_and_index(ctx: CallContext, block_id: BlockId, index: int) -> str | None:
    return _raw_in_block(resolve_block(ctx, block_id, pending=True), index)


# -- blocks -----------------------------------------------------------------

# fullTransactions is required, as in geth and the execution-apis schema: one parameter is -32602.
@eth.method("eth_getBlockByHash", Param("blockHash", parse_hash), Param("fullTransactions", parse_bool), blocking=True)
def get_block_by_hash(ctx: CallContext, block_hash: Hash32, full: bool) -> BlockJson | None:
    return block_result(ctx, ctx.backend.block_by_hash(block_hash), full)


@eth.method("eth_getBlockByNumber", Param("block", parse_block_number), Param("fullTransactions", parse_bool), blocking=True)
def get_block_by_number(ctx: CallContext, block_id: BlockId, full: bool) -> BlockJson | None:
    pending = block_id.tag == "pending"
    return block_result(ctx, resolve_block(ctx, block_id, pending=True), full, pending=pending)


@eth.method("eth_getBlockTransactionCountByHash", Param("blockHash", parse_hash), blocking=True)
def tx_count_by_hash(ctx: CallContext, block_hash: Hash32) -> str | None:
    block = ctx.backend.block_by_hash(block_hash)
    return None if block is None else quantity(len(block.transactions))


@eth.method("eth_getBlockTransactionCountByNumber", Param("block", parse_block_number), blocking=True)
def tx_count_by_number(ctx: CallContext, block_id: BlockId) -> str | None:
    block = resolve_block(ctx, block_id, pending=True)
    return None if block is None else quantity(len(block.transactions))


@eth.method("eth_getUncleCountByBlockHash", Param("blockHash", parse_hash), blocking=True)
def uncle_count_by_hash(ctx: CallContext, block_hash: Hash32) -> str | None:
    block = ctx.backend.block_by_hash(block_hash)
    return None if block is None else quantity(len(block.uncles))


@eth.method("eth_getUncleCountByBlockNumber", Param("block", parse_block_number), blocking=True)
def uncle_count_by_number(ctx: CallContext, block_id: BlockId) -> str | None:
    block = resolve_block(ctx, block_id, pending=True)
    return None if block is None else quantity(len(block.uncles))


# -- fees -------------------------------------------------------------------

def next_base_fee(parent: BlockHeaderAPI) -> int:
    """EIP-1559 base fee of the block after ``parent`` (elasticity 2, change 1/8)."""
    raw_base_fee = getattr(parent, "base_fee_per_gas", None)
    if raw_base_fee is None:
        return 0
    base_fee = int(raw_base_fee)
    target = int(parent.gas_limit) // 2
    gas_used = int(parent.gas_used)
    if target == 0 or gas_used == target:
        return base_fee
    if gas_used > target:
        delta = max(base_fee * (gas_used - target) // target // 8, 1)
        return base_fee + delta
    return max(base_fee - base_fee * (target - gas_used) // target // 8, 0)


def _tips(block: BlockAPI) -> list[int]:
    base_fee = getattr(block.header, "base_fee_per_gas", None) or 0
    return [encoding.effective_gas_price(tx, base_fee) - base_fee for tx in block.transactions]


def suggest_tip(ctx: CallContext, blocks: int = 20, percentile: int = 60) -> int:
    """geth's oracle, simplified: the 60th percentile of tips paid in the last 20 blocks."""
    head = ctx.backend.head()
    tips: list[int] = []
    block: BlockAPI | None = head
    for _ in range(blocks):
        if block is None:
            break
        tips.extend(_tips(block))
        if block.number == 0:
            break
        block = ctx.backend.block_by_hash(block.header.parent_hash)
    if not tips:
        return DEFAULT_TIP
    tips.sort()
    return tips[(len(tips) - 1) * percentile // 100]


@eth.method("eth_maxPriorityFeePerGas", blocking=True)
def max_priority_fee(ctx: CallContext) -> str:
    return quantity(suggest_tip(ctx))


@eth.method("eth_gasPrice", blocking=True)
def gas_price(ctx: CallContext) -> str:
    return quantity(suggest_tip(ctx) + next_base_fee(ctx.backend.head_header()))


#: EIP-4844's minimum blob base fee. This chain takes no blob transactions (types 0, 1,
#: 2 only), so its blob gas market never leaves the minimum.
MIN_BLOB_BASE_FEE = 1


@eth.method("eth_blobBaseFee")
async def blob_base_fee(ctx: CallContext) -> str:
    return quantity(MIN_BLOB_BASE_FEE)


def _parse_percentiles(value: Json) -> list[float]:
    if not isinstance(value, list) or len(value) > 100:
        raise ValueError("expected array of at most 100 percentiles")
    percentiles: list[float] = []
    previous = -1.0
    for p in value:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 100 or p < previous:
            raise ValueError("percentiles must be numbers in [0, 100], ascending")
        previous = float(p)
        percentiles.append(previous)
    return percentiles


def _parse_block_count(value: Json) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("negative block count")
        return value
    from rpc.hexcodec import parse_quantity

    return parse_quantity(value, bits=64)


class FeeHistoryJson(TypedDict):
    oldestBlock: str
    baseFeePerGas: list[str]
    gasUsedRatio: list[float]
    reward: NotRequired[list[list[str]]]


@eth.method(
    "eth_feeHistory",
    Param("blockCount", _parse_block_count),
    Param("newestBlock", parse_block_number),
    Param("rewardPercentiles", _parse_percentiles, None),
    blocking=True,
)
def fee_history(ctx: CallContext, count: int, newest_id: BlockId, percentiles: list[float] | None) -> FeeHistoryJson:
    newest = resolve_block(ctx, newest_id)
    if newest is None:
        raise ServerError("header not found")
    count = min(count, FEE_HISTORY_MAX_BLOCKS, newest.number + 1)
    blocks: list[BlockAPI] = []
    block: BlockAPI | None = newest
    while block is not None and len(blocks) < count:
        blocks.append(block)
        block = None if block.number == 0 else ctx.backend.block_by_hash(block.header.parent_hash)
    blocks.reverse()
    if not blocks:
        return {"oldestBlock": quantity(0), "baseFeePerGas": [], "gasUsedRatio": []}
    result: FeeHistoryJson = {
        "oldestBlock": quantity(blocks[0].number),
        "baseFeePerGas": [quantity(getattr(b.header, "base_fee_per_gas", 0) or 0) for b in blocks]
        + [quantity(next_base_fee(blocks[-1].header))],
        "gasUsedRatio": [b.header.gas_used / b.header.gas_limit if b.header.gas_limit else 0.0 for b in blocks],
    }
    if percentiles is not None:
        result["reward"] = [_block_rewards(ctx, b, percentiles) for b in blocks]
    return result


def _block_rewards(ctx: CallContext, block: BlockAPI, percentiles: list[float]) -> list[str]:
    """Tips at the given percentiles, weighted by gas used (geth's feeHistory rule)."""
    if not block.transactions:
        return [quantity(0) for _ in percentiles]
    receipts = ctx.backend.receipts(block)
    tips = _tips(block)
    used = [r.gas_used - (receipts[i - 1].gas_used if i else 0) for i, r in enumerate(receipts)]
    ordered = sorted(zip(tips, used))
    total = sum(used) or 1
    rewards = []
    index, cumulative = 0, ordered[0][1]
    for p in percentiles:
        threshold = total * p / 100
        while cumulative < threshold and index < len(ordered) - 1:
            index += 1
            cumulative += ordered[index][1]
        rewards.append(quantity(ordered[index][0]))
    return rewards


# -- logs and filters -------------------------------------------------------

def _block_range(ctx: CallContext, query: FilterQuery) -> tuple[int, int]:
    head_number = ctx.backend.head_header().block_number

    def number(block_id: BlockId) -> int:
        if block_id.number is not None:
            return block_id.number
        return 0 if block_id.tag == "earliest" else head_number

    return number(query.from_block), min(number(query.to_block), head_number)


def query_logs(ctx: CallContext, query: FilterQuery) -> list[LogJson]:
    """Scan blocks (bloom first) for logs matching the query, within the configured limits."""
    criteria = LogCriteria.parse(query.raw)
    backend = ctx.backend
    if query.block_hash is not None:
        block = backend.block_by_hash(query.block_hash)
        if block is None:
            raise ServerError("unknown block")
        return criteria.logs_of(block, backend.receipts(block))
    start, end = _block_range(ctx, query)
    head_number = backend.head_header().block_number
    # The execution-apis probes: a reversed range is "invalid block range params", a
    # range reaching past the head "block range extends beyond current head block"
    # (both -32602), in that order.
    if query.to_block.number is not None and query.to_block.number < start:
        raise InvalidParams("invalid block range params")
    if (query.to_block.number or 0) > head_number or (query.from_block.number or 0) > head_number:
        raise InvalidParams("block range extends beyond current head block")
    if start > end:
        return []
    if end - start + 1 > ctx.config.max_log_range:
        raise LimitExceeded(f"block range too large (at most {ctx.config.max_log_range} blocks)")
    logs: list[LogJson] = []
    for number in range(start, end + 1):
        header = backend.header_by_number(number)
        if header is None:
            break
        if not header.bloom or not criteria.may_match_bloom(header.bloom):
            continue
        block = backend.block_by_hash(header.hash)
        if block is None:
            break
        logs.extend(criteria.logs_of(block, backend.receipts(block)))
        if len(logs) > ctx.config.max_log_results:
            raise LimitExceeded(f"query returned more than {ctx.config.max_log_results} results")
    return logs


@eth.method("eth_getLogs", Param("filter", parse_filter), blocking=True)
def get_logs(ctx: CallContext, query: FilterQuery) -> list[LogJson]:
    return query_logs(ctx, query)


@eth.method("eth_newFilter", Param("filter", parse_filter))
async def new_filter(ctx: CallContext, query: FilterQuery) -> str:
    criteria = LogCriteria.parse(query.raw)
    return ctx.services.filters.install(Filter("logs", criteria=criteria, query=query))


@eth.method("eth_newBlockFilter")
async def new_block_filter(ctx: CallContext) -> str:
    return ctx.services.filters.install(Filter("blocks"))


@eth.method("eth_newPendingTransactionFilter")
async def new_pending_filter(ctx: CallContext) -> str:
    return ctx.services.filters.install(Filter("pending"))


def _parse_id(value: Json) -> str:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) > 66:
        raise ValueError("expected filter id (hex string)")
    return value.lower()


@eth.method("eth_getFilterChanges", Param("filterId", _parse_id))
async def get_filter_changes(ctx: CallContext, filter_id: str) -> list[FilterItem]:
    return ctx.services.filters.poll(filter_id)


@eth.method("eth_getFilterLogs", Param("filterId", _parse_id))
async def get_filter_logs(ctx: CallContext, filter_id: str) -> list[LogJson]:
    flt = ctx.services.filters.get(filter_id)
    if flt.kind != "logs" or flt.query is None:  # a logs filter always has its query
        raise ResourceNotFound("filter not found")
    return await ctx.services.run_blocking(query_logs, ctx, flt.query)


@eth.method("eth_uninstallFilter", Param("filterId", _parse_id))
async def uninstall_filter(ctx: CallContext, filter_id: str) -> bool:
    return ctx.services.filters.uninstall(filter_id)


# -- subscriptions (WebSocket) ------------------------------------------------

SUBSCRIPTION_KINDS = ("newHeads", "logs", "newPendingTransactions")


def _parse_kind(value: Json) -> str:
    if value not in SUBSCRIPTION_KINDS:
        raise ValueError(f"no \"{value}\" subscription in eth namespace" if isinstance(value, str) else "expected subscription name")
    return str(value)


def _parse_sub_options(value: Json) -> JsonObject | bool:
    if not isinstance(value, (dict, bool)):
        raise ValueError("expected filter object or boolean")
    return value


@eth.method("eth_subscribe", Param("kind", _parse_kind), Param("options", _parse_sub_options, None), needs_connection=True)
async def subscribe(ctx: CallContext, kind: str, options: JsonObject | bool | None) -> str:
    from rpc.subscriptions import Subscription

    assert ctx.connection is not None
    criteria = None
    full = False
    if kind == "logs":
        if options is not None and not isinstance(options, dict):
            raise InvalidParams("invalid argument 1 (options): expected filter object")
        raw = options or {}
        if raw.get("fromBlock") is not None or raw.get("toBlock") is not None or raw.get("blockHash") is not None:
            raise InvalidParams("invalid argument 1 (options): logs subscriptions take only address and topics")
        try:
            criteria = LogCriteria.parse(raw)
        except ValueError as exc:
            raise InvalidParams(f"invalid argument 1 (options): {exc}") from None
    elif kind == "newPendingTransactions":
        full = options is True
    return ctx.connection.subscriptions.add(Subscription(kind, criteria, full))


@eth.method("eth_unsubscribe", Param("subscriptionId", _parse_id), needs_connection=True)
async def unsubscribe(ctx: CallContext, subscription_id: str) -> bool:
    assert ctx.connection is not None
    return ctx.connection.subscriptions.remove(subscription_id)

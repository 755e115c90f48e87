"""``eth_simulateV1``: calls executed in a chain of simulated blocks, nothing written.

The payload (execution-apis ``EthSimulatePayload``) lists blocks; each may override
block fields (number, time, gasLimit, feeRecipient, prevRandao, baseFeePerGas) and
account state, and carries calls that build on each other's state, block after block.
Each simulated block is returned as a block object (its header computed from what ran:
gas used, logs bloom, state, transaction and receipt roots) with a ``calls`` array:
``status``, ``returnData``, ``gasUsed``, ``logs`` and, for a failed call, ``error``
(code 3 for a revert, -32015 for another VM error).

What is supported and what is not:

- ``validation: false`` (the default) behaves like eth_call: no fee is charged, the
  base fee is 0 for execution (the block reports the overridden or computed one);
  ``validation: true`` applies a transaction's checks (nonce, fee cap against the base
  fee, balance for gas * fee cap + value, intrinsic gas), each failure an error with
  the spec's code (-38010 nonce too low, -38011 too high, -38012 base fee, -38013
  intrinsic gas, -38014 funds);
- ``traceTransfers: true`` adds each ether transfer (the call's own and every internal
  one that is not reverted) as an ERC-20 ``Transfer`` log from
  0xeeee...eeee, as the spec asks;
- ``returnFullTransactions`` returns the calls as transaction objects; their hashes are
  keccak256 over the call's fields and sender (simulated calls are never signed);
- ``movePrecompileToAddress`` and blob fields are refused with -32602, and withdrawals
  are ignored; at most 256 blocks and 1,000 calls per request. The whole request runs
  under the EVM wall-clock limit and the gas cap (per call).

The py-evm execution runs on a batch view of the node's database that is discarded at
the end, so a simulation writes nothing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, NotRequired, TypedDict, TypeVar

import rlp
from eth.abc import (
    BlockHeaderAPI,
    ComputationAPI,
    MessageAPI,
    ReceiptAPI,
    SignedTransactionAPI,
    StateAPI,
    TransactionContextAPI,
)
from chain.speedups import ordered_trie_root_and_nodes
from eth.vm.forks.london.transactions import LondonTransactionBuilder
from eth_typing import Address, Hash32
from eth_utils import keccak

from rpc import encoding
from chain.vm import PouwVM
from rpc.backend import CREATE, AccountOverride, CallRequest, apply_overrides, spoofed, _vm_error_message
from rpc.errors import InvalidParams, RpcError
from rpc.evm_deadline import CallTimeout
from rpc.hexcodec import data, parse_address, parse_quantity, quantity
from rpc.jsontypes import Json, JsonObject
from rpc.params import parse_call, parse_overrides

if TYPE_CHECKING:
    from chain.chain import Chain
    from chain.db import BatchView
    from rpc.backend import ChainBackend

MAX_BLOCKS = 256
MAX_CALLS = 1000
#: The emitter of traced ether transfers (execution-apis traceTransfers).
TRANSFER_EMITTER = Address(bytes.fromhex("ee" * 20))
#: keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = int.from_bytes(keccak(b"Transfer(address,address,uint256)"), "big")


class SimulateError(RpcError):
    """A simulation refused as a whole, with one of the spec's codes."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


T = TypeVar("T")


# -- answers ----------------------------------------------------------------------

class CallErrorJson(TypedDict):
    """Why a simulated call failed: 3 (a revert, with its data) or -32015 (a VM error)."""

    code: int
    message: str
    data: NotRequired[str]


class SimulatedLogJson(TypedDict):
    """A log of a simulated call; its block fields are filled once the block is sealed."""

    address: str
    topics: list[str]
    data: str
    blockNumber: str | None
    blockHash: str | None
    transactionHash: str
    transactionIndex: str
    logIndex: str
    removed: bool
    blockTimestamp: NotRequired[str]


class CallResultJson(TypedDict):
    status: str
    returnData: str
    gasUsed: str
    logs: list[SimulatedLogJson]
    error: NotRequired[CallErrorJson]


class SimulatedBlockJson(encoding.BlockJson):
    """A simulated block: a block object plus what each of its calls did."""

    calls: list[CallResultJson]


# -- params -----------------------------------------------------------------------

@dataclass(frozen=True)
class BlockOverrides:
    number: int | None = None
    time: int | None = None
    gas_limit: int | None = None
    fee_recipient: Address | None = None
    prev_randao: int | None = None
    base_fee: int | None = None


@dataclass(frozen=True)
class SimBlock:
    overrides: BlockOverrides
    state: dict[Address, AccountOverride]
    calls: tuple[CallRequest, ...]


@dataclass(frozen=True)
class SimulatePayload:
    blocks: tuple[SimBlock, ...]
    validation: bool = False
    trace_transfers: bool = False
    full_transactions: bool = False


def _flag(value: JsonObject, key: str) -> bool:
    flag = value.get(key, False)
    if flag is None:
        return False
    if not isinstance(flag, bool):
        raise ValueError(f"{key}: expected boolean")
    return flag


def _parse_block_overrides(value: Json) -> BlockOverrides:
    if value is None:
        return BlockOverrides()
    if not isinstance(value, dict):
        raise ValueError("blockOverrides: expected object")
    unsupported = {"blobBaseFee", "withdrawals"} & {k for k, v in value.items() if v is not None}
    if "blobBaseFee" in unsupported:
        raise InvalidParams("blockOverrides.blobBaseFee: this chain has no blob transactions")

    def get(key: str, parse: Callable[[Json], T]) -> T | None:
        raw = value.get(key)
        return None if raw is None else parse(raw)

    return BlockOverrides(
        number=get("number", lambda v: parse_quantity(v, bits=64)),
        time=get("time", lambda v: parse_quantity(v, bits=64)),
        gas_limit=get("gasLimit", lambda v: parse_quantity(v, bits=64)),
        fee_recipient=get("feeRecipient", parse_address),
        prev_randao=get("prevRandao", parse_quantity),
        base_fee=get("baseFeePerGas", parse_quantity),
    )


def parse_simulate_payload(value: Json) -> SimulatePayload:
    if not isinstance(value, dict):
        raise ValueError("expected simulation payload object")
    raw_blocks = value.get("blockStateCalls")
    if not isinstance(raw_blocks, list):
        raise ValueError("blockStateCalls: expected array")
    if len(raw_blocks) > MAX_BLOCKS:
        raise SimulateError(-38026, f"too many blocks (at most {MAX_BLOCKS})")
    blocks: list[SimBlock] = []
    total_calls = 0
    for index, raw in enumerate(raw_blocks):
        if not isinstance(raw, dict):
            raise ValueError(f"blockStateCalls[{index}]: expected object")
        raw_state = raw.get("stateOverrides") or {}
        if isinstance(raw_state, dict) and any(
            isinstance(entry, dict) and entry.get("movePrecompileToAddress") is not None for entry in raw_state.values()
        ):
            raise InvalidParams("movePrecompileToAddress is not supported by this node")
        raw_calls = raw.get("calls") or []
        if not isinstance(raw_calls, list):
            raise ValueError(f"blockStateCalls[{index}].calls: expected array")
        total_calls += len(raw_calls)
        if total_calls > MAX_CALLS:
            raise SimulateError(-38026, f"too many calls (at most {MAX_CALLS})")
        blocks.append(SimBlock(
            overrides=_parse_block_overrides(raw.get("blockOverrides")),
            state=parse_overrides(raw_state),
            calls=tuple(parse_call(call) for call in raw_calls),
        ))
    return SimulatePayload(
        tuple(blocks),
        validation=_flag(value, "validation"),
        trace_transfers=_flag(value, "traceTransfers"),
        full_transactions=_flag(value, "returnFullTransactions"),
    )


# -- transfer tracing ------------------------------------------------------------------

class _Tracing(threading.local):
    transfers: bool = False


_TRACING = _Tracing()


def vm_with_transfer_logs(vm_class: type[PouwVM]) -> type[PouwVM]:
    """``vm_class`` whose computations log each value transfer when tracing is on.

    The log is added to the computation that received the value, so it disappears with
    that computation's own logs when it reverts (py-evm drops an errored computation's
    logs), and it comes before them, in the order the transfers happened."""
    state_class = vm_class.get_state_class()
    base = state_class.computation_class

    def __init__(
        self: ComputationAPI, state: StateAPI, message: MessageAPI, transaction_context: TransactionContextAPI
    ) -> None:
        base.__init__(self, state, message, transaction_context)
        if _TRACING.transfers and message.value and message.should_transfer_value:
            self.add_log_entry(
                TRANSFER_EMITTER,
                (TRANSFER_TOPIC, int.from_bytes(message.sender, "big"), int.from_bytes(message.storage_address, "big")),
                int(message.value).to_bytes(32, "big"),
            )

    computation_class = type(f"Tracing{base.__name__}", (base,), {"__init__": __init__})
    return vm_class.configure(
        __name__=f"Tracing{vm_class.__name__}",
        _state_class=state_class.configure(__name__=f"Tracing{state_class.__name__}", computation_class=computation_class),
    )


# -- execution -----------------------------------------------------------------------

@dataclass
class _SimTx:
    """A simulated call as it is reported: fields of a transaction, and its hash."""

    request: CallRequest
    sender: Address
    nonce: int
    gas: int
    kind: int
    fee_cap: int
    tip: int
    hash: bytes = b""

    def encode(self) -> bytes:
        body = rlp.encode([
            self.nonce, self.fee_cap, self.tip, self.gas, self.request.to or b"",
            self.request.value, self.request.data, self.sender,
        ])
        return bytes([self.kind]) + body if self.kind else body


@dataclass
class _Ancestry:
    """BLOCKHASH for simulated blocks: earlier simulated blocks, then the real chain."""

    simulated: list[Hash32] = field(default_factory=list)
    real: Iterable[Hash32] = ()

    def __iter__(self) -> Iterator[Hash32]:
        yield from reversed(self.simulated)
        yield from self.real


def simulate_v1(
    backend: ChainBackend, base_header: BlockHeaderAPI, payload: SimulatePayload, gas_cap: int
) -> list[SimulatedBlockJson]:
    """Run ``payload`` on the state after ``base_header``; see the module docstring."""
    from chain.db import batch_view
    from rpc.backend import _Ancestors

    chain = backend.chain
    vm_class = backend.transfer_tracing_vm_class
    view = batch_view(chain.db)
    ancestry = _Ancestry(real=_Ancestors(chain.chaindb, base_header))
    parent = base_header
    results: list[SimulatedBlockJson] = []
    _TRACING.transfers = payload.trace_transfers
    try:
        for block in payload.blocks:
            header = _block_header(vm_class, parent, block.overrides, payload.validation)
            block_result, parent = _run_block(
                vm_class, chain, view, header, block, payload, ancestry, gas_cap, parent
            )
            ancestry.simulated.append(parent.hash)
            results.append(block_result)
    finally:
        _TRACING.transfers = False
        view.discard()
    return results


def _block_header(
    vm_class: type[PouwVM], parent: BlockHeaderAPI, overrides: BlockOverrides, validation: bool
) -> BlockHeaderAPI:
    number = parent.block_number + 1 if overrides.number is None else overrides.number
    if number <= parent.block_number:
        raise SimulateError(-38020, f"block numbers must increase: {number} after {parent.block_number}")
    timestamp = parent.timestamp + 1 if overrides.time is None else overrides.time
    if timestamp < parent.timestamp:
        raise SimulateError(-38021, f"block timestamps must not decrease: {timestamp} after {parent.timestamp}")
    header = vm_class.create_header_from_parent(
        parent, coinbase=overrides.fee_recipient or parent.coinbase, timestamp=timestamp
    )
    changes: dict[str, int | bytes] = {"block_number": number, "state_root": parent.state_root}
    if overrides.gas_limit is not None:
        changes["gas_limit"] = overrides.gas_limit
    if overrides.base_fee is not None:
        changes["base_fee_per_gas"] = overrides.base_fee
    if overrides.prev_randao is not None and hasattr(header, "mix_hash"):
        changes["mix_hash"] = overrides.prev_randao.to_bytes(32, "big")
    return header.copy(**changes)


def _run_block(
    vm_class: type[PouwVM], chain: Chain, view: BatchView, header: BlockHeaderAPI, block: SimBlock,
    payload: SimulatePayload, ancestry: _Ancestry, gas_cap: int, parent: BlockHeaderAPI,
) -> tuple[SimulatedBlockJson, BlockHeaderAPI]:
    base_fee = int(getattr(header, "base_fee_per_gas", 0) or 0)
    # Without validation calls pay nothing, as eth_call: the block context's base fee is 0.
    context = header if payload.validation else header.copy(base_fee_per_gas=0)
    state = vm_class.build_state(view, context, chain.chain_context, ancestry)
    apply_overrides(state, block.state)
    builder = vm_class.get_transaction_builder()
    assert issubclass(builder, LondonTransactionBuilder), "EIP-1559 transactions (London and later)"
    chain_id = chain.chain_context.chain_id
    calls: list[CallResultJson] = []
    txs: list[_SimTx] = []
    receipts: list[ReceiptAPI] = []
    gas_used = 0
    logs_json: list[SimulatedLogJson] = []
    for request in block.calls:
        remaining = header.gas_limit - gas_used
        gas = min(request.gas if request.gas is not None else remaining, gas_cap)
        if payload.validation and gas > remaining:
            raise SimulateError(-38015, f"block gas limit exceeded: call wants {gas}, {remaining} left")
        sender = request.sender
        nonce = state.get_nonce(sender) if request.nonce is None else request.nonce
        if payload.validation:
            sim_tx, spoof = _validated_tx(builder, chain_id, request, sender, nonce, gas, base_fee, state)
        else:
            state.set_nonce(sender, nonce)
            unsigned = vm_class.create_unsigned_transaction(
                nonce=nonce, gas_price=0, gas=gas, to=request.to or CREATE, value=request.value, data=request.data
            )
            spoof = spoofed(unsigned, sender)
            sim_tx = _SimTx(request, sender, nonce, gas, 2, 0, 0)
        sim_tx.hash = keccak(sim_tx.encode())
        try:
            computation = state.apply_transaction(spoof)
        except Exception as exc:  # noqa: BLE001 - py-evm's ValidationError: the call cannot start
            if isinstance(exc, CallTimeout):
                raise
            raise _validation_error(str(exc)) from None
        used = vm_class.finalize_gas_used(spoof, computation)
        gas_used += used
        receipts.append(_receipt(computation, gas_used))
        txs.append(sim_tx)
        calls.append(_call_result(computation, used, sim_tx, len(txs) - 1, len(logs_json)))
        logs_json.extend(calls[-1]["logs"])
    state.persist()
    tx_root, _ = ordered_trie_root_and_nodes(tuple(tx.encode() for tx in txs))
    receipt_root, _ = ordered_trie_root_and_nodes(tuple(rlp.encode(r) for r in receipts))
    bloom = 0
    for receipt in receipts:
        bloom |= int(receipt.bloom)
    final = header.copy(
        state_root=state.state_root, gas_used=gas_used, transaction_root=tx_root,
        receipt_root=receipt_root, bloom=bloom,
    )
    header_json = encoding.header_json(final)
    header_json["baseFeePerGas"] = quantity(base_fee)
    transactions: list[str] | list[encoding.TransactionJson]
    if payload.full_transactions:
        transactions = [_tx_json(tx, final, i, base_fee, chain_id) for i, tx in enumerate(txs)]
    else:
        transactions = [data(tx.hash) for tx in txs]
    for call in calls:  # the block hash is known only now
        for log in call["logs"]:
            log["blockHash"] = data(final.hash)
            log["blockNumber"] = quantity(final.block_number)
            log["blockTimestamp"] = quantity(final.timestamp)
    result: SimulatedBlockJson = {
        **header_json,
        "size": quantity(len(rlp.encode(final)) + sum(len(tx.encode()) for tx in txs)),
        "uncles": [],
        "transactions": transactions,
        "calls": calls,
    }
    return result, final


def _receipt(computation: ComputationAPI, cumulative_gas: int) -> ReceiptAPI:
    """A legacy-shaped receipt (status, cumulative gas, logs, bloom): what the block's
    receiptsRoot and logsBloom are computed from (simulated calls have no envelope)."""
    from eth.rlp.logs import Log
    from eth.rlp.receipts import Receipt

    logs = [Log(address, topics, payload) for address, topics, payload in computation.get_log_entries()]
    return Receipt(state_root=b"\x01" if computation.is_success else b"", gas_used=cumulative_gas, logs=logs)


def _validated_tx(
    builder: type[LondonTransactionBuilder], chain_id: int, request: CallRequest, sender: Address, nonce: int, gas: int,
    base_fee: int, state: StateAPI,
) -> tuple[_SimTx, SignedTransactionAPI]:
    state_nonce = state.get_nonce(sender)
    if nonce < state_nonce:
        raise SimulateError(-38010, f"nonce too low: address 0x{sender.hex()}, tx: {nonce} state: {state_nonce}")
    if nonce > state_nonce:
        raise SimulateError(-38011, f"nonce too high: address 0x{sender.hex()}, tx: {nonce} state: {state_nonce}")
    if request.gas_price is not None:
        fee_cap = tip = request.gas_price
        unsigned = builder.create_unsigned_transaction(
            nonce=nonce, gas_price=fee_cap, gas=gas, to=request.to or CREATE, value=request.value, data=request.data
        )
        kind = 0
    else:
        fee_cap = request.max_fee_per_gas if request.max_fee_per_gas is not None else base_fee
        tip = request.max_priority_fee_per_gas if request.max_priority_fee_per_gas is not None else 0
        unsigned = builder.new_unsigned_dynamic_fee_transaction(
            chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=fee_cap, gas=gas,
            to=request.to or CREATE, value=request.value, data=request.data,
            access_list=[(address, list(slots)) for address, slots in request.access_list],
        )
        kind = 2
    if fee_cap < base_fee:
        raise SimulateError(-38012, f"max fee per gas less than block base fee: maxFeePerGas: {fee_cap}, baseFee: {base_fee}")
    balance = state.get_balance(sender)
    if gas * fee_cap + request.value > balance:
        raise SimulateError(
            -38014, f"insufficient funds for gas * price + value: address 0x{sender.hex()} have {balance} "
            f"want {gas * fee_cap + request.value}",
        )
    return _SimTx(request, sender, nonce, gas, kind, fee_cap, tip), spoofed(unsigned, sender)


def _validation_error(message: str) -> SimulateError:
    lowered = message.lower()
    if "intrinsic gas" in lowered:
        return SimulateError(-38013, "intrinsic gas too low")
    if "nonce" in lowered:
        return SimulateError(-38010, message)
    if "balance" in lowered or "funds" in lowered:
        return SimulateError(-38014, message)
    if "base fee" in lowered or "basefee" in lowered:
        return SimulateError(-38012, message)
    return SimulateError(-32000, message)


def _call_result(computation: ComputationAPI, gas_used: int, tx: _SimTx, index: int, first_log: int) -> CallResultJson:
    from eth.exceptions import Revert

    logs: list[SimulatedLogJson] = []
    if computation.is_success:
        for offset, (address, topics, payload) in enumerate(computation.get_log_entries()):
            logs.append({
                "address": encoding.address(address),
                "topics": ["0x" + int(t).to_bytes(32, "big").hex() for t in topics],
                "data": data(payload),
                "blockNumber": None,  # filled below
                "blockHash": None,
                "transactionHash": data(tx.hash),
                "transactionIndex": quantity(index),
                "logIndex": quantity(first_log + offset),
                "removed": False,
            })
    result: CallResultJson = {
        "status": quantity(1 if computation.is_success else 0),
        "returnData": data(bytes(computation.output)),
        "gasUsed": quantity(gas_used),
        "logs": logs,
    }
    if computation.is_error:
        if isinstance(computation.error, Revert):
            from rpc.errors import decode_revert_reason

            reason = decode_revert_reason(bytes(computation.output))
            result["error"] = {
                "code": 3,
                "message": "execution reverted" + (f": {reason}" if reason else ""),
                "data": data(bytes(computation.output)),
            }
        else:
            result["error"] = {"code": -32015, "message": f"vm execution error: {_vm_error_message(computation.error)}"}
    return result


def _tx_json(tx: _SimTx, header: BlockHeaderAPI, index: int, base_fee: int, chain_id: int) -> encoding.TransactionJson:
    request = tx.request
    answer: encoding.TransactionJson = {
        "type": quantity(tx.kind),
        "hash": data(tx.hash),
        "nonce": quantity(tx.nonce),
        "blockHash": data(header.hash),
        "blockNumber": quantity(header.block_number),
        "blockTimestamp": quantity(header.timestamp),
        "transactionIndex": quantity(index),
        "from": encoding.address(tx.sender),
        "to": encoding.address(request.to) if request.to else None,
        "value": quantity(request.value),
        "gas": quantity(tx.gas),
        "input": data(request.data),
        "gasPrice": quantity(min(tx.fee_cap, base_fee + tx.tip) if tx.kind == 2 else tx.fee_cap),
        "v": "0x0", "r": "0x0", "s": "0x0",  # never signed
        "chainId": quantity(chain_id),
    }
    if tx.kind == 2:
        answer["maxFeePerGas"] = quantity(tx.fee_cap)
        answer["maxPriorityFeePerGas"] = quantity(tx.tip)
        answer["accessList"] = encoding.access_list_json(tx.request.access_list)
        answer["yParity"] = "0x0"
    return answer

"""JSON shapes of blocks, transactions, receipts and logs, as geth returns them.

All functions take py-evm objects (``BlockAPI``, ``SignedTransactionAPI``, ``ReceiptAPI``)
and return plain dicts of hex strings. Our header has proof-of-useful-work seal fields in
place of ``mixHash``/``nonce``; blocks carry ``mixHash`` = the work accumulator and
``nonce`` = eight zero bytes (so wallets parse them) plus the seal fields by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NotRequired, Sequence, TypedDict, Union, cast

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI, LegacyTransactionFieldsAPI, LogAPI, ReceiptAPI, SignedTransactionAPI
from eth_utils import keccak

from rpc.hexcodec import data, quantity

ZERO_NONCE = "0x0000000000000000"
EMPTY_HASH = b"\x00" * 32

SealKey = Literal["jobId", "startCheckpoint", "stepCount", "finalState", "workAccumulator"]
OptionalHeaderKey = Literal[
    "baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas", "parentBeaconBlockRoot", "requestsHash"
]

#: Our header's seal fields -> their JSON names (present only on our header class).
SEAL_FIELDS: tuple[tuple[str, SealKey], ...] = (
    ("job_id", "jobId"),
    ("start_checkpoint", "startCheckpoint"),
    ("step_count", "stepCount"),
    ("final_state", "finalState"),
    ("work_accumulator", "workAccumulator"),
)
#: Header fields of later forks -> their JSON names (left out where the header has none).
OPTIONAL_HEADER_FIELDS: tuple[tuple[str, OptionalHeaderKey], ...] = (
    ("base_fee_per_gas", "baseFeePerGas"),
    ("withdrawals_root", "withdrawalsRoot"),
    ("blob_gas_used", "blobGasUsed"),
    ("excess_blob_gas", "excessBlobGas"),
    ("parent_beacon_block_root", "parentBeaconBlockRoot"),
    ("requests_hash", "requestsHash"),
)


class HeaderJson(TypedDict):
    """A block's header fields (also the ``newHeads`` notification)."""

    number: str
    hash: str | None
    """Null in the pending block (geth), as are ``nonce`` and ``miner``."""
    parentHash: str
    sha3Uncles: str
    miner: str | None
    stateRoot: str
    transactionsRoot: str
    receiptsRoot: str
    logsBloom: str
    difficulty: str
    gasLimit: str
    gasUsed: str
    timestamp: str
    extraData: str
    mixHash: str
    nonce: str | None
    baseFeePerGas: NotRequired[str]
    withdrawalsRoot: NotRequired[str]
    blobGasUsed: NotRequired[str]
    excessBlobGas: NotRequired[str]
    parentBeaconBlockRoot: NotRequired[str]
    requestsHash: NotRequired[str]
    totalDifficulty: NotRequired[str]
    jobId: NotRequired[str]
    startCheckpoint: NotRequired[str]
    stepCount: NotRequired[str]
    finalState: NotRequired[str]
    workAccumulator: NotRequired[str]


AccessListEntryJson = TypedDict("AccessListEntryJson", {"address": str, "storageKeys": list[str]})

TransactionJson = TypedDict("TransactionJson", {
    "type": str,
    "hash": str,
    "nonce": str,
    "blockHash": Union[str, None],
    "blockNumber": Union[str, None],
    "blockTimestamp": NotRequired[str],
    "transactionIndex": Union[str, None],
    "from": str,
    "to": Union[str, None],
    "value": str,
    "gas": str,
    "input": str,
    "r": str,
    "s": str,
    "v": NotRequired[str],
    "yParity": NotRequired[str],
    "chainId": NotRequired[str],
    "accessList": NotRequired[list[AccessListEntryJson]],
    "gasPrice": NotRequired[str],
    "maxFeePerGas": NotRequired[str],
    "maxPriorityFeePerGas": NotRequired[str],
})
"""A transaction object (block fields null while it is pending)."""


class WithdrawalJson(TypedDict):
    index: str
    validatorIndex: str
    address: str
    amount: str


class BlockJson(HeaderJson):
    """A block object as eth_getBlockByHash/Number return it."""

    size: str
    transactions: list[str] | list[TransactionJson]
    """Hashes, or whole transactions with ``fullTransactions``."""
    uncles: list[str]
    withdrawals: NotRequired[list[WithdrawalJson]]


class LogJson(TypedDict):
    address: str
    topics: list[str]
    data: str
    blockNumber: str
    blockHash: str
    blockTimestamp: str
    transactionHash: str
    transactionIndex: str
    logIndex: str
    removed: bool


ReceiptJson = TypedDict("ReceiptJson", {
    "type": str,
    "transactionHash": str,
    "transactionIndex": str,
    "blockHash": str,
    "blockNumber": str,
    "from": str,
    "to": Union[str, None],
    "cumulativeGasUsed": str,
    "gasUsed": str,
    "contractAddress": Union[str, None],
    "logs": list[LogJson],
    "logsBloom": str,
    "status": str,
    "effectiveGasPrice": str,
})


def address(value: bytes) -> str:
    """Addresses are returned lowercase, like geth."""
    return data(value)


def _hex_field(value: int | bytes) -> str:
    """A header field as JSON: an integer as a QUANTITY, bytes as DATA."""
    if isinstance(value, int):
        return quantity(value)
    return data(bytes(value))


def header_json(header: BlockHeaderAPI, *, total_difficulty: int | None = None) -> HeaderJson:
    """The header part of a block object (also the ``newHeads`` notification)."""
    seal = [(json_name, _hex_field(getattr(header, name))) for name, json_name in SEAL_FIELDS if hasattr(header, name)]
    work_accumulator = dict(seal).get("workAccumulator")
    if work_accumulator is not None:
        mix_hash = work_accumulator if len(work_accumulator) == 66 else data(EMPTY_HASH)
        nonce = ZERO_NONCE
    else:
        mix_hash = data(getattr(header, "mix_hash", EMPTY_HASH))
        nonce = data(getattr(header, "nonce", b"\x00" * 8))
    result: HeaderJson = {
        "number": quantity(header.block_number),
        "hash": data(header.hash),
        "parentHash": data(header.parent_hash),
        "sha3Uncles": data(header.uncles_hash),
        "miner": address(header.coinbase),
        "stateRoot": data(header.state_root),
        "transactionsRoot": data(header.transaction_root),
        "receiptsRoot": data(header.receipt_root),
        "logsBloom": data(header.bloom.to_bytes(256, "big")),
        "difficulty": quantity(header.difficulty),
        "gasLimit": quantity(header.gas_limit),
        "gasUsed": quantity(header.gas_used),
        "timestamp": quantity(header.timestamp),
        "extraData": data(header.extra_data),
        "mixHash": mix_hash,
        "nonce": nonce,
    }
    for name, optional_name in OPTIONAL_HEADER_FIELDS:
        value = getattr(header, name, None)
        if value is not None:
            result[optional_name] = _hex_field(value)
    if total_difficulty is not None:
        result["totalDifficulty"] = quantity(total_difficulty)
    for seal_name, seal_value in seal:
        result[seal_name] = seal_value
    return result


def block_json(block: BlockAPI, *, full_transactions: bool, total_difficulty: int | None = None) -> BlockJson:
    """A block object as eth_getBlockByHash/Number return it."""
    transactions: list[str] | list[TransactionJson]
    if full_transactions:
        transactions = [
            transaction_json(
                tx, block_hash=block.hash, block_number=block.number, index=i,
                base_fee=getattr(block.header, "base_fee_per_gas", None), block_timestamp=block.header.timestamp,
            )
            for i, tx in enumerate(block.transactions)
        ]
    else:
        transactions = [data(tx.hash) for tx in block.transactions]
    result: BlockJson = {
        **header_json(block.header, total_difficulty=total_difficulty),
        "size": quantity(len(rlp.encode(block))),
        "transactions": transactions,
        "uncles": [data(uncle.hash) for uncle in block.uncles],
    }
    withdrawals = getattr(block, "withdrawals", None)
    if withdrawals is not None and "withdrawalsRoot" in result:
        result["withdrawals"] = [
            {
                "index": quantity(w.index),
                "validatorIndex": quantity(w.validator_index),
                "address": address(w.address),
                "amount": quantity(w.amount),
            }
            for w in withdrawals
        ]
    return result


def transaction_type(tx: SignedTransactionAPI) -> int:
    type_id = getattr(tx, "type_id", None)
    return 0 if type_id is None else int(type_id)


def effective_gas_price(tx: SignedTransactionAPI, base_fee: int | None) -> int:
    """What the sender pays per gas: the legacy price, or min(max fee, base fee + tip)."""
    if transaction_type(tx) in (0, 1):
        return int(tx.gas_price)
    if base_fee is None:
        return int(tx.max_fee_per_gas)
    return min(int(tx.max_fee_per_gas), base_fee + int(tx.max_priority_fee_per_gas))


def legacy_chain_id(v: int) -> int | None:
    """The EIP-155 chain id encoded in a legacy ``v``, or None for an unprotected tx."""
    return (v - 35) // 2 if v >= 35 else None


def transaction_json(
    tx: SignedTransactionAPI,
    *,
    block_hash: bytes | None = None,
    block_number: int | None = None,
    index: int | None = None,
    base_fee: int | None = None,
    block_timestamp: int | None = None,
) -> TransactionJson:
    """A transaction object; block fields are null for a pending transaction."""
    kind = transaction_type(tx)
    result: TransactionJson = {
        "type": quantity(kind),
        "hash": data(tx.hash),
        "nonce": quantity(tx.nonce),
        "blockHash": None if block_hash is None else data(block_hash),
        "blockNumber": None if block_number is None else quantity(block_number),
        "transactionIndex": None if index is None else quantity(index),
        "from": address(tx.sender),
        "to": address(tx.to) if tx.to else None,
        "value": quantity(tx.value),
        "gas": quantity(tx.gas),
        "input": data(tx.data),
        "r": quantity(tx.r),
        "s": quantity(tx.s),
    }
    if block_timestamp is not None:
        result["blockTimestamp"] = quantity(block_timestamp)
    if kind == 0:
        v = cast(LegacyTransactionFieldsAPI, tx).v  # py-evm: legacy fields once type_id is None
        result["gasPrice"] = quantity(tx.gas_price)
        result["v"] = quantity(v)
        chain_id = legacy_chain_id(v)
        if chain_id is not None:
            result["chainId"] = quantity(chain_id)
        return result
    assert tx.chain_id is not None, "a typed transaction carries its chain id"
    result["chainId"] = quantity(tx.chain_id)
    result["accessList"] = access_list_json(tx.access_list)
    result["yParity"] = quantity(tx.y_parity)
    result["v"] = quantity(tx.y_parity)
    if kind == 1:
        result["gasPrice"] = quantity(tx.gas_price)
    else:
        result["maxFeePerGas"] = quantity(tx.max_fee_per_gas)
        result["maxPriorityFeePerGas"] = quantity(tx.max_priority_fee_per_gas)
        # geth: the effective price once mined, the fee cap while pending.
        result["gasPrice"] = quantity(
            effective_gas_price(tx, base_fee) if block_hash is not None else tx.max_fee_per_gas
        )
    return result


def access_list_json(access_list: Sequence[tuple[bytes, Sequence[int]]]) -> list[AccessListEntryJson]:
    return [
        {"address": address(addr), "storageKeys": ["0x" + int(slot).to_bytes(32, "big").hex() for slot in slots]}
        for addr, slots in access_list
    ]


@dataclass(frozen=True)
class LogPosition:
    """Where a log sits in the chain: what its JSON object carries besides the log."""

    block_hash: bytes
    block_number: int
    transaction_hash: bytes
    transaction_index: int
    log_index: int
    block_timestamp: int


def log_json(log: LogAPI, position: LogPosition, *, removed: bool = False) -> LogJson:
    return {
        "address": address(log.address),
        "topics": ["0x" + int(topic).to_bytes(32, "big").hex() if isinstance(topic, int) else data(topic) for topic in log.topics],
        "data": data(log.data),
        "blockNumber": quantity(position.block_number),
        "blockHash": data(position.block_hash),
        "blockTimestamp": quantity(position.block_timestamp),
        "transactionHash": data(position.transaction_hash),
        "transactionIndex": quantity(position.transaction_index),
        "logIndex": quantity(position.log_index),
        "removed": removed,
    }


def block_logs(block: BlockAPI, receipts: Sequence[ReceiptAPI], *, removed: bool = False) -> list[LogJson]:
    """Every log of a block, in order, as JSON objects."""
    logs: list[LogJson] = []
    log_index = 0
    for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
        for log in receipt.logs:
            position = LogPosition(block.hash, block.number, tx.hash, tx_index, log_index, block.header.timestamp)
            logs.append(log_json(log, position, removed=removed))
            log_index += 1
    return logs


def receipt_json(block: BlockAPI, receipts: Sequence[ReceiptAPI], index: int) -> ReceiptJson:
    """The receipt of ``block.transactions[index]`` as eth_getTransactionReceipt returns it."""
    tx = block.transactions[index]
    receipt = receipts[index]
    previous_cumulative = receipts[index - 1].gas_used if index > 0 else 0
    first_log_index = sum(len(r.logs) for r in receipts[:index])
    base_fee = getattr(block.header, "base_fee_per_gas", None)
    logs = []
    for offset, log in enumerate(receipt.logs):
        position = LogPosition(block.hash, block.number, tx.hash, index, first_log_index + offset, block.header.timestamp)
        logs.append(log_json(log, position))
    contract_address = None
    if not tx.to:
        contract_address = address(keccak(rlp.encode([tx.sender, tx.nonce]))[12:])
    return {
        "type": quantity(transaction_type(tx)),
        "transactionHash": data(tx.hash),
        "transactionIndex": quantity(index),
        "blockHash": data(block.hash),
        "blockNumber": quantity(block.number),
        "from": address(tx.sender),
        "to": address(tx.to) if tx.to else None,
        "cumulativeGasUsed": quantity(receipt.gas_used),
        "gasUsed": quantity(receipt.gas_used - previous_cumulative),
        "contractAddress": contract_address,
        "logs": logs,
        "logsBloom": data(receipt.bloom.to_bytes(256, "big")),
        "status": quantity(1 if receipt.state_root == b"\x01" else 0),
        "effectiveGasPrice": quantity(effective_gas_price(tx, base_fee)),
    }

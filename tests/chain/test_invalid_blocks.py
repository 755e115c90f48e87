"""Every rule of block import refuses its block with its own error, writing nothing.

Each test builds a valid block on a chain with one block already, breaks one thing,
and checks (via :func:`refuse`) the error type and that the database is unchanged:
same head, same keys, same values.
"""
from __future__ import annotations

from typing import Any, Optional

import pytest
import rlp
from eth.constants import ZERO_HASH32

from chain.chain import Chain
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
    InvalidStateRoot,
    InvalidTimestamp,
    InvalidTransactionRoot,
    MalformedBlock,
    OversizedBlock,
    UnknownParent,
    ValidationError,
)
from tests.chain.helpers import (
    ALICE,
    BOB,
    block_rlp,
    db_snapshot,
    mine,
    sign_tx,
    transfer,
    with_header,
    with_transactions,
)

TO = b"\x77" * 20


@pytest.fixture
def setup(chain: Chain):
    """A chain at block 1 (Alice's nonce 0 used) and a valid block 2 not yet imported."""
    first_tx = transfer(ALICE, 0, TO)
    mine(chain, [first_tx])
    block = mine(chain, [transfer(ALICE, 1, TO), transfer(BOB, 0, TO)], do_import=False)
    return chain, block, first_tx


def refuse(chain: Chain, block: Any, error: type[Exception], payload: Optional[bytes] = None) -> Exception:
    head = chain.head().hash
    before = db_snapshot(chain.db)
    with pytest.raises(error) as info:
        chain.import_block(block, payload)
    assert chain.head().hash == head
    assert db_snapshot(chain.db) == before
    return info.value


def test_valid_block_is_accepted(setup) -> None:
    chain, block, _ = setup
    chain.import_block(block)
    assert chain.head().hash == block.hash


# --- stage 1: decoding and the header alone --------------------------------------------


def test_invalid_malformed_rlp(setup) -> None:
    chain, block, _ = setup
    refuse(chain, b"\xc3\x01\x02", MalformedBlock)
    refuse(chain, block_rlp(block)[:-3], MalformedBlock)
    refuse(chain, b"not rlp at all", MalformedBlock)


def test_invalid_wrong_field_count(setup) -> None:
    chain, block, _ = setup
    fields = rlp.decode(block_rlp(block))
    fields[0] = fields[0][:-1]  # header without requests_hash
    refuse(chain, rlp.encode(fields), MalformedBlock)


def test_invalid_uncles(setup) -> None:
    chain, block, _ = setup
    fields = rlp.decode(block_rlp(block))
    fields[2] = [fields[0]]
    refuse(chain, rlp.encode(fields), MalformedBlock)


def test_invalid_oversized_block(setup) -> None:
    chain, _, _ = setup
    error = refuse(chain, b"\x00" * (chain.genesis.max_block_bytes + 1), OversizedBlock)
    assert error.got == chain.genesis.max_block_bytes + 1


def test_invalid_oversized_block_object(setup) -> None:
    """A block handed over as an object (built in this process: imported without being
    decoded again) meets the same size limit as its bytes."""
    chain, block, _ = setup
    room = chain.genesis.max_transaction_bytes - 300
    count = chain.genesis.max_block_bytes // room + 1
    big = [sign_tx(ALICE, 1 + i, TO, data=b"\x01" * room, gas=5_000_000) for i in range(count)]
    oversized = with_transactions(block, big)
    error = refuse(chain, oversized, OversizedBlock)
    assert error.got == len(block_rlp(oversized)) > chain.genesis.max_block_bytes


def test_invalid_oversized_transaction(setup) -> None:
    chain, block, _ = setup
    big = sign_tx(ALICE, 1, TO, data=b"\x01" * (chain.genesis.max_transaction_bytes + 1), gas=5_000_000)
    refuse(chain, with_transactions(block, [big]), OversizedBlock)


def test_invalid_extra_data_too_long(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, extra_data=b"x" * 33), InvalidHeader)


def test_invalid_gas_used_above_limit(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, gas_used=block.header.gas_limit + 1), InvalidGasUsed)


def test_invalid_timestamp_in_future(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, timestamp=int(chain.clock()) + 3600), InvalidTimestamp)


def test_invalid_pinned_fields(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, blob_gas_used=1), InvalidHeader)
    refuse(chain, with_header(block, parent_beacon_block_root=b"\x01" * 32), InvalidHeader)


def test_invalid_field_out_of_range(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, step_count=2**64), InvalidHeader)


# --- stage 2: header against parent ------------------------------------------------------


def test_invalid_unknown_parent_is_an_orphan(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, parent_hash=b"\x99" * 32), UnknownParent)
    assert not isinstance(error, ValidationError)  # not invalid: may become valid later
    assert error.parent_hash == b"\x99" * 32


def test_invalid_block_number(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, block_number=3), InvalidBlockNumber)
    assert (error.expected, error.got) == (2, 3)


def test_invalid_timestamp_not_after_parent(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, timestamp=chain.head().timestamp), InvalidTimestamp)


def test_invalid_difficulty(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, difficulty=block.header.difficulty + 1), InvalidDifficulty)
    assert error.expected == block.header.difficulty


def test_invalid_gas_limit(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, gas_limit=block.header.gas_limit * 2), InvalidGasLimit)
    refuse(chain, with_header(block, gas_limit=block.header.gas_limit // 2), InvalidGasLimit)


def test_invalid_base_fee(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, base_fee_per_gas=block.header.base_fee_per_gas + 1), InvalidBaseFee)
    assert error.expected == block.header.base_fee_per_gas


# --- stage 3: body against header ----------------------------------------------------------


def test_invalid_transaction_root(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, transaction_root=b"\x12" * 32), InvalidTransactionRoot)


def test_invalid_withdrawals(setup) -> None:
    from eth.vm.forks.shanghai.withdrawals import Withdrawal

    chain, block, _ = setup
    withdrawal = Withdrawal(index=0, validator_index=0, address=TO, amount=1)
    refuse(chain, block.copy(withdrawals=[withdrawal]), InvalidBody)


def test_invalid_bad_signature_transaction(setup) -> None:
    chain, block, _ = setup
    good = sign_tx(ALICE, 1, TO, kind="legacy")
    bad = good.copy(s=good.s + 1)  # breaks the signature (and maybe EIP-2's low-s)
    bad_r = good.copy(r=0)
    refuse(chain, with_transactions(block, [bad_r]), InvalidBlockTransaction)
    error = refuse(chain, with_transactions(block, [good, good.copy(v=99)]), InvalidBlockTransaction)
    assert error.index == 1
    del bad


def test_invalid_wrong_chain_id(setup) -> None:
    chain, block, _ = setup
    for kind in ("eip1559", "legacy", "access_list"):
        tx = sign_tx(ALICE, 1, TO, chain_id=1, kind=kind)
        refuse(chain, with_transactions(block, [tx]), InvalidBlockTransaction)


def test_invalid_unprotected_legacy_transaction(setup) -> None:
    chain, block, _ = setup
    from eth.vm.forks.prague.transactions import PragueTransactionBuilder as B

    unprotected = B.create_unsigned_transaction(
        nonce=1, gas_price=10**10, gas=21_000, to=TO, value=1, data=b""
    ).as_signed_transaction(ALICE)  # no chain id: v = 27/28
    refuse(chain, with_transactions(block, [B.decode(rlp.encode(unprotected))]), InvalidBlockTransaction)


def test_invalid_blob_transaction_type(setup) -> None:
    chain, block, _ = setup
    from eth.vm.forks.prague.transactions import PragueTransactionBuilder as B

    unsigned = B.new_unsigned_blob_transaction(
        chain_id=chain.genesis.chain_id, nonce=1, max_priority_fee_per_gas=1, max_fee_per_gas=10**10,
        gas=21_000, to=TO, value=0, data=b"", access_list=[], max_fee_per_blob_gas=1,
        blob_versioned_hashes=[b"\x01" + b"\x00" * 31],
    )
    tx = B.decode(unsigned.as_signed_transaction(ALICE).encode())
    refuse(chain, with_transactions(block, [tx]), InvalidBlockTransaction)


# --- stage 4: execution ----------------------------------------------------------------------


def test_invalid_nonce_gap(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_transactions(block, [transfer(ALICE, 5, TO)]), InvalidBlockTransaction)
    assert error.index == 0 and "nonce" in str(error).lower()


def test_invalid_replayed_transaction(setup) -> None:
    chain, block, first_tx = setup
    error = refuse(chain, with_transactions(block, [transfer(BOB, 0, TO), first_tx]), InvalidBlockTransaction)
    assert error.index == 1


def test_invalid_insufficient_balance(setup) -> None:
    chain, block, _ = setup
    poor = b"\x01" * 32
    from eth_keys import keys

    tx = sign_tx(keys.PrivateKey(poor), 0, TO, 1)
    refuse(chain, with_transactions(block, [tx]), InvalidBlockTransaction)


def test_invalid_block_gas_exhausted(setup) -> None:
    chain, block, _ = setup
    tx = sign_tx(ALICE, 1, TO, gas=block.header.gas_limit + 1)
    refuse(chain, with_transactions(block, [tx]), InvalidBlockTransaction)


def test_invalid_state_root(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, state_root=b"\x34" * 32), InvalidStateRoot)
    assert error.expected == block.header.state_root


def test_invalid_receipt_root(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, receipt_root=b"\x56" * 32), InvalidReceiptRoot)


def test_invalid_gas_used(setup) -> None:
    chain, block, _ = setup
    error = refuse(chain, with_header(block, gas_used=block.header.gas_used + 1), InvalidGasUsed)
    assert (error.expected, error.got) == (block.header.gas_used, block.header.gas_used + 1)


def test_invalid_bloom(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, bloom=1), InvalidBloom)


def test_invalid_requests_hash(setup) -> None:
    chain, block, _ = setup
    refuse(chain, with_header(block, requests_hash=ZERO_HASH32), InvalidExecution)


def test_every_refusal_is_a_chain_error(setup) -> None:
    chain, block, _ = setup
    with pytest.raises(ChainError):
        chain.import_block(with_header(block, state_root=b"\x00" * 32))
    with pytest.raises(ChainError):
        chain.import_block(b"")


def test_invalid_oversized_payload(setup) -> None:
    chain, block, _ = setup
    limit = chain.engine.max_payload_bytes()
    error = refuse(chain, block, OversizedBlock, payload=b"\x00" * (limit + 1))
    assert error.got == limit + 1


def test_building_with_a_transaction_under_its_intrinsic_gas_names_the_reason(chain: Chain) -> None:
    """py-evm locks its journal before it checks the intrinsic gas, so the builder's
    snapshot is gone when that check fails: the error must still be the transaction's
    (it was "No checkpoint N was found"), and nothing is written."""
    head = chain.head().hash
    tx = sign_tx(ALICE, 0, TO, data=b"\x01" * 32, gas=21_500)  # intrinsic gas is 21,512
    with pytest.raises(InvalidBlockTransaction) as info:
        mine(chain, [tx])
    assert "gas" in str(info.value) and "checkpoint" not in str(info.value)
    assert chain.head().hash == head

"""Reads straight from the tries (chain/state_reader.py) against py-evm's own state, and
the shortcuts of block building: Prague's deposit requests from the receipts at hand,
the child difficulty kept by parent hash."""
from __future__ import annotations

import hashlib

from eth.db.atomic import AtomicDB
from eth.vm.forks.prague.constants import DEPOSIT_CONTRACT_ADDRESS, DEPOSIT_EVENT_SIGNATURE_HASH

from chain.chain import Chain
from chain.state_reader import MAX_ACCOUNTS, StateReader
from devnet.kit.genesis import default_genesis_dict
from genesis.format import parse_genesis
from tests.chain.helpers import (
    ALICE, BOB, STORAGE_INIT, address_of, block_rlp, contract_address, mine, open_chain, sign_tx, store_call,
    transfer,
)

NOBODY = b"\x5a" * 20


def assert_same_reads(chain: Chain, header, addresses: list[bytes], slots: list[int]) -> None:
    state = chain.state_at(header)
    reader = StateReader(chain.db, header.state_root)
    for address in addresses:
        assert reader.get_balance(address) == state.get_balance(address)
        assert reader.get_nonce(address) == state.get_nonce(address)
        assert reader.get_code_hash(address) == state.get_code_hash(address)
        assert reader.get_code(address) == state.get_code(address)
        for slot in slots:
            assert reader.get_storage(address, slot) == state.get_storage(address, slot)


def test_reader_agrees_with_py_evm_state_now_and_at_an_older_block(chain: Chain) -> None:
    mine(chain, [transfer(ALICE, 0, address_of(BOB), 12345)])
    contract = contract_address(address_of(ALICE), 1)
    mine(chain, [sign_tx(ALICE, 1, None, data=STORAGE_INIT, gas=200_000)])
    older = chain.head()
    mine(chain, [store_call(ALICE, 2, contract, 7), transfer(BOB, 0, NOBODY, 5)])
    mine(chain, [store_call(ALICE, 3, contract, 2**256 - 1)])
    addresses = [address_of(ALICE), address_of(BOB), contract, NOBODY, b"\x00" * 20, b"\x99" * 20]
    slots = [0, 1, 2**255]
    for header in (chain.head(), older, chain.chaindb.get_canonical_block_header_by_number(0)):
        assert_same_reads(chain, header, addresses, slots)
    reader = chain.reader_at()
    assert reader.get_storage(contract, 0) == 2**256 - 1
    assert reader.get_balance(NOBODY) == 5
    assert chain.reader_at(older).get_storage(contract, 0) == 0
    assert chain.get_storage(contract, 0) == 2**256 - 1  # Chain's own reads go through readers too


def test_reader_memo_stays_bounded(chain: Chain) -> None:
    reader = chain.reader_at()
    for i in range(MAX_ACCOUNTS + 10):
        assert reader.get_balance(i.to_bytes(20, "big")) == 0
    assert len(reader._accounts) <= MAX_ACCOUNTS
    assert reader.get_balance(address_of(ALICE)) == chain.state_at().get_balance(address_of(ALICE))


def test_pool_view_reads_through_a_reader(chain: Chain) -> None:
    view = chain.state_view()
    assert view.get_nonce(address_of(ALICE)) == 0
    assert view.get_balance(address_of(ALICE)) == chain.state_at().get_balance(address_of(ALICE))


# A contract at the deposit contract's address that logs its 576 bytes of calldata under
# the deposit event's topic: CALLDATACOPY(0, 0, 576); LOG1(0, 576, topic); STOP.
DEPOSIT_LOGGER = (
    bytes.fromhex("610240" "6000" "6000" "37") + b"\x7f" + DEPOSIT_EVENT_SIGNATURE_HASH
    + bytes.fromhex("610240" "6000" "a1" "00")
)


def deposit_genesis():
    raw = default_genesis_dict()
    raw["consensus"]["sealEngine"] = "noproof"
    raw["alloc"]["0x" + DEPOSIT_CONTRACT_ADDRESS.hex()] = {"code": "0x" + DEPOSIT_LOGGER.hex()}
    return parse_genesis(raw)


def test_deposit_requests_come_from_the_blocks_own_receipts() -> None:
    """py-evm reads a block's receipts back from the database for EIP-6110; the builder
    hands it the receipts it just made. The requests hash must be the standard one, on
    the builder and on a node that imports the block and executes it from scratch."""
    genesis = deposit_genesis()
    builder = open_chain(AtomicDB(), genesis)
    data = bytes(range(256)) * 2 + bytes(range(64))
    block = mine(builder, [sign_tx(ALICE, 0, DEPOSIT_CONTRACT_ADDRESS, data=data, gas=200_000)])
    receipt = builder.get_receipts(block)[0]
    assert receipt.logs and receipt.logs[0].address == DEPOSIT_CONTRACT_ADDRESS
    deposit = data[192:240] + data[288:320] + data[352:360] + data[416:512] + data[544:552]
    expected = hashlib.sha256(hashlib.sha256(b"\x00" + deposit).digest()).digest()
    assert block.header.requests_hash == expected
    fresh = open_chain(AtomicDB(), genesis)
    fresh.import_block(block_rlp(block))
    assert fresh.head().hash == block.hash


def test_child_difficulty_is_kept_per_parent_and_follows_each_branch(chain: Chain) -> None:
    for dt in (1, 1, 30, 1):
        mine(chain, dt=dt)
    head = chain.head()
    first = chain.difficulty_for_child(head)
    assert chain.difficulty_for_child(head) == first == chain._retarget(head)
    side = mine(chain, parent_hash=head.parent_hash, dt=60, do_import=True)
    assert chain.difficulty_for_child(side.header) == chain._retarget(side.header)

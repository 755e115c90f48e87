"""Block import, happy paths: transfers, contract creation, rewards, reads, atomicity."""
from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from eth.db.atomic import AtomicDB

from chain.chain import Chain, Seal
from chain.errors import InvalidWork, WrongChain
from chain.header import template_hash
from chain.sealing import NoProofEngine
from tests.chain.helpers import (
    ALICE,
    BOB,
    CAROL,
    ETHER,
    MINER,
    STORAGE_INIT,
    STORAGE_RUNTIME,
    FixedClock,
    address_of,
    contract_address,
    db_snapshot,
    dev_genesis,
    mine,
    open_chain,
    sign_tx,
    transfer,
)

RUNTIME, INIT = STORAGE_RUNTIME, STORAGE_INIT


def test_genesis_head(chain: Chain) -> None:
    head = chain.head()
    assert head.block_number == 0
    assert chain.genesis_hash == head.hash
    assert chain.score(head.hash) == chain.genesis.initial_difficulty
    assert chain.get_balance(address_of(ALICE)) == 10_000 * ETHER


def test_import_transfers_of_every_type(chain: Chain) -> None:
    to = b"\x11" * 20
    txs = [
        transfer(ALICE, 0, to, 1, kind="eip1559"),
        transfer(ALICE, 1, to, 2, kind="legacy"),
        transfer(BOB, 0, to, 3, kind="access_list"),
    ]
    block = mine(chain, txs)
    assert chain.head().hash == block.hash
    assert chain.get_balance(to) == 6
    assert chain.get_nonce(address_of(ALICE)) == 2
    receipts = chain.get_receipts(block)
    assert [r.gas_used for r in receipts] == [21_000, 42_000, 63_000]
    for index, tx in enumerate(txs):
        location = chain.get_transaction_by_hash(tx.hash)
        assert location is not None
        assert (location.block_hash, location.index) == (block.hash, index)


def test_import_result_and_already_known(chain: Chain) -> None:
    block, _ = chain.build_block(MINER, timestamp=chain.head().timestamp + 5)
    result = chain.import_block(rlp.encode(block))
    assert result.new_canonical == (block.hash,)
    assert result.old_canonical == () and not result.reorg and not result.already_known
    again = chain.import_block(block)
    assert again.already_known and again.new_canonical == ()


def test_recent_blocks_and_receipts_are_read_once_and_a_miss_is_not_remembered(chain: Chain) -> None:
    """Blocks and receipts are kept decoded by hash (a receipt poll reads the same block
    over and over); a hash not stored yet is not remembered as missing."""
    from eth.exceptions import HeaderNotFound

    tx = transfer(ALICE, 0, address_of(BOB), 5)
    block = mine(chain, [tx], do_import=False)
    with pytest.raises(HeaderNotFound):
        chain.get_block_by_hash(block.hash)
    chain.import_block(block)
    stored = chain.get_block_by_hash(block.hash)
    assert stored.hash == block.hash and [t.hash for t in stored.transactions] == [tx.hash]
    assert chain.get_block_by_hash(block.hash) is stored  # the same decoded block
    receipts = chain.get_receipts(stored)
    assert chain.get_receipts(stored.header) is receipts and receipts[0].gas_used == 21_000
    location = chain.get_transaction_by_hash(tx.hash)
    assert location is not None and location.transaction.hash == tx.hash and location.index == 0


def test_block_reward_follows_genesis_schedule(chain: Chain) -> None:
    mine(chain)  # no transactions: the coinbase gets exactly the reward
    assert chain.get_balance(MINER) == chain.genesis.block_reward(1) == 2 * ETHER


def test_contract_creation_call_storage_and_logs(chain: Chain) -> None:
    alice = address_of(ALICE)
    create = sign_tx(ALICE, 0, None, data=INIT, gas=200_000)
    mine(chain, [create])
    created = contract_address(alice, 0)
    assert chain.get_code(created) == RUNTIME
    call = sign_tx(ALICE, 1, created, data=(42).to_bytes(32, "big"), gas=100_000)
    block = mine(chain, [call])
    assert chain.get_storage(created, 0) == 42
    (receipt,) = chain.get_receipts(block)
    assert receipt.logs[0].address == created
    assert receipt.logs[0].topics == (int("aa" * 32, 16),)
    # history stays readable at the older block
    assert chain.get_storage(created, 0, block=1) == 0


def test_build_block_from_pool_skips_invalid(genesis) -> None:
    class Pool:
        def __init__(self, txs):
            self.txs = txs

        def pending(self):
            return self.txs

        def on_new_head(self, state):
            self.head_state = state

        def readd(self, txs):
            pass

    good = transfer(ALICE, 0, b"\x22" * 20)
    gap = transfer(ALICE, 5, b"\x22" * 20)
    pool = Pool([good, gap])
    chain = open_chain(genesis=genesis, txpool=pool)
    block, payload = chain.build_block(MINER, timestamp=genesis.timestamp + 5)
    assert [tx.hash for tx in block.transactions] == [good.hash] and payload is None
    chain.import_block(block)
    assert pool.head_state.get_nonce(address_of(ALICE)) == 1


def test_template_hash_ignores_seal_and_execution_fields(chain: Chain) -> None:
    template = chain.build_template(MINER, timestamp=chain.head().timestamp + 5,
                                    transactions=[transfer(ALICE, 0, b"\x33" * 20)])
    sealed = chain.seal_block(template, Seal(job_id=b"\x01" * 32, step_count=7, work_accumulator=b"\x02" * 32))
    assert template_hash(sealed.header) == template.template_hash
    assert sealed.header.step_count == 7
    other = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[])
    assert other.template_hash != template.template_hash
    moved = chain.build_template(MINER, timestamp=chain.head().timestamp + 5, transactions=[],
                                 extra_data=b"x")
    assert moved.template_hash != other.template_hash


def test_seal_callback_and_payload_are_stored(chain: Chain) -> None:
    def work(template):
        return Seal(job_id=b"\x05" * 32, step_count=3), b"payload:" + template.template_hash

    block, payload = chain.build_block(MINER, timestamp=chain.head().timestamp + 5, seal=work)
    chain.import_block(block, payload)
    assert chain.get_payload(block.hash) == payload
    assert chain.get_block_by_number(1).header.job_id == b"\x05" * 32


def test_export_then_import_into_fresh_chain(chain: Chain) -> None:
    mine(chain, [transfer(ALICE, 0, b"\x44" * 20)])
    mine(chain, [transfer(ALICE, 1, b"\x44" * 20)])
    fresh = open_chain(genesis=chain.genesis)
    for raw in list(chain.export_blocks(1)):
        fresh.import_block(raw)
    assert fresh.head().hash == chain.head().hash


def test_reopen_leveldb_keeps_head(tmp_path: Path, genesis) -> None:
    from chain.db import LevelDB

    db = LevelDB(tmp_path / "db")
    chain = open_chain(db, genesis)
    block = mine(chain, [transfer(ALICE, 0, b"\x55" * 20)])
    db.close()
    db = LevelDB(tmp_path / "db")
    try:
        again = open_chain(db, genesis)
        assert again.head().hash == block.hash
        assert again.get_balance(b"\x55" * 20) == 1
    finally:
        db.close()


def test_invalid_open_with_another_genesis(genesis) -> None:
    db = AtomicDB()
    open_chain(db, genesis)
    other = dev_genesis(initialDifficulty=12_345_678_901)
    with pytest.raises(WrongChain, match="datadir belongs to another chain"):
        Chain.open(db, other, seal_engine=NoProofEngine)


def test_invalid_open_foreign_datadir(genesis) -> None:
    db = AtomicDB()
    open_chain(db, genesis)
    from chain import schema

    for key in schema.FIXED_KEYS:
        del db[key]
    with pytest.raises(WrongChain, match="no chain metadata"):
        Chain.open(db, genesis, seal_engine=NoProofEngine)


def test_invalid_pouw_chain_without_its_engine() -> None:
    """The chain knows no engine but its no-proof one: opened without the pouw engine,
    a pouw chain refuses rather than accept unchecked seals."""
    from chain.errors import SealEngineUnavailable
    from genesis import load_default_genesis

    with pytest.raises(SealEngineUnavailable, match="no seal engine 'pouw'"):
        Chain.open(AtomicDB(), load_default_genesis())
    assert Chain.open(AtomicDB(), dev_genesis()).engine_class.name == "noproof"


# --- atomicity ---------------------------------------------------------------------


class RefusingEngine(NoProofEngine):
    """Accepts every seal, then refuses the work: the check that runs last."""

    def verify_work(self, header, payload, context):
        raise InvalidWork("refused for the test")


def test_invalid_work_leaves_db_byte_identical(any_db, genesis) -> None:
    chain = Chain.open(any_db, genesis, seal_engine=RefusingEngine, clock=FixedClock(genesis.timestamp + 10**6))
    builder = open_chain(genesis=genesis)  # same genesis, no-proof: builds the block
    block = mine(builder, [sign_tx(ALICE, 0, None, data=INIT, gas=200_000)], do_import=False)
    before = db_snapshot(any_db)
    with pytest.raises(InvalidWork):
        chain.import_block(block, b"payload")
    assert db_snapshot(any_db) == before
    assert chain.head().block_number == 0


def test_crash_in_the_middle_of_persisting_leaves_db_identical(any_db, genesis, monkeypatch) -> None:
    """A failure after state, trie and header writes were made (in the batch view)
    must leave nothing behind: only one commit at the very end writes to the db."""
    chain = open_chain(any_db, genesis)
    block = mine(chain, [transfer(ALICE, 0, b"\x66" * 20)], do_import=False)
    before = db_snapshot(any_db)

    from chain import chain as chain_module

    original = chain_module.PouwChainDB._update_chain_gaps

    def crash(cls, *args, **kwargs):
        original(*args, **kwargs)  # the last write of persist_block happens, then a crash
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(chain_module.PouwChainDB, "_update_chain_gaps", classmethod(crash))
    with pytest.raises(RuntimeError):
        chain.import_block(block)
    assert db_snapshot(any_db) == before
    monkeypatch.undo()
    chain.import_block(block)
    assert chain.head().hash == block.hash


class PayloadEngine(NoProofEngine):
    def payload_required(self, header):
        return True

    def verify_work(self, header, payload, context):
        assert context.parent_header.hash == header.parent_hash
        assert context.parent_state.state_root == context.parent_header.state_root


def test_invalid_missing_payload(genesis) -> None:
    chain = Chain.open(AtomicDB(), genesis, seal_engine=PayloadEngine, clock=FixedClock(genesis.timestamp + 10**6))
    block, _ = chain.build_block(MINER, timestamp=genesis.timestamp + 5)
    with pytest.raises(InvalidWork, match="without its work payload"):
        chain.import_block(block)
    chain.import_block(block, b"work")
    assert chain.get_payload(block.hash) == b"work"


def test_invalid_work_is_refused_before_any_transaction_executes(genesis, monkeypatch) -> None:
    """The work check runs before execution: a block whose work fails costs the node no
    EVM execution at all (a forger can cheaply pass the cheap checks, never the work)."""
    from chain import chain as chain_module

    class Refuses(NoProofEngine):
        def payload_required(self, header):
            return True

        def verify_work(self, header, payload, context):
            raise InvalidWork("forged", expected="real work", got=payload)

    chain = Chain.open(AtomicDB(), genesis, seal_engine=Refuses, clock=FixedClock(genesis.timestamp + 10**6))
    block, _ = chain.build_block(MINER, timestamp=genesis.timestamp + 5, transactions=[transfer(ALICE, 0, b"\x66" * 20)])
    executed = []
    original = chain_module.Chain._execute
    monkeypatch.setattr(chain_module.Chain, "_execute", lambda self, *a: executed.append(1) or original(self, *a))
    with pytest.raises(InvalidWork, match="forged"):
        chain.import_block(block, b"bogus")
    assert executed == []


def test_engine_receives_template_fields(genesis) -> None:
    seen = {}

    class Recorder(NoProofEngine):
        def validate_seal(self, header):
            seen["template"] = template_hash(header)

    chain = Chain.open(AtomicDB(), genesis, seal_engine=Recorder, clock=FixedClock(genesis.timestamp + 10**6))
    template = chain.build_template(MINER, timestamp=genesis.timestamp + 5, transactions=[])
    block = chain.seal_block(template, Seal())
    chain.import_block(block)
    assert seen["template"] == template.template_hash


def test_coinbase_fee_recipient(chain: Chain) -> None:
    before = chain.get_balance(address_of(CAROL))
    block = mine(chain, [transfer(BOB, 0, address_of(CAROL), 5)], coinbase=address_of(CAROL))
    base_fee = block.header.base_fee_per_gas
    tip = min(1 * 10**9, 10 * 10**9 - base_fee)
    assert chain.get_balance(address_of(CAROL)) == before + 5 + 2 * ETHER + 21_000 * tip

"""Fork choice and reorgs: heaviest chain wins, ties go to the first seen, state and
the tx pool follow the new branch."""
from __future__ import annotations

import pytest

from chain.txpool import TxPool
from tests.chain.helpers import (
    ALICE,
    BOB,
    CAROL,
    MINER,
    OTHER_MINER,
    STORAGE_INIT,
    address_of,
    contract_address,
    dev_genesis,
    mine,
    open_chain,
    sign_tx,
    store_call,
    transfer,
)

X = b"\x88" * 20


class RecordingPool:
    """Stands in for the tx pool and records what the chain tells it."""

    def __init__(self) -> None:
        self.readded: list = []
        self.heads: list = []

    def pending(self):
        return []

    def on_new_head(self, state) -> None:
        self.heads.append(state)

    def readd(self, txs) -> None:
        self.readded.extend(txs)


@pytest.fixture
def forks(genesis):
    """Block 1 deploys the storage contract; then branch A (2 blocks) and branch B
    (3 blocks, heavier) from block 1, built on a scratch chain (not imported yet)."""
    scratch = open_chain(genesis=genesis)
    deploy = sign_tx(ALICE, 0, None, data=STORAGE_INIT, gas=200_000)
    b1 = mine(scratch, [deploy])
    contract = contract_address(address_of(ALICE), 0)
    txs = {
        "alice1": transfer(ALICE, 1, X, 1),
        "bob_store111": store_call(BOB, 0, contract, 111),
        "carol": transfer(CAROL, 0, X, 2),
        "alice2": transfer(ALICE, 2, X, 3),
        "bob_store222": store_call(BOB, 0, contract, 222),
    }
    a1 = mine(scratch, [txs["alice1"], txs["bob_store111"]], parent_hash=b1.hash)
    a2 = mine(scratch, [txs["carol"], txs["alice2"]], parent_hash=a1.hash)
    bb1 = mine(scratch, [txs["bob_store222"]], parent_hash=b1.hash, coinbase=OTHER_MINER)
    bb2 = mine(scratch, [txs["alice1"]], parent_hash=bb1.hash, coinbase=OTHER_MINER)
    bb3 = mine(scratch, [], parent_hash=bb2.hash, coinbase=OTHER_MINER)
    return dict(b1=b1, A=[a1, a2], B=[bb1, bb2, bb3], txs=txs, contract=contract, scratch=scratch)


def test_reorg_to_heavier_branch(genesis, forks) -> None:
    pool = RecordingPool()
    chain = open_chain(genesis=genesis, txpool=pool)
    chain.import_block(forks["b1"])
    for block in forks["A"]:
        chain.import_block(block)
    a_head = chain.head().hash
    results = [chain.import_block(block) for block in forks["B"]]
    # B1 and B2 are lighter or equal: the head stays on A (ties go to the first seen).
    assert results[0].new_canonical == () and results[1].new_canonical == ()
    assert chain.score(forks["B"][1].hash) == chain.score(a_head)
    last = results[2]
    assert last.reorg
    assert last.new_canonical == tuple(b.hash for b in forks["B"])
    assert set(last.old_canonical) == {b.hash for b in forks["A"]}
    assert chain.head().hash == forks["B"][2].hash
    assert [chain.get_canonical_hash(n) for n in (1, 2, 3, 4)] == [forks["b1"].hash] + [b.hash for b in forks["B"]]

    # State equals that of a chain that only ever saw B.
    only_b = open_chain(genesis=genesis)
    for block in [forks["b1"], *forks["B"]]:
        only_b.import_block(block)
    assert chain.head().state_root == only_b.head().state_root
    for who in (address_of(ALICE), address_of(BOB), address_of(CAROL), X, MINER, OTHER_MINER):
        assert chain.get_balance(who) == only_b.get_balance(who)
        assert chain.get_nonce(who) == only_b.get_nonce(who)
    assert chain.get_storage(forks["contract"], 0) == 222

    # A's transactions not in B went back to the pool (alice1 is in B2: not re-added).
    txs = forks["txs"]
    assert {tx.hash for tx in pool.readded} == {txs["bob_store111"].hash, txs["carol"].hash, txs["alice2"].hash}
    # Lookups follow the canonical chain.
    assert chain.get_transaction_by_hash(txs["carol"].hash) is None
    location = chain.get_transaction_by_hash(txs["alice1"].hash)
    assert location is not None and location.block_hash == forks["B"][1].hash


def test_reorg_readds_still_valid_txs_to_real_pool(genesis, forks) -> None:
    chain = open_chain(genesis=genesis)
    pool = TxPool(genesis.chain_id, chain.state_view())
    chain.txpool = pool
    for block in [forks["b1"], *forks["A"], *forks["B"]]:
        chain.import_block(block)
    txs = forks["txs"]
    # bob_store111 used Bob's nonce 0, which B1 spent: no longer valid, not pending.
    assert {tx.hash for tx in pool.pending()} == {txs["carol"].hash, txs["alice2"].hash}
    block, _ = chain.build_block(MINER, timestamp=chain.head().timestamp + 5)
    assert {tx.hash for tx in block.transactions} == {txs["carol"].hash, txs["alice2"].hash}
    chain.import_block(block)


def test_ties_go_to_first_seen(genesis) -> None:
    builder = open_chain(genesis=genesis)
    x = mine(builder, [], coinbase=MINER, do_import=False)
    y = mine(builder, [], coinbase=OTHER_MINER, do_import=False)
    assert x.header.difficulty == y.header.difficulty and x.hash != y.hash
    for first, second in ((x, y), (y, x)):
        chain = open_chain(genesis=genesis)
        chain.import_block(first)
        result = chain.import_block(second)
        assert result.new_canonical == () and not result.reorg
        assert chain.head().hash == first.hash
        assert chain.score(first.hash) == chain.score(second.hash)


def test_reorg_back_and_forth(genesis, forks) -> None:
    """A branch that loses can win again once it grows heavier."""
    chain = open_chain(genesis=genesis)
    for block in [forks["b1"], *forks["A"], *forks["B"]]:
        chain.import_block(block)
    scratch = forks["scratch"]
    a3 = mine(scratch, [], parent_hash=forks["A"][1].hash)
    a4 = mine(scratch, [], parent_hash=a3.hash, do_import=False)
    chain.import_block(a3)
    assert chain.head().hash == forks["B"][2].hash  # tie: B3 was first
    result = chain.import_block(a4)
    assert result.reorg and chain.head().hash == a4.hash
    assert chain.get_storage(forks["contract"], 0) == 111


def test_reorg_to_shorter_heavier_branch() -> None:
    """Three slow (lighter) blocks lose to two fast (heavier) ones; the abandoned
    blocks above the new head's height are reported and their lookups removed. (The
    retarget reads ancestors only, so the branches share a prefix long enough for
    their own blocks to move difficulty, and a +100 % clamp lets one block double it.)"""
    genesis = dev_genesis(maxAdjustUpPercent=100)
    scratch = open_chain(genesis=genesis)
    prefix = [mine(scratch, dt=5), mine(scratch, dt=5)]
    slow, fast = [], []
    parent = prefix[-1].hash
    for nonce in range(3):
        block = mine(scratch, [transfer(ALICE, nonce, X)], parent_hash=parent, dt=10)
        slow.append(block)
        parent = block.hash
    parent = prefix[-1].hash
    for nonce in range(2):
        block = mine(scratch, [transfer(BOB, nonce, X)], parent_hash=parent, dt=1)
        fast.append(block)
        parent = block.hash
    pool = RecordingPool()
    chain = open_chain(genesis=genesis, txpool=pool)
    for block in prefix + slow:
        chain.import_block(block)
    assert chain.import_block(fast[0]).new_canonical == ()
    result = chain.import_block(fast[1])
    assert result.reorg and chain.head().hash == fast[1].hash
    assert result.old_canonical == tuple(b.hash for b in slow)
    assert chain.get_transaction_by_hash(slow[2].transactions[0].hash) is None
    assert {tx.hash for tx in pool.readded} == {b.transactions[0].hash for b in slow}

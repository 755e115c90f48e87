"""The transaction pool: each admission rule has a test_invalid_*, plus ordering,
replacement, eviction, gaps, head changes and reorgs, with real signed transactions."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, Optional

import pytest
import rlp
from eth.constants import SECPK1_N
from eth.vm.forks.prague.transactions import PragueTransactionBuilder as Builder
from eth_keys import keys

from chain.errors import ChainError
from chain.transactions import encode_transaction
from chain.txpool import (
    SLOT_SIZE,
    AccountLimitExceeded,
    AlreadyKnown,
    FeeCapTooLow,
    FloorDataGasTooLow,
    GasLimitExceeded,
    InsufficientFunds,
    IntrinsicGasTooLow,
    InvalidChainId,
    InvalidFields,
    InvalidSender,
    MalformedTx,
    NonceTooLow,
    OversizedData,
    ReplacementUnderpriced,
    TipAboveFeeCapError,
    TxPool,
    TxPoolError,
    TxPoolFull,
    floor_data_gas,
    TxTypeNotSupported,
    Underpriced,
    UnprotectedTx,
)

CHAIN_ID = 1337
GWEI = 10**9
ETHER = 10**18
KEYS = [keys.PrivateKey(bytes([i + 1]) * 32) for i in range(8)]
A, B, C, D = (k.public_key.to_canonical_address() for k in KEYS[:4])
TO = b"\x22" * 20


@dataclass
class FakeState:
    """A head state for tests: nonces and balances by address."""

    nonces: Dict[bytes, int] = field(default_factory=dict)
    balances: Dict[bytes, int] = field(default_factory=dict)
    fee: int = 1 * GWEI
    gas_limit: int = 30_000_000

    def get_nonce(self, address: bytes) -> int:
        return self.nonces.get(address, 0)

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, 100 * ETHER)

    def base_fee(self) -> int:
        return self.fee

    def block_gas_limit(self) -> int:
        return self.gas_limit


def dyn(key_index: int, nonce: int, fee_cap: int = 10 * GWEI, tip: int = 1 * GWEI, *,
        gas: int = 21000, value: int = 0, data: bytes = b"", chain_id: int = CHAIN_ID):
    """A signed EIP-1559 transaction."""
    unsigned = Builder.new_unsigned_dynamic_fee_transaction(
        chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=fee_cap,
        gas=gas, to=TO, value=value, data=data, access_list=[],
    )
    return unsigned.as_signed_transaction(KEYS[key_index])


def legacy(key_index: int, nonce: int, gas_price: int = 10 * GWEI, *, chain_id: Optional[int] = CHAIN_ID,
           gas: int = 21000, value: int = 0):
    unsigned = Builder.create_unsigned_transaction(nonce=nonce, gas_price=gas_price, gas=gas, to=TO, value=value, data=b"")
    return unsigned.as_signed_transaction(KEYS[key_index], chain_id=chain_id)


def raw(tx) -> bytes:
    return encode_transaction(tx)


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
def pool(state: FakeState) -> TxPool:
    return TxPool(CHAIN_ID, state)


# --------------------------------------------------------------------- happy paths


def test_add_raw_and_object_and_get(pool: TxPool) -> None:
    t1, t2 = dyn(0, 0), legacy(1, 0)
    assert pool.add(raw(t1)) == t1.hash
    assert pool.add(t2) == t2.hash
    assert len(pool) == 2 and t1.hash in pool
    assert pool.get(t1.hash) == t1 and pool.get(b"\x00" * 32) is None
    assert pool.stats().pending == 2


def test_access_list_transaction_accepted(pool: TxPool) -> None:
    unsigned = Builder.new_unsigned_access_list_transaction(
        chain_id=CHAIN_ID, nonce=0, gas_price=2 * GWEI, gas=30000, to=TO, value=0, data=b"",
        access_list=[(b"\x33" * 20, [0])],
    )
    pool.add(raw(unsigned.as_signed_transaction(KEYS[0])))
    assert len(pool) == 1


def test_pending_orders_by_effective_tip_and_nonce(pool: TxPool) -> None:
    # A pays tip 1 then 5; B pays tip 3; C legacy 2.5 gwei at base fee 1 -> tip 1.5
    pool.add(dyn(0, 0, tip=1 * GWEI))
    pool.add(dyn(0, 1, tip=5 * GWEI))
    pool.add(dyn(1, 0, tip=3 * GWEI))
    pool.add(legacy(2, 0, gas_price=25 * GWEI // 10))
    order = [(tx.sender, tx.nonce) for tx in pool.pending()]
    assert order == [(B, 0), (C, 0), (A, 0), (A, 1)]
    # at a higher base fee the fee cap binds: A's txs (cap 10) pay 10 - 9.5 = 0.5
    # and C's legacy drops out (2.5 < 9.5 gwei)
    order = [(tx.sender, tx.nonce) for tx in pool.pending(base_fee=95 * GWEI // 10)]
    assert order == [(A, 0), (A, 1), (B, 0)]  # all tie at 0.5: first seen first (A1 before B0)


def test_pending_stops_sender_at_fee_cap_below_base_fee(pool: TxPool, state: FakeState) -> None:
    pool.add(dyn(0, 0, fee_cap=3 * GWEI, tip=GWEI))
    pool.add(dyn(0, 1, fee_cap=50 * GWEI, tip=GWEI))
    assert len(pool.pending(base_fee=2 * GWEI)) == 2
    assert pool.pending(base_fee=4 * GWEI) == []  # nonce 1 cannot go before nonce 0


def test_gap_is_queued_then_promoted(pool: TxPool) -> None:
    pool.add(dyn(0, 0))
    pool.add(dyn(0, 2))
    pool.add(dyn(0, 3))
    content = pool.content()
    assert list(content["pending"][A]) == [0]
    assert list(content["queued"][A]) == [2, 3]
    assert [tx.nonce for tx in pool.pending()] == [0]
    assert pool.next_nonce(A) == 1
    pool.add(dyn(0, 1))  # fills the gap
    content = pool.content()
    assert list(content["pending"][A]) == [0, 1, 2, 3] and A not in content["queued"]
    assert [tx.nonce for tx in pool.pending()] == [0, 1, 2, 3]
    assert pool.stats().pending == 4 and pool.stats().queued == 0


def test_replacement_needs_ten_percent_bump_of_fee_cap_and_tip(pool: TxPool) -> None:
    old = dyn(0, 0, fee_cap=100 * GWEI, tip=10 * GWEI)
    pool.add(old)
    with pytest.raises(ReplacementUnderpriced) as info:
        pool.add(dyn(0, 0, fee_cap=109 * GWEI, tip=11 * GWEI))  # fee cap +9%
    assert str(info.value) == "replacement transaction underpriced"
    with pytest.raises(ReplacementUnderpriced):
        pool.add(dyn(0, 0, fee_cap=110 * GWEI, tip=109 * GWEI // 10))  # tip +9%
    new = dyn(0, 0, fee_cap=110 * GWEI, tip=11 * GWEI)  # both +10%
    pool.add(new)
    assert old.hash not in pool and pool.get(new.hash) == new and len(pool) == 1


def test_replacement_legacy_gas_price(pool: TxPool) -> None:
    pool.add(legacy(0, 0, gas_price=100 * GWEI))
    with pytest.raises(ReplacementUnderpriced):
        pool.add(legacy(0, 0, gas_price=109 * GWEI))
    pool.add(legacy(0, 0, gas_price=110 * GWEI))
    assert len(pool) == 1


def test_invalid_replacement_with_zero_tip_must_still_increase(state: FakeState) -> None:
    """A 10% bump of 0 is 0: geth also demands strictly more, or replacement is free."""
    pool = TxPool(CHAIN_ID, state, min_gas_price=0)
    pool.add(dyn(0, 0, fee_cap=10 * GWEI, tip=0))
    with pytest.raises(ReplacementUnderpriced):
        pool.add(dyn(0, 0, fee_cap=20 * GWEI, tip=0))


def test_eviction_of_cheapest_when_full(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_slots=3)
    cheap = dyn(0, 0, tip=1 * GWEI)
    for tx in (cheap, dyn(1, 0, tip=2 * GWEI), dyn(2, 0, tip=3 * GWEI)):
        pool.add(tx)
    better = dyn(3, 0, tip=int(1.5 * GWEI))
    pool.add(better)
    assert cheap.hash not in pool and better.hash in pool and len(pool) == 3
    assert pool.stats().slots == 3


def test_invalid_pool_full_when_newcomer_pays_no_more(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_slots=2)
    pool.add(dyn(0, 0, tip=2 * GWEI))
    pool.add(dyn(1, 0, tip=3 * GWEI))
    with pytest.raises(TxPoolFull) as info:
        pool.add(dyn(2, 0, tip=2 * GWEI))  # equal to the cheapest: refused
    assert str(info.value) == "txpool is full"
    assert len(pool) == 2


def test_eviction_prefers_queued_on_equal_price(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_slots=2)
    pending_tx, queued_tx = dyn(0, 0), dyn(1, 5)
    pool.add(pending_tx)
    pool.add(queued_tx)
    pool.add(dyn(2, 0, tip=2 * GWEI))
    assert pending_tx.hash in pool and queued_tx.hash not in pool


def test_eviction_matches_brute_force_under_churn() -> None:
    """The lazy price heap agrees with a full scan across adds, evictions, inclusions
    and base fee changes: every eviction removes a tx cheaper than the newcomer, and a
    refusal happens only when no other sender's tx is cheaper."""
    import random

    rng = random.Random(7)
    state = FakeState()
    pool = TxPool(CHAIN_ID, state, max_slots=12)
    nonces = [0] * 8
    refusals = evictions = 0
    for step in range(150):
        if step % 25 == 24:
            state = FakeState(fee=rng.choice([1, 3, 6]) * GWEI, nonces={})
            pool.on_new_head(state)
        k = rng.randrange(8)
        tx = dyn(k, nonces[k], fee_cap=rng.randrange(6, 12) * GWEI, tip=rng.randrange(1, 6) * GWEI)
        base = state.fee
        before = {h: pool._by_hash[h] for h in list(pool._by_hash)}
        others = [p.effective_tip(base) for p in before.values() if p.sender != tx.sender]
        new_tip = min(tx.max_priority_fee_per_gas, tx.max_fee_per_gas - base)
        try:
            pool.add(tx)
        except TxPoolFull:
            assert len(before) == 12 and min(others) >= new_tip
            refusals += 1
            continue
        nonces[k] += 1
        evicted = set(before) - set(pool._by_hash)
        evictions += len(evicted)
        for h in evicted:
            assert before[h].effective_tip(base) < new_tip
            assert before[h].effective_tip(base) == min(others)
        assert pool.stats().slots == sum(p.slots for p in pool._by_hash.values()) <= 12
    assert refusals > 10 and evictions > 10


def test_price_heap_stays_bounded_under_churn(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_slots=3)
    top = [dyn(k, 0, tip=(k + 1) * GWEI) for k in range(4)]
    for tx in top:
        pool.add(tx)  # the 4th evicts: the heap now exists
    assert pool._heap_base_fee is not None
    pool.remove_included([top[3]])  # one slot free from now on
    for n in range(1, 150):  # included one by one: the pool never fills again
        tx = dyn(4, n - 1)
        pool.add(tx)
        pool.remove_included([tx])
        assert len(pool._price_heap) <= 2 * pool.max_slots + 66  # bounded, not growing


def test_slots_bound_memory_by_size(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_slots=4)
    big = dyn(0, 0, data=b"\x01" * (SLOT_SIZE + 1), gas=1_400_000)  # 2 slots (EIP-7623 floor: 1,331,760)
    pool.add(big)
    assert pool.stats().slots == 2
    pool.add(dyn(1, 0))
    last = dyn(2, 0)
    pool.add(last)
    assert pool.stats().slots == 4
    # one slot needed: among equal tips the latest arrival goes, the big one stays
    pool.add(dyn(3, 0, tip=2 * GWEI))
    assert last.hash not in pool and big.hash in pool and pool.stats().slots == 4
    # a big newcomer (2 slots) evicts as many cheaper entries as it needs
    pool.add(dyn(4, 0, tip=3 * GWEI, data=b"\x01" * (SLOT_SIZE + 1), gas=1_400_000))
    assert pool.stats().slots <= 4 and big.hash not in pool


def test_nonce_replay_after_inclusion_refused(pool: TxPool, state: FakeState) -> None:
    tx = dyn(0, 0)
    pool.add(tx)
    assert pool.remove_included([tx]) == [tx.hash]
    assert len(pool) == 0
    with pytest.raises(NonceTooLow):  # even before the head state arrives
        pool.add(tx)
    state.nonces[A] = 1
    pool.on_new_head(state)
    with pytest.raises(NonceTooLow) as info:
        pool.add(tx)
    assert (info.value.expected, info.value.got) == (1, 0)


def test_remove_included_drops_same_nonce_competitor(pool: TxPool) -> None:
    pooled = dyn(0, 0, tip=2 * GWEI)
    pool.add(pooled)
    pool.add(dyn(0, 1))
    included = dyn(0, 0, tip=1 * GWEI)  # another tx with that nonce made it into the block
    assert pool.remove_included([included]) == [pooled.hash]
    assert [tx.nonce for tx in pool.pending()] == [1]


def test_on_new_head_drops_stale_and_unaffordable_and_demotes(pool: TxPool, state: FakeState) -> None:
    for n in range(3):
        pool.add(dyn(0, n, value=ETHER))
    pool.add(dyn(1, 0, value=10 * ETHER))
    pool.add(dyn(1, 1))
    new_state = FakeState(nonces={A: 1}, balances={B: 5 * ETHER})
    dropped = pool.on_new_head(new_state)
    assert len(dropped) == 2  # A's nonce 0 (stale), B's nonce 0 (unaffordable)
    content = pool.content()
    assert list(content["pending"][A]) == [1, 2]
    assert list(content["queued"][B]) == [1]  # demoted: its nonce 0 is gone
    assert all(tx.sender != B for tx in pool.pending())


def test_on_new_head_drops_above_new_gas_limit(pool: TxPool) -> None:
    pool.add(dyn(0, 0, gas=100_000))
    pool.on_new_head(FakeState(gas_limit=50_000))
    assert len(pool) == 0


def test_reorg_readd(pool: TxPool, state: FakeState) -> None:
    """Block on branch 1 included A0, A1, B0; branch 2 (heavier) included only B0."""
    a0, a1, b0 = dyn(0, 0), dyn(0, 1), dyn(1, 0)
    for tx in (a0, a1, b0):
        pool.add(tx)
    pool.remove_included([a0, a1, b0])
    pool.on_new_head(FakeState(nonces={A: 2, B: 1}))
    assert len(pool) == 0
    # reorg to branch 2: state has only B0 applied
    pool.on_new_head(FakeState(nonces={B: 1}))
    readded = pool.readd([a1, b0, a0])  # any order
    assert readded == [a0.hash, a1.hash]  # b0 is still included: nonce too low, skipped
    assert [tx.hash for tx in pool.pending()] == [a0.hash, a1.hash]


def test_reorg_readd_before_on_new_head(pool: TxPool) -> None:
    """The node may re-add before it hands the pool the new head: still works."""
    a0, a1, b0 = dyn(0, 0), dyn(0, 1), dyn(1, 0)
    pool.on_new_head(FakeState(nonces={A: 2, B: 1}))  # branch 1 head: all included
    assert pool.readd([a0, a1, b0]) == []  # refused against the old head's state ...
    pool.on_new_head(FakeState(nonces={B: 1}))  # ... and retried on the new one
    assert [tx.hash for tx in pool.pending()] == [a0.hash, a1.hash]
    pool.on_new_head(FakeState(nonces={A: 2, B: 1}))
    assert len(pool) == 0 and not pool._deferred  # retried once, not kept forever


def test_thread_safe_concurrent_adds(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state)
    txs = [dyn(k, n) for k in range(4) for n in range(10)]
    errors = []

    def worker(chunk):
        for tx in chunk:
            try:
                pool.add(raw(tx))
                pool.pending()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(txs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(pool) == 40 and pool.stats().slots == 40
    assert len(pool.pending()) == 40


# -------------------------------------------------------------------- refusals


def test_invalid_already_known(pool: TxPool) -> None:
    tx = dyn(0, 0)
    pool.add(tx)
    with pytest.raises(AlreadyKnown) as info:
        pool.add(raw(tx))
    assert str(info.value) == "already known"


def test_invalid_nonce_too_low(pool: TxPool, state: FakeState) -> None:
    state.nonces[A] = 3
    with pytest.raises(NonceTooLow) as info:
        pool.add(dyn(0, 2))
    assert str(info.value) == "nonce too low"
    assert info.value.full_message == "nonce too low: next nonce 3, tx nonce 2"


def test_invalid_insufficient_funds(pool: TxPool, state: FakeState) -> None:
    state.balances[A] = 21000 * 10 * GWEI + 5
    pool.add(dyn(0, 0, value=5))  # exactly affordable: gas * fee cap + value
    state.balances[B] = 21000 * 10 * GWEI + 4
    with pytest.raises(InsufficientFunds) as info:
        pool.add(dyn(1, 0, value=5))
    assert str(info.value) == "insufficient funds for gas * price + value"


def test_invalid_insufficient_funds_with_pooled_txs(pool: TxPool, state: FakeState) -> None:
    state.balances[A] = 3 * ETHER
    pool.add(dyn(0, 0, value=ETHER))
    pool.add(dyn(0, 1, value=ETHER))
    with pytest.raises(InsufficientFunds):
        pool.add(dyn(0, 2, value=ETHER))  # alone affordable, together not
    # a replacement does not count the tx it replaces
    pool.add(dyn(0, 1, fee_cap=11 * GWEI, tip=int(1.1 * GWEI), value=ETHER))


def test_invalid_fee_cap_below_base_fee(pool: TxPool, state: FakeState) -> None:
    state.fee = 20 * GWEI
    with pytest.raises(FeeCapTooLow) as info:
        pool.add(dyn(0, 0, fee_cap=19 * GWEI))
    assert str(info.value) == "max fee per gas less than block base fee"
    with pytest.raises(FeeCapTooLow):
        pool.add(legacy(0, 0, gas_price=19 * GWEI))


def test_invalid_underpriced_tip(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, min_gas_price=GWEI)
    with pytest.raises(Underpriced) as info:
        pool.add(dyn(0, 0, tip=GWEI - 1))
    assert str(info.value) == "transaction underpriced"
    pool.add(dyn(0, 0, tip=GWEI))


def test_invalid_tip_above_fee_cap(pool: TxPool) -> None:
    with pytest.raises(TipAboveFeeCapError) as info:
        pool.add(dyn(0, 0, fee_cap=GWEI, tip=2 * GWEI))
    assert str(info.value) == "max priority fee per gas higher than max fee per gas"


def test_invalid_intrinsic_gas(pool: TxPool) -> None:
    with pytest.raises(IntrinsicGasTooLow) as info:
        pool.add(dyn(0, 0, gas=20999))
    assert str(info.value) == "intrinsic gas too low"
    assert info.value.expected == 21000
    with pytest.raises(IntrinsicGasTooLow):
        pool.add(dyn(0, 0, gas=21000, data=b"\x01"))  # + 16 per non-zero byte


def test_invalid_under_the_calldata_floor(pool: TxPool) -> None:
    """EIP-7623: 100 non-zero bytes of calldata cost 22,600 intrinsic gas but the floor is
    21,000 + 10 x 400 tokens = 25,000; py-evm would mine it and charge 25,000, more
    than the sender's limit. geth's pool refuses it with this message."""
    data = b"\x01" * 100
    with pytest.raises(FloorDataGasTooLow) as info:
        pool.add(dyn(0, 0, gas=23_000, data=data))
    assert str(info.value) == "insufficient gas for floor data gas cost"
    assert (info.value.expected, info.value.got) == (25_000, 23_000)
    assert floor_data_gas(b"\x00" * 10 + b"\x05" * 3) == 21_000 + 10 * (10 + 12)
    pool.add(dyn(0, 0, gas=25_000, data=data))  # at the floor: admitted


def test_invalid_exceeds_block_gas_limit(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, block_gas_limit_fn=lambda: 100_000)
    with pytest.raises(GasLimitExceeded) as info:
        pool.add(dyn(0, 0, gas=100_001))
    assert str(info.value) == "exceeds block gas limit"
    pool.add(dyn(0, 0, gas=100_000))


def test_invalid_oversized(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_tx_size=1024)
    tx = dyn(0, 0, data=b"\x01" * 1024, gas=100_000)
    for candidate in (tx, raw(tx)):
        with pytest.raises(OversizedData) as info:
            pool.add(candidate)
        assert str(info.value) == "oversized data"


def test_invalid_type_not_supported(pool: TxPool) -> None:
    with pytest.raises(TxTypeNotSupported) as info:
        pool.add(b"\x03" + rlp.encode([b""] * 14))
    assert str(info.value) == "transaction type not supported"


def test_invalid_sender_high_s(pool: TxPool) -> None:
    tx = dyn(0, 0)
    bad = tx.copy(s=SECPK1_N - tx.s, y_parity=1 - tx.y_parity)
    for candidate in (bad, raw(bad)):
        with pytest.raises(InvalidSender) as info:
            pool.add(candidate)
        assert str(info.value) == "invalid sender"


def test_invalid_malformed(pool: TxPool) -> None:
    with pytest.raises(MalformedTx):
        pool.add(raw(dyn(0, 0)) + b"\x00")


def test_invalid_chain_id(pool: TxPool) -> None:
    with pytest.raises(InvalidChainId) as info:
        pool.add(dyn(0, 0, chain_id=1))
    assert str(info.value) == "invalid chain id for signer"
    assert (info.value.expected, info.value.got) == (CHAIN_ID, 1)
    with pytest.raises(InvalidChainId):
        pool.add(legacy(0, 0, chain_id=1))


def test_invalid_unprotected_legacy(pool: TxPool, state: FakeState) -> None:
    tx = legacy(0, 0, chain_id=None)
    with pytest.raises(UnprotectedTx) as info:
        pool.add(tx)
    assert str(info.value) == "only replay-protected (EIP-155) transactions allowed over RPC"
    TxPool(CHAIN_ID, state, allow_unprotected=True).add(tx)


def test_invalid_nonce_max_value(pool: TxPool) -> None:
    with pytest.raises(InvalidFields) as info:
        pool.add(dyn(0, 2**64 - 1))
    assert str(info.value) == "nonce has max value"


def test_invalid_account_limit(state: FakeState) -> None:
    pool = TxPool(CHAIN_ID, state, max_per_sender=3)
    for n in range(3):
        pool.add(dyn(0, n))
    with pytest.raises(AccountLimitExceeded):
        pool.add(dyn(0, 3))
    pool.add(dyn(0, 2, fee_cap=11 * GWEI, tip=int(1.1 * GWEI)))  # replacing is still fine


def test_errors_are_chain_errors_with_geth_messages() -> None:
    for cls in TxPoolError.__subclasses__():
        err = cls("detail")
        assert isinstance(err, ChainError)
        assert str(err) == cls.message == err.rpc_message
        assert err.full_message == f"{cls.message}: detail"


def test_new_head_reads_do_not_block_adds(pool: TxPool) -> None:
    """on_new_head reads every sender's account before it takes the pool's lock: an
    ``add`` during those (slow) reads does not wait for them, and the re-check that
    follows still sees the transaction."""
    for i in range(4):
        pool.add(dyn(i, 0))
    reading = threading.Event()
    release = threading.Event()

    class SlowState(FakeState):
        def get_balance(self, address: bytes) -> int:
            reading.set()
            release.wait(5)
            return super().get_balance(address)

    head = threading.Thread(target=pool.on_new_head, args=(SlowState(),))
    head.start()
    assert reading.wait(5)
    t = dyn(5, 0)
    pool.add(t)  # would deadlock-wait 5 s if the reads held the lock
    assert not release.is_set() and t.hash in pool
    release.set()
    head.join(10)
    assert t.hash in pool and len(pool) == 5
    assert pool.version > 0


def test_new_head_drops_mined_nonces(pool: TxPool, state: FakeState) -> None:
    for nonce in range(3):
        pool.add(dyn(0, nonce))
    moved = FakeState(nonces={A: 2}, balances=state.balances)
    dropped = pool.on_new_head(moved)
    assert len(dropped) == 2 and pool.stats().pending == 1 and pool.next_nonce(A) == 3

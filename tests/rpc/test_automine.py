"""When automine mines (rpc/automine.py): a transaction sent on its own at once, woken by
its admission rather than by the poll; under load, blocks start at least
``busy_period_s`` apart so that they fill. Only lower bounds and generous upper bounds on
time are asserted (a slow machine makes things later, never earlier)."""
from __future__ import annotations

import time

from eth_account import Account

from rpc.automine import Automine
from rpc.backend import ChainBackend
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, CHAIN_ID

TO = "0x" + "22" * 20


def raw_transfer(account: Account, nonce: int) -> bytes:
    signed = account.sign_transaction({
        "type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": TO, "value": 1, "gas": 21_000,
        "maxFeePerGas": 10 * 10**9, "maxPriorityFeePerGas": 10**9,
    })
    return bytes(signed.raw_transaction)


def wait_for_head(backend: ChainBackend, number: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while backend.chain.head().block_number < number:
        assert time.monotonic() < deadline, f"no block #{number} within {timeout} s"
        time.sleep(0.001)
    return time.monotonic()


def test_a_lone_transaction_is_mined_without_waiting_for_the_poll(backend: ChainBackend) -> None:
    # a poll interval far longer than the test: only the admission's wake-up can mine it
    with Automine(backend, interval_s=30):
        time.sleep(0.05)  # the thread is now waiting on its 30 s poll
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, 0))
        wait_for_head(backend, 1, timeout=10)
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, 1))
        wait_for_head(backend, 2, timeout=10)
    assert [len(backend.chain.get_block_by_number(n).transactions) for n in (1, 2)] == [1, 1]


def test_under_load_blocks_start_a_busy_period_apart_and_fill(backend: ChainBackend) -> None:
    miner = Automine(backend, busy_period_s=0.5)
    started: list[float] = []
    mine_now = miner.mine_now

    def timed_mine_now(*, allow_empty: bool = True):  # type: ignore[no-untyped-def]
        started.append(time.monotonic())
        return mine_now(allow_empty=allow_empty)

    miner.mine_now = timed_mine_now  # type: ignore[method-assign]
    for nonce in range(3):  # waiting before the miner starts: its first block holds six
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, nonce))
        backend.submit_raw_transaction(raw_transfer(ACCOUNT2, nonce))
    with miner:
        wait_for_head(backend, 1, timeout=10)
        for nonce in range(3, 5):  # more arrive while it pauses
            backend.submit_raw_transaction(raw_transfer(ACCOUNT, nonce))
            backend.submit_raw_transaction(raw_transfer(ACCOUNT2, nonce))
        wait_for_head(backend, 2, timeout=10)
    assert len(backend.chain.get_block_by_number(1).transactions) == 6
    assert started[1] - started[0] >= 0.5  # the pause after a block of more than one transaction
    assert len(backend.chain.get_block_by_number(2).transactions) == 4  # the next block took them all

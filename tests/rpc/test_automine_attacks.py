"""Attacks on automine's wake-ups (rpc/automine.py): a transaction it cannot mine yet
(a nonce gap) must not make it rebuild blocks in a loop, and the gap's filler is mined
at once; stop() returns promptly from the busy pause and leaves no listener behind."""
from __future__ import annotations

import time

from rpc.automine import Automine
from rpc.backend import ChainBackend
from tests.rpc.conftest import ACCOUNT
from tests.rpc.test_automine import raw_transfer, wait_for_head


def test_a_nonce_gap_does_not_make_automine_rebuild_in_a_loop(backend: ChainBackend) -> None:
    miner = Automine(backend, interval_s=30)
    attempts = []
    original = miner.mine_now

    def counting(**kwargs):
        attempts.append(time.monotonic())
        return original(**kwargs)

    miner.mine_now = counting  # type: ignore[method-assign]
    with miner:
        time.sleep(0.05)
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, 1))  # nonce 0 missing
        time.sleep(0.3)
        assert backend.chain.head().block_number == 0
        assert len(attempts) <= 2, f"{len(attempts)} block builds for a transaction that cannot be mined"
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, 0))  # fills the gap: both now
        wait_for_head(backend, 1, timeout=10)
        sender = bytes.fromhex(ACCOUNT.address[2:])
        deadline = time.monotonic() + 10
        while backend.chain.reader_at().account(sender).nonce < 2:  # the gapped one too
            assert time.monotonic() < deadline, "the transaction behind the gap was not mined"
            time.sleep(0.005)
    assert miner._on_transaction not in backend.transaction_listeners


def test_stop_returns_promptly_from_the_busy_pause(backend: ChainBackend) -> None:
    miner = Automine(backend, interval_s=30, busy_period_s=30).start()
    try:
        for nonce in range(3):
            backend.submit_raw_transaction(raw_transfer(ACCOUNT, nonce))
        miner.mine_now()  # a block of several: the next one waits busy_period_s
        backend.submit_raw_transaction(raw_transfer(ACCOUNT, 3))
        time.sleep(0.05)
    finally:
        started = time.monotonic()
        miner.stop()
    assert time.monotonic() - started < 2
    assert not miner._thread.is_alive()
    assert miner._on_transaction not in backend.transaction_listeners

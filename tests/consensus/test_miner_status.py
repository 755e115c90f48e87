"""The miner's rate meter and status (pouw_minerStatus, eth_hashrate read them)."""
from __future__ import annotations

from consensus.miner import Miner, RateMeter
from tests.chain.helpers import MINER
from tests.consensus.helpers import open_pouw_chain, tiny_work_units


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_meter_averages_over_its_window() -> None:
    clock = Clock()
    meter = RateMeter(window=10.0, clock=clock)
    assert meter.rates() == (0.0, 0.0)
    for _ in range(10):  # 10 s at 5 steps of 7 units per second
        for _ in range(5):
            meter.add(1, 7)
        clock.now += 1.0
    steps, units = meter.rates()
    assert 4.0 <= steps <= 5.5 and abs(units - 7 * steps) < 1e-9
    clock.now += 60.0  # idle for longer than the window: the rate falls to zero
    assert meter.rates() == (0.0, 0.0)


def test_status_after_mining_a_block() -> None:
    chain = open_pouw_chain()
    miner = Miner(chain, MINER, device="cpu")
    assert miner.status()["mining"] is False and miner.status()["last"] is None
    mined = miner.mine_and_import()
    assert mined is not None
    status = miner.status()
    assert status["blocks_mined"] == 1 and status["coinbase"] == bytes(MINER) and status["device"] == "cpu"
    assert status["last"]["number"] == 1 and status["last"]["steps"] == mined.steps
    assert status["steps_per_second"] > 0
    assert abs(status["work_units_per_second"] - status["steps_per_second"] * tiny_work_units()) < 1e-6
    assert status["current"] is None  # between rounds

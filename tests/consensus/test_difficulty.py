"""Difficulty retargets toward the genesis block time within clamps; heaviest chain wins."""
from __future__ import annotations

from consensus.difficulty import DifficultyParams, next_difficulty
from tests.chain.helpers import MINER, OTHER_MINER
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis

P = DifficultyParams(target_block_time=5, minimum_difficulty=100, max_adjust_up_percent=25, max_adjust_down_percent=20)


def test_retarget_steers_toward_target_within_clamps() -> None:
    assert next_difficulty(10_000, 100, 105, P) == 10_000  # on target
    assert next_difficulty(10_000, 100, 110, P) == 8_000  # twice as slow: -50% clamped to -20%
    assert next_difficulty(10_000, 100, 106, P) == 8_333  # proportional inside the clamp
    assert next_difficulty(10_000, 100, 101, P) == 12_500  # five times as fast: clamped to +25%
    assert next_difficulty(10_000, 100, 104, P) == 12_500
    assert next_difficulty(100, 100, 200, P) == 100  # floor
    assert next_difficulty(1, 0, 1, DifficultyParams(5, 1, 25, 20)) == 2  # tiny difficulty still grows


def test_converges_to_target_block_time_under_constant_hash_power() -> None:
    """A miner doing W work units per second: block time = D / W, so D settles near W * target."""
    work_per_second = 1_000_000
    d, t = 50_000_000, 0
    times = []
    for _ in range(200):
        dt = max(1, round(d / work_per_second))
        d = next_difficulty(d, t, t + dt, P)
        t += dt
        times.append(dt)
    assert all(4 <= x <= 6 for x in times[-50:])


def test_fork_choice_by_cumulative_difficulty() -> None:
    """A shorter branch with more work beats a longer one with less; ties go to the first seen."""
    genesis = pouw_genesis(expected_steps=3, k=2, maxAdjustUpPercent=25, maxAdjustDownPercent=20)
    chain = open_pouw_chain(genesis)
    root = chain.head()
    slow = [mine_block(chain, MINER, dt=10)]  # slower: difficulty stays at the floor
    slow.append(mine_block(chain, MINER, dt=10))
    fast = mine_block(chain, OTHER_MINER, parent_hash=root.hash, dt=1, do_import=False)  # faster: harder
    chain.import_block(fast.block, fast.payload)
    assert chain.head().hash == slow[-1].block.hash  # 1 block is not yet heavier than 2
    assert chain.score(slow[-1].block.hash) > chain.score(fast.block.hash)
    fast2 = mine_block(chain, OTHER_MINER, parent_hash=fast.block.hash, dt=1, do_import=False)
    chain.import_block(fast2.block, fast2.payload)
    assert chain.score(fast2.block.hash) > chain.score(slow[-1].block.hash)
    assert chain.head().hash == fast2.block.hash  # two hard blocks outweigh two easy ones

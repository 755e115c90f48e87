"""The miner: blocks on the head, each advancing a job; stops at once on a new head."""
from __future__ import annotations

import threading
import time

from consensus.jobs import checkpoint_state
from consensus.miner import Miner
from consensus.registry import read_job
from pouw.state import serialize_state, state_hash
from tests.chain.helpers import MINER
from tests.consensus.helpers import STANDING_ID, open_pouw_chain, pouw_genesis


def test_miner_thread_mines_blocks_that_advance_the_standing_job() -> None:
    chain = open_pouw_chain(pouw_genesis(expected_steps=5, k=2))
    seen = []
    done = threading.Event()

    def on_block(block) -> None:
        seen.append(block)
        if len(seen) >= 4:
            done.set()

    miner = Miner(chain, MINER, device="cpu", on_block=on_block).start()
    try:
        assert done.wait(60)
    finally:
        miner.stop()
    assert chain.head().block_number >= 4
    config = chain.engine_class.config
    previous = None
    for n in range(1, 5):
        header = chain.get_header_by_hash(chain.get_canonical_hash(n))
        assert int.from_bytes(header.job_id, "big") == STANDING_ID
        if previous is not None:
            assert header.start_checkpoint == previous.final_state  # each block continues the job
        previous = header
    job = read_job(chain.state_at(), STANDING_ID, config)
    assert job.checkpoint == chain.head().final_state
    # the checkpoint state is stored (for the next miner and for the job's owner)
    assert state_hash(serialize_state(job.spec, checkpoint_state(job, miner.blobs))) == job.checkpoint


def test_miner_abandons_its_trajectory_on_a_new_head() -> None:
    chain = open_pouw_chain(pouw_genesis(expected_steps=10**9, k=2))  # it will never win
    miner = Miner(chain, MINER, device="cpu")
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("mined", miner.mine_one()))
    thread.start()
    time.sleep(1.0)
    started = time.perf_counter()
    miner.notify_new_head()
    thread.join(10)
    assert not thread.is_alive() and result["mined"] is None
    assert time.perf_counter() - started < 2.0


def test_miner_polls_the_head_and_drops_a_stale_template() -> None:
    """Without a notification, the head poll (every few steps) makes the miner stop."""
    chain = open_pouw_chain(pouw_genesis(expected_steps=10**9, k=2))
    miner = Miner(chain, MINER, device="cpu")
    real_head = chain.head
    calls = {"n": 0}

    def head():
        calls["n"] += 1
        header = real_head()
        return header if calls["n"] < 3 else header.copy(extra_data=b"another block")

    chain.head = head  # type: ignore[method-assign]
    started = time.perf_counter()
    assert miner.mine_one() is None
    assert time.perf_counter() - started < 10


def test_node_miner_announces_each_block_to_the_rpc_layer() -> None:
    from node.mining import start_node_miner

    chain = open_pouw_chain(pouw_genesis(expected_steps=5, k=2))
    announced = []
    done = threading.Event()

    class Backend:
        def notify_new_head(self, block_hash: bytes) -> None:
            announced.append(block_hash)
            if len(announced) >= 2:
                done.set()

    class Node:
        pass

    node = Node()
    node.chain, node.backend = chain, Backend()
    miner = start_node_miner(node, MINER, "cpu")
    try:
        assert done.wait(60)
    finally:
        miner.stop()
    assert announced[0] == chain.get_canonical_hash(1)


def test_miner_logs_its_progress_periodically(caplog) -> None:  # type: ignore[no-untyped-def]
    """While it trains, the miner says what it trains, its rate and when it expects a block."""
    import logging

    from consensus.miner import Miner
    from tests.consensus.helpers import open_pouw_chain, pouw_genesis

    chain = open_pouw_chain(pouw_genesis(expected_steps=3000, k=2))
    miner = Miner(chain, MINER, device="cpu")
    miner.progress_log_s = 0.02
    with caplog.at_level(logging.INFO, logger="consensus.miner"):
        assert miner.mine_one() is not None
    lines = [r.getMessage() for r in caplog.records if "expected time to a block" in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("mining job standing-0: step ") and "steps/s" in lines[0]

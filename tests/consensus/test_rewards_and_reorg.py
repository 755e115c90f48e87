"""Balances follow the formulas (rewards, fees, maturity, escrow); reorgs restore job state."""
from __future__ import annotations

import pytest

from consensus.params import REGISTRY_ADDRESS
from consensus.registry import (
    STATUS_CANCELLED,
    STATUS_COMPLETED,
    STATUS_OPEN,
    decode_job_status,
    encode_cancel_job,
    encode_job_status,
)
from consensus.rewards import immature_balance
from tests.chain.helpers import ALICE, BOB, CAROL, ETHER, GWEI, MINER, OTHER_MINER, address_of, sign_tx
from tests.consensus.helpers import STANDING_ID, mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec

MATURITY = 3


def status(chain, job_id, block=None):
    return decode_job_status(chain.call(REGISTRY_ADDRESS, encode_job_status(job_id), block=block).output)


@pytest.fixture(scope="module")
def history():
    """12 blocks by two miners over three paid jobs and the standing job."""
    genesis = pouw_genesis(expected_steps=6, k=2, maturity=MATURITY)
    chain = open_pouw_chain(genesis)
    posts = [
        post_job_tx(ALICE, 0, tiny_spec(steps=10_000), price=2 * GWEI, escrow=1000 * GWEI),  # job 1
        post_job_tx(BOB, 0, tiny_spec(steps=8), price=3 * GWEI, escrow=ETHER),  # job 2: completes
        post_job_tx(CAROL, 0, tiny_spec(steps=10_000), price=1 * GWEI, escrow=7 * GWEI),  # job 3: escrow runs out
    ]
    txs_by_block = {1: posts, 6: [sign_tx(ALICE, 1, REGISTRY_ADDRESS, data=encode_cancel_job(1), gas=100_000, tip=0)]}
    mined = []
    for n in range(1, 13):
        coinbase = MINER if n % 3 else OTHER_MINER
        mined.append(mine_block(chain, coinbase, txs_by_block.get(n, [])))
    return genesis, chain, mined, posts


def test_job_choice_follows_best_fee_per_work_unit(history) -> None:
    _, chain, mined, _ = history
    jobs = [m.job_id for m in mined]
    assert jobs[0] == STANDING_ID  # nothing posted before block 1
    assert jobs[1] == 2  # best price
    assert 1 in jobs[2:6] and 3 in jobs and jobs[-1] == STANDING_ID
    assert status(chain, 2)[0] == STATUS_COMPLETED
    assert status(chain, 1)[0] == STATUS_CANCELLED
    assert status(chain, 3)[0] == STATUS_OPEN and status(chain, 3)[3] == 0  # escrow spent, still open


def replay(genesis, chain, mined, posts):
    """The formulas, recomputed from the headers alone."""
    jobs = {1: dict(price=2 * GWEI, escrow=1000 * GWEI, steps=0, budget=10_000, poster=ALICE, open=True, refund=0, paid=0),
            2: dict(price=3 * GWEI, escrow=ETHER, steps=0, budget=8, poster=BOB, open=True, refund=0, paid=0),
            3: dict(price=1 * GWEI, escrow=7 * GWEI, steps=0, budget=10_000, poster=CAROL, open=True, refund=0, paid=0)}
    earned: dict[tuple[bytes, int], int] = {}
    for m in mined:
        h = m.block.header
        if h.block_number == 6:  # ALICE's cancel, before finalisation
            jobs[1]["refund"] += jobs[1]["escrow"]
            jobs[1]["escrow"] = 0
            jobs[1]["open"] = False
        fee = 0
        job = jobs.get(m.job_id)
        if job is not None and job["open"]:
            trained = min(h.step_count, job["budget"] - job["steps"])  # billed up to the budget only
            fee = min(trained * job["price"], job["escrow"])
            job["escrow"] -= fee
            job["paid"] += fee
            job["steps"] += trained
            if job["steps"] >= job["budget"]:
                job["refund"] += job["escrow"]
                job["escrow"] = 0
                job["open"] = False
        earned[(h.coinbase, h.block_number)] = genesis.block_reward(h.block_number) + fee
    return jobs, earned


def test_coinbase_balance_is_matured_rewards_plus_fees(history) -> None:
    genesis, chain, mined, posts = history
    jobs, earned = replay(genesis, chain, mined, posts)
    head = chain.head().block_number
    state = chain.state_at()
    for coinbase in (MINER, OTHER_MINER):
        matured = sum(v for (c, n), v in earned.items() if c == coinbase and n <= head - MATURITY)
        immature = sum(v for (c, n), v in earned.items() if c == coinbase and n > head - MATURITY)
        assert chain.get_balance(coinbase) == matured
        assert immature_balance(state, head, coinbase, MATURITY) == immature
        assert immature > 0


def test_immature_rewards_cannot_be_spent(history) -> None:
    genesis, chain, mined, _ = history
    # after block MATURITY, the first block's reward is not yet in any balance
    first_coinbase = mined[0].block.header.coinbase
    assert chain.get_balance(first_coinbase, block=MATURITY) == 0
    assert chain.get_balance(first_coinbase, block=MATURITY + 1) >= genesis.block_reward(1)


def test_escrow_and_refunds_add_up_to_the_wei(history) -> None:
    genesis, chain, mined, posts = history
    jobs, _ = replay(genesis, chain, mined, posts)
    escrow_posted = {1: 1000 * GWEI, 2: ETHER, 3: 7 * GWEI}
    for job_id, job in jobs.items():
        st = status(chain, job_id)
        assert st[3] == job["escrow"]
        assert st[4] == job["steps"]
        assert escrow_posted[job_id] == job["paid"] + job["refund"] + job["escrow"]
    # posters: initial balance - gas - escrow + refund (tips are zero)
    for key, job_ids in ((ALICE, (1,)), (BOB, (2,)), (CAROL, (3,))):
        addr = address_of(key)
        gas = 0
        for m in mined:
            receipts = chain.get_receipts(m.block)
            for tx, r, prev in zip(m.block.transactions, receipts, [None] + list(receipts[:-1])):
                if tx.sender == addr:
                    used = r.gas_used - (prev.gas_used if prev is not None else 0)
                    gas += used * m.block.header.base_fee_per_gas
        initial = genesis.alloc[addr].balance
        expected = initial - gas - sum(escrow_posted[j] - jobs[j]["refund"] for j in job_ids)
        assert chain.get_balance(addr) == expected
    # the registry holds exactly the open escrow plus the fees not yet matured
    head = chain.head().block_number
    state = chain.state_at()
    immature_total = immature_balance(state, head, MINER, MATURITY) + immature_balance(state, head, OTHER_MINER, MATURITY)
    rewards_immature = sum(genesis.block_reward(n) for n in range(head - MATURITY + 1, head + 1))
    assert chain.get_balance(REGISTRY_ADDRESS) == sum(j["escrow"] for j in jobs.values()) + immature_total - rewards_immature


# --- reorg -----------------------------------------------------------------------------------


def job_view(chain, header):
    return (status(chain, 1, block=header), chain.get_balance(REGISTRY_ADDRESS, block=header),
            chain.get_balance(MINER, block=header), chain.get_balance(OTHER_MINER, block=header))


def test_reorg_across_job_blocks_restores_job_state_exactly() -> None:
    genesis = pouw_genesis(expected_steps=6, k=2, maturity=1)
    chain = open_pouw_chain(genesis)
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=10_000), price=GWEI, escrow=ETHER)])
    fork = chain.head()
    branch_a = [mine_block(chain, MINER) for _ in range(3)]
    head_a = chain.head()
    view_a = job_view(chain, head_a)
    assert all(m.job_id == 1 for m in branch_a)
    # branch B from the fork point, by another miner, one block longer (heavier)
    parent = fork.hash
    branch_b = []
    for _ in range(4):
        m = mine_block(chain, OTHER_MINER, parent_hash=parent, dt=6, do_import=False)
        result = chain.import_block(m.block, m.payload)
        parent = m.block.hash
        branch_b.append(m)
    assert result.reorg and chain.head().hash == branch_b[-1].block.hash
    view_b = job_view(chain, chain.head())
    assert view_b != view_a
    # the same as a node that only ever saw branch B
    fresh = open_pouw_chain(genesis)
    fresh.import_block(chain.get_block_by_number(1), chain.get_payload(chain.get_canonical_hash(1)))
    for m in branch_b:
        fresh.import_block(m.block, m.payload)
    assert job_view(fresh, fresh.head()) == view_b
    assert status(chain, 1)[4] == sum(m.steps for m in branch_b)
    assert status(chain, 1)[6] == branch_b[-1].block.header.final_state
    # back to A: extend it by two; job state is A's, continued
    for _ in range(2):
        m = mine_block(chain, MINER, parent_hash=head_a.hash, do_import=False)
        chain.import_block(m.block, m.payload)
        head_a = m.block.header
    assert chain.head().hash == head_a.hash
    assert status(chain, 1)[4] == sum(m.steps for m in branch_a) + sum(
        chain.get_header_by_hash(chain.get_canonical_hash(n)).step_count for n in (5, 6))
    assert job_view(chain, chain.get_canonical_hash(4)) == view_a

"""A mined block is built, executed and its work verified once (issue 13).

The template's execution (done to choose the transactions) is finished by the seal and
committed by the import; the import verifies the work once and does not execute again.
Each test also checks the result against a node that executes the block from scratch,
so reuse can never change what is committed.
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
from chain.chain import Seal
from chain.vm import PouwVM
from consensus.engine import PouwEngine
from consensus.miner import Miner
from tests.chain.helpers import ALICE, BOB, ETHER, address_of, open_chain, transfer
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis, post_job_tx, tiny_spec


def _count(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    calls = [0]
    original: Callable[..., Any] = getattr(cls, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_a_mined_block_is_executed_once_and_its_work_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    chain = open_pouw_chain()
    applied = _count(monkeypatch, PouwVM, "apply_transaction")
    executed = _count(monkeypatch, PouwVM, "execute_block")
    verified = _count(monkeypatch, PouwEngine, "verify_work")
    txs = [transfer(ALICE, 0, b"\x11" * 20, 5), transfer(BOB, 0, b"\x12" * 20, 7), transfer(ALICE, 1, b"\x11" * 20, 1)]
    mined = mine_block(chain, address_of(ALICE), txs)
    assert chain.head().hash == mined.block.hash
    assert applied[0] == len(txs), "each transaction applied once: choosing it is executing it"
    assert executed[0] == 0, "neither the seal nor the import executes the block again"
    assert verified[0] == 1
    assert chain.get_balance(b"\x11" * 20) == 6


def test_the_reused_execution_commits_what_a_validator_computes() -> None:
    """Three blocks with transfers, a job posting (registry storage, escrow) and coinbase
    maturity payouts: a second node executing each block from scratch agrees on every
    header, so the kept state is the executed state."""
    genesis = pouw_genesis(maturity=1)
    miner_chain = open_pouw_chain(genesis)
    validator = open_pouw_chain(genesis)
    blocks = [
        mine_block(miner_chain, address_of(BOB), [transfer(ALICE, 0, b"\x21" * 20, ETHER)]),
        mine_block(miner_chain, address_of(BOB), [post_job_tx(ALICE, 1, tiny_spec(steps=50), price=1, escrow=ETHER)]),
        mine_block(miner_chain, address_of(BOB), [transfer(ALICE, 2, b"\x22" * 20, 3)]),
    ]
    for mined in blocks:
        validator.import_block(mined.block.copy(), mined.payload)  # not ours: executed and checked
    assert validator.head().hash == miner_chain.head().hash == blocks[-1].block.hash
    assert validator.head().state_root == miner_chain.head().state_root
    assert validator.get_balance(address_of(BOB)) == miner_chain.get_balance(address_of(BOB)) > 0


def test_sealing_a_template_twice_executes_the_second_seal_from_scratch() -> None:
    chain = open_chain()
    template = chain.build_template(address_of(BOB), timestamp=chain.head().timestamp + 5,
                                    transactions=[transfer(ALICE, 0, b"\x31" * 20, 9)])
    first = chain.seal_block(template, Seal())
    second = chain.seal_block(template, Seal())  # the template's execution was taken
    assert first.hash == second.hash
    chain.import_block(second)
    assert chain.get_balance(b"\x31" * 20) == 9


def test_a_template_with_a_rolled_back_candidate_is_executed_afresh_and_valid() -> None:
    """A pool transaction that fails after it started to apply leaves the template's VM
    journal unlike a plain execution's: the seal must not reuse it."""

    class Pool:
        def __init__(self, txs: list[Any]) -> None:
            self.txs = txs

        def pending(self) -> list[Any]:
            return self.txs

        def on_new_head(self, state: Any) -> None:
            pass

        def readd(self, txs: Any) -> None:
            pass

    good = transfer(ALICE, 0, b"\x41" * 20, 4)
    too_costly = transfer(BOB, 0, b"\x42" * 20, 10**30)  # more than BOB has
    chain = open_chain(txpool=Pool([too_costly, good]))
    template = chain.build_template(address_of(BOB), timestamp=chain.head().timestamp + 5)
    assert template.execution is None
    block = chain.seal_block(template, Seal())
    assert [tx.hash for tx in block.transactions] == [good.hash]
    fresh = open_chain(genesis=chain.genesis)
    fresh.import_block(block.copy())
    chain.import_block(block)
    assert chain.head().state_root == fresh.head().state_root


def test_stray_seals_are_bounded() -> None:
    """Seals never imported (a miner that lost the race) do not accumulate."""
    from chain.chain import MAX_SEALED_KEPT

    chain = open_chain()
    for i in range(MAX_SEALED_KEPT + 5):
        template = chain.build_template(address_of(BOB), timestamp=chain.head().timestamp + 5 + i, transactions=[])
        chain.seal_block(template, Seal())
    assert len(chain._sealed) == MAX_SEALED_KEPT


def test_the_miner_round_reuses_its_template() -> None:
    chain = open_pouw_chain()
    miner = Miner(chain, address_of(BOB), device="cpu")
    mined = miner.mine_and_import()
    assert mined is not None and chain.head().hash == mined.block.hash
    assert not chain._sealed, "the import took the kept state"

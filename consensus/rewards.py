"""Block rewards, job fees and coinbase maturity, applied when a block is finalised.

Per block N with coinbase C, job j and t steps (in this order, after the transactions):

1. **Job progress.** If j is open after the block's transactions: the block trained
   ``u = min(t, r)`` of the job's steps, where ``r = stepBudget - stepsDone`` is what is
   left of its budget (``u = t`` for a standing job, which has none); steps_done += u and
   checkpoint := final_state (the state at step u: the budget point when the budget ends
   inside the block). For a posted job, the fee is ``min(u * price, escrow_left)``; it
   leaves the job's escrow (it stays in the registry's balance until it matures). When
   steps_done reaches the step budget, the job completes and the escrow left goes back
   to the poster at once. So a job is billed for at most its budget, and its result is
   the state at the budget step.
2. **Maturity (deferred crediting).** The block's reward ``R(N)`` (genesis schedule) and
   fee F are recorded in a ring of ``M = coinbaseMaturity`` entries in the registry's
   storage; the entry of block N - M is credited to its coinbase at block N: R is minted
   then, F moves from the registry's balance. With M = 0 both are credited at once.
   So an immature reward is not in any balance and cannot be spent; a reorg rolls the
   ring back with the rest of the state.

Transaction priority fees go to the coinbase at once (py-evm's fee recipient); they are
not block rewards.

Ring entry for block N, at ``E = K(b"pouw.rewards" || (N mod M) as 32 bytes)``:
E+0 coinbase, E+1 reward, E+2 fee, E+3 N + 1 (0 = empty).
"""
from __future__ import annotations

from typing import Any, Optional

from eth_typing import Address
from eth_utils import keccak

from consensus.params import REGISTRY_ADDRESS, ConsensusConfig
from consensus.registry import (
    STATUS_COMPLETED,
    JobRecord,
    keep_registry_alive,
    read_job,
    write_escrow,
    write_progress,
    write_status,
)


def ring_slot(number: int, maturity: int) -> int:
    return int.from_bytes(keccak(b"pouw.rewards" + (number % maturity).to_bytes(32, "big")), "big")


def billed_steps(job: JobRecord, t: int) -> int:
    """Steps of a t-step block that count for ``job``: ``min(t, stepBudget - stepsDone)``
    (all t for a standing job)."""
    left = job.budget_left
    return t if left is None else min(t, left)


def block_fee(job: JobRecord, t: int) -> int:
    """The fee a t-step block earns from ``job`` as read at its parent:
    ``min(billed_steps * price, escrow_left)`` (0 for a standing job). The one fee rule;
    the RPC layer reads it from here."""
    if job.is_standing or not job.is_open:
        return 0
    return min(billed_steps(job, t) * job.price, job.escrow)


def fees_paid(job: JobRecord, initial_escrow: Optional[int]) -> int:
    """What a job has paid its miners so far: :func:`block_fee` summed over its blocks.

    Each block pays ``min(billed * price, escrow_left)``, so the sum is the running
    total of ``billed * price`` capped by the escrow posted: ``min(stepsDone * price,
    initial_escrow)`` (uncapped when the posting is unknown; 0 for a standing job)."""
    if job.is_standing:
        return 0
    earned = job.steps_done * job.price
    return earned if initial_escrow is None else min(earned, initial_escrow)


def apply_job_progress(state: Any, config: ConsensusConfig, job_id: int, t: int, final_state: bytes) -> int:
    """Step 1 above; returns the fee earned (0 for a standing job or a closed one)."""
    if job_id == 0 or t < 1:
        return 0
    job = read_job(state, job_id, config)
    if job is None or not job.is_open or job.spec is None:
        return 0  # e.g. cancelled by a transaction of this very block: no fee, no progress
    trained = billed_steps(job, t)
    steps = job.steps_done + trained
    write_progress(state, job_id, steps, final_state)
    if job.is_standing:
        return 0
    fee = block_fee(job, t)
    escrow = job.escrow - fee
    if steps >= job.budget:
        write_status(state, job_id, STATUS_COMPLETED)
        state.delta_balance(REGISTRY_ADDRESS, -escrow)
        state.delta_balance(job.poster, escrow)
        escrow = 0
    write_escrow(state, job_id, escrow)
    return fee


def apply_maturity(state: Any, number: int, coinbase: Address, reward: int, fee: int, maturity: int) -> None:
    """Step 2 above."""
    if maturity == 0:
        state.delta_balance(REGISTRY_ADDRESS, -fee)
        state.delta_balance(coinbase, reward + fee)
        return
    base = ring_slot(number, maturity)
    get = lambda i: state.get_storage(REGISTRY_ADDRESS, base + i)  # noqa: E731
    if get(3) == number - maturity + 1 and number >= maturity:
        owner = Address(get(0).to_bytes(20, "big"))
        state.delta_balance(REGISTRY_ADDRESS, -get(2))
        state.delta_balance(owner, get(1) + get(2))
    for i, value in enumerate((int.from_bytes(coinbase, "big"), reward, fee, number + 1)):
        state.set_storage(REGISTRY_ADDRESS, base + i, value)
    state.delta_balance(coinbase, 0)  # touch, as py-evm does for a zero reward


def finalise_block(state: Any, config: ConsensusConfig, header: Any, reward: int) -> None:
    keep_registry_alive(state)
    fee = apply_job_progress(
        state, config, int.from_bytes(header.job_id, "big"), header.step_count, header.final_state
    )
    apply_maturity(state, header.block_number, header.coinbase, reward, fee, config.coinbase_maturity)


def immature_balance(state: Any, head_number: int, coinbase: Address, maturity: int) -> int:
    """Rewards + fees of ``coinbase`` recorded but not yet credited after block head_number."""
    if maturity == 0:
        return 0
    total = 0
    for n in range(max(1, head_number - maturity + 1), head_number + 1):
        base = ring_slot(n, maturity)
        if state.get_storage(REGISTRY_ADDRESS, base + 3) == n + 1 and \
                state.get_storage(REGISTRY_ADDRESS, base) == int.from_bytes(coinbase, "big"):
            total += state.get_storage(REGISTRY_ADDRESS, base + 1) + state.get_storage(REGISTRY_ADDRESS, base + 2)
    return total

"""Block rewards, job fees and coinbase maturity, applied when a block is finalised.

Per block N with coinbase C, job j and t steps (in this order, after the transactions):

1. **Job progress.** If j is open after the block's transactions and its checkpoint is
   still the block's start checkpoint (a fraud proof in the block may have rolled it
   back; then the block trains nothing and earns no fee): the block trained
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
E+0 coinbase, E+1 reward, E+2 fee, E+3 N + 1 (0 = empty), and what a fraud proof
against block N needs (consensus/fraud.py): E+4 the job trained (0: none), E+5 its
steps done before the block, E+6 its checkpoint slot before the block, E+7 its audit
epoch then, E+8 1 once fraud in the block is proven (reward and fee then read 0).
The window of M immature blocks is the audit window.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

from eth.abc import StateAPI
from eth_typing import Address
from eth_utils import keccak

from chain.header import PouwBlockHeader
from consensus.jobs import current_checkpoint
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


@dataclass(frozen=True)
class JobBefore:
    """The job a block trained, as it stood before the block (for the ring entry)."""

    job_id: int
    steps_before: int
    checkpoint_before: bytes
    epoch: int


NO_JOB = JobBefore(0, 0, b"\x00" * 32, 0)


def apply_job_progress(
    state: StateAPI, config: ConsensusConfig, job_id: int, t: int, start_checkpoint: bytes, final_state: bytes
) -> tuple[int, JobBefore]:
    """Step 1 above; returns the fee earned (0 for a standing job or a closed one) and
    the job as it was before, for the ring entry. The block trains the job only if the
    job is open after the block's transactions and its checkpoint is still the one the
    block started from. NO_JOB (the block cannot be proven fraudulent) only when the
    block trained no job, or a fraud proof in the block itself discarded the state it
    trained from: then nothing it computed reached any job."""
    from consensus.fraud import job_epoch  # fraud's rules build on this module's ring

    if job_id == 0 or t < 1:
        return 0, NO_JOB
    job = read_job(state, job_id, config)
    if job is None or job.spec is None:
        return 0, NO_JOB
    if current_checkpoint(job) != start_checkpoint:
        return 0, NO_JOB  # rolled back by a fraud proof in this very block: trained from a discarded state
    before = JobBefore(job_id, job.steps_done, job.checkpoint, job_epoch(state, job_id))
    if not job.is_open:
        # cancelled by a transaction of this very block: no fee, no progress, but the
        # block's trajectory stays provable (its entry names the job as verified)
        return 0, before
    trained = billed_steps(job, t)
    steps = job.steps_done + trained
    write_progress(state, job_id, steps, final_state)
    if job.is_standing:
        return 0, before
    fee = block_fee(job, t)
    escrow = job.escrow - fee
    if steps >= job.budget:
        write_status(state, job_id, STATUS_COMPLETED)
        state.delta_balance(REGISTRY_ADDRESS, -escrow)
        state.delta_balance(job.poster, escrow)
        escrow = 0
    write_escrow(state, job_id, escrow)
    return fee, before


def apply_maturity(
    state: StateAPI, number: int, coinbase: Address, reward: int, fee: int, maturity: int, job: JobBefore = NO_JOB
) -> None:
    """Step 2 above."""
    if maturity == 0:
        state.delta_balance(REGISTRY_ADDRESS, -fee)
        state.delta_balance(coinbase, reward + fee)
        return
    matured = read_ring_entry(state, number - maturity, maturity) if number >= maturity else None
    if matured is not None:
        state.delta_balance(REGISTRY_ADDRESS, -matured.fee)
        state.delta_balance(matured.coinbase, matured.reward + matured.fee)
    base = ring_slot(number, maturity)
    values = (int.from_bytes(coinbase, "big"), reward, fee, number + 1, job.job_id, job.steps_before,
              int.from_bytes(job.checkpoint_before, "big"), job.epoch, 0)
    for i, value in enumerate(values):
        state.set_storage(REGISTRY_ADDRESS, base + i, value)
    state.delta_balance(coinbase, 0)  # touch, as py-evm does for a zero reward


@dataclass(frozen=True)
class RingEntry:
    """An immature block's entry in the reward ring (layout in the module docstring)."""

    number: int
    maturity: int
    coinbase: Address
    reward: int
    fee: int
    job_id: int
    steps_before: int
    checkpoint_before: bytes
    epoch: int
    slashed: bool


def read_ring_entry(state: StateAPI, number: int, maturity: int) -> Optional[RingEntry]:
    """Block ``number``'s entry, if the ring still holds it (it is immature)."""
    if maturity == 0 or number < 0:
        return None
    base = ring_slot(number, maturity)
    get = lambda i: state.get_storage(REGISTRY_ADDRESS, base + i)  # noqa: E731
    if get(3) != number + 1:
        return None
    return RingEntry(number, maturity, Address(get(0).to_bytes(20, "big")), get(1), get(2), get(4), get(5),
                     get(6).to_bytes(32, "big"), get(7), get(8) == 1)


def ring_entries(state: StateAPI, maturity: int, next_number: int) -> Iterator[RingEntry]:
    """The entries of blocks ``next_number - maturity .. next_number - 1`` still held."""
    for number in range(max(0, next_number - maturity), next_number):
        entry = read_ring_entry(state, number, maturity)
        if entry is not None:
            yield entry


def slash_ring_entry(state: StateAPI, entry: RingEntry) -> None:
    """Reward and fee to 0 (the caller pays the bounty and returns the fee), marked slashed."""
    base = ring_slot(entry.number, entry.maturity)
    state.set_storage(REGISTRY_ADDRESS, base + 1, 0)
    state.set_storage(REGISTRY_ADDRESS, base + 2, 0)
    state.set_storage(REGISTRY_ADDRESS, base + 8, 1)


def clear_ring_fee(state: StateAPI, entry: RingEntry) -> None:
    state.set_storage(REGISTRY_ADDRESS, ring_slot(entry.number, entry.maturity) + 2, 0)


def finalise_block(state: StateAPI, config: ConsensusConfig, header: PouwBlockHeader, reward: int) -> None:
    keep_registry_alive(state)
    fee, job = apply_job_progress(
        state, config, int.from_bytes(header.job_id, "big"), header.step_count, header.start_checkpoint,
        header.final_state,
    )
    apply_maturity(state, header.block_number, header.coinbase, reward, fee, config.coinbase_maturity, job)


def immature_balance(state: StateAPI, head_number: int, coinbase: Address, maturity: int) -> int:
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

"""The job registry precompile: post, cancel, status; from accounts and from contracts."""
from __future__ import annotations

import pytest

from consensus.params import REGISTRY_ADDRESS, STANDING_JOB_BASE
from consensus.registry import (
    STATUS_CANCELLED,
    STATUS_OPEN,
    STATUS_STANDING,
    TOPIC_CANCELLED,
    TOPIC_POSTED,
    decode_job_status,
    decode_revert_reason,
    encode_cancel_job,
    encode_job_status,
    encode_post_job,
)
from pouw.spec import JobSpec
from tests.chain.helpers import ALICE, BOB, ETHER, GWEI, address_of, contract_address, sign_tx
from tests.consensus.helpers import STANDING_ID, mine_block, open_pouw_chain, post_job_tx, tiny_spec

MINER = b"\xc0" * 20


@pytest.fixture(scope="module")
def chain_with_job():
    chain = open_pouw_chain()
    tx = post_job_tx(ALICE, 0, tiny_spec(steps=50), price=10 * GWEI, escrow=ETHER)
    mined = mine_block(chain, MINER, [tx])
    return chain, mined


def status(chain, job_id):
    out = chain.call(REGISTRY_ADDRESS, encode_job_status(job_id))
    assert not out.is_error
    return decode_job_status(out.output)


def test_post_job_records_spec_escrow_and_emits_event(chain_with_job) -> None:
    chain, mined = chain_with_job
    st = status(chain, 1)
    spec = JobSpec.from_dict(tiny_spec(steps=50))
    assert st[0] == STATUS_OPEN
    assert st[1].lower() == "0x" + address_of(ALICE).hex()
    assert st[2:6] == (10 * GWEI, ETHER, 0, 50)
    assert st[6] == b"\x00" * 32  # initial checkpoint
    assert st[7] == spec.spec_hash()
    assert chain.get_balance(REGISTRY_ADDRESS) >= ETHER
    (receipt,) = chain.get_receipts(mined.block)
    (log,) = receipt.logs
    assert log.address == REGISTRY_ADDRESS
    assert log.topics[0] == int.from_bytes(TOPIC_POSTED, "big")
    assert log.topics[1] == 1
    assert chain.call(REGISTRY_ADDRESS, bytes.fromhex("a4e8a7a8")).is_error  # unknown selector


def test_job_spec_and_next_id_views(chain_with_job) -> None:
    from eth_abi import decode

    from consensus.registry import SEL_NEXT, SEL_SPEC
    from eth_abi import encode

    chain, _ = chain_with_job
    out = chain.call(REGISTRY_ADDRESS, SEL_SPEC + encode(["uint256"], [1]))
    assert decode(["bytes"], out.output)[0] == JobSpec.from_dict(tiny_spec(steps=50)).canonical_bytes()
    assert decode(["uint256"], chain.call(REGISTRY_ADDRESS, SEL_NEXT).output)[0] == 2


def test_standing_job_status(chain_with_job) -> None:
    chain, _ = chain_with_job
    st = status(chain, STANDING_ID)
    assert st[0] == STATUS_STANDING
    assert st[4] >= 1  # the first block advanced it
    assert status(chain, STANDING_JOB_BASE + 7)[0] == 0  # no such standing job


def test_invalid_post_bad_spec_reverts_with_reason() -> None:
    chain = open_pouw_chain()
    bad = tiny_spec(hidden=0)
    out = chain.call(REGISTRY_ADDRESS, encode_post_job(bad, 1), sender=address_of(ALICE), value=1)
    assert out.is_error
    assert "hidden" in decode_revert_reason(out.output)
    out = chain.call(REGISTRY_ADDRESS, encode_post_job(b"{not json", 1), sender=address_of(ALICE))
    assert out.is_error and "JSON" in decode_revert_reason(out.output)
    deep = b'{"family":' + b"[" * 4000 + b"]" * 4000 + b"}"  # under MAX_SPEC_BYTES, refused before parsing
    out = chain.call(REGISTRY_ADDRESS, encode_post_job(deep[:4096], 1), sender=address_of(ALICE))
    assert out.is_error and "JSON" in decode_revert_reason(out.output)
    huge = tiny_spec(hidden=4096 * 4)  # state too large for the genesis limit? (2 MiB)
    out = chain.call(REGISTRY_ADDRESS, encode_post_job(huge, 1), sender=address_of(ALICE))
    assert out.is_error


def test_cancel_refunds_unused_escrow_poster_only() -> None:
    chain = open_pouw_chain()
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=10_000), price=GWEI, escrow=ETHER)])
    # BOB may not cancel ALICE's job: the transaction applies but its call reverts
    bob_cancel = sign_tx(BOB, 0, REGISTRY_ADDRESS, data=encode_cancel_job(1), gas=100_000, tip=0)
    mined = mine_block(chain, MINER, [bob_cancel])  # this block trained job 1 (best fee)
    assert mined.job_id == 1
    (receipt,) = chain.get_receipts(mined.block)
    assert receipt.state_root == b""  # reverted
    steps = status(chain, 1)[4]
    escrow_left = ETHER - steps * GWEI
    assert status(chain, 1)[3] == escrow_left
    before = chain.get_balance(address_of(ALICE))
    cancel = sign_tx(ALICE, 1, REGISTRY_ADDRESS, data=encode_cancel_job(1), gas=100_000, tip=0)
    mined = mine_block(chain, MINER, [cancel])
    (receipt,) = chain.get_receipts(mined.block)
    assert receipt.state_root == b"\x01"
    assert mined.job_id == 1  # mined on job 1 (open at the parent), but it was cancelled in the block
    st = status(chain, 1)
    assert st[0] == STATUS_CANCELLED and st[3] == 0 and st[4] == steps  # no progress, no fee
    gas_cost = receipt.gas_used * chain.get_header_by_hash(mined.block.hash).base_fee_per_gas
    assert chain.get_balance(address_of(ALICE)) == before + escrow_left - gas_cost
    (log,) = receipt.logs
    assert log.topics[0] == int.from_bytes(TOPIC_CANCELLED, "big")
    # cancelling again reverts
    out = chain.call(REGISTRY_ADDRESS, encode_cancel_job(1), sender=address_of(ALICE))
    assert out.is_error and "not open" in decode_revert_reason(out.output)
    out = chain.call(REGISTRY_ADDRESS, encode_cancel_job(STANDING_ID), sender=address_of(ALICE))
    assert out.is_error and "standing" in decode_revert_reason(out.output)


# A contract that forwards its call data and value to the registry with CALL and returns
# the output (reverting with the registry's revert data):
#   CALLDATACOPY(0, 0, CALLDATASIZE); CALL(GAS, REGISTRY, CALLVALUE, 0, CALLDATASIZE, 0, 0)
#   RETURNDATACOPY(0, 0, RETURNDATASIZE); success ? RETURN(0, RETURNDATASIZE) : REVERT(...)
def _forwarder(opcode: str) -> bytes:
    value = "34" if opcode == "f1" else ""
    head = (
        "366000600037"                      # CALLDATACOPY(0, 0, CALLDATASIZE)
        "60006000" "36" "6000"              # retSize 0, retOffset 0, argsSize, argsOffset 0
        + value +                           # value (CALL only)
        "610100" "5a" + opcode +            # address 0x100, GAS, CALL/DELEGATECALL
        "3d600060003e"                      # RETURNDATACOPY(0, 0, RETURNDATASIZE)
    )
    jumpdest = len(bytes.fromhex(head)) + 3 + 4
    runtime = bytes.fromhex(
        head + f"60{jumpdest:02x}57"        # JUMPI to success
        "3d6000fd"                          # REVERT(0, RETURNDATASIZE)
        "5b3d6000f3"                        # JUMPDEST; RETURN(0, RETURNDATASIZE)
    )
    assert runtime[jumpdest] == 0x5B
    return bytes.fromhex(f"60{len(runtime):02x}600c600039" f"60{len(runtime):02x}6000f3") + runtime


def test_contract_can_post_and_cancel_a_job() -> None:
    chain = open_pouw_chain()
    deploy = sign_tx(ALICE, 0, None, data=_forwarder("f1"), gas=200_000, tip=0)
    contract = contract_address(address_of(ALICE), 0)
    mine_block(chain, MINER, [deploy])
    assert chain.get_code(contract)
    post = sign_tx(ALICE, 1, contract, value=ETHER, data=encode_post_job(tiny_spec(steps=10_000), GWEI), gas=1_000_000, tip=0)
    mined = mine_block(chain, MINER, [post])
    (receipt,) = chain.get_receipts(mined.block)
    assert receipt.state_root == b"\x01"
    st = status(chain, 1)
    assert st[0] == STATUS_OPEN and st[1].lower() == "0x" + contract.hex() and st[3] == ETHER
    cancel = sign_tx(ALICE, 2, contract, data=encode_cancel_job(1), gas=200_000, tip=0)
    mine_block(chain, MINER, [cancel])
    assert status(chain, 1)[0] == STATUS_CANCELLED
    assert chain.get_balance(contract) > 0  # the refund went to the contract (the poster)


def test_invalid_delegatecall_to_registry_reverts() -> None:
    chain = open_pouw_chain()
    mine_block(chain, MINER, [sign_tx(ALICE, 0, None, data=_forwarder("f4"), gas=200_000, tip=0)])
    contract = contract_address(address_of(ALICE), 0)
    out = chain.call(contract, encode_post_job(tiny_spec(), 1), sender=address_of(ALICE))
    assert out.is_error
    assert "only CALL" in decode_revert_reason(out.output)

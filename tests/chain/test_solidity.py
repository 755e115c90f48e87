"""Default solc output (osaka target) runs on our VM, through block import.

The contract (fixtures/Modern.sol, compiled into fixtures/modern.json by
fixtures/build.js) uses PUSH0, MCOPY, TSTORE/TLOAD, CLZ and events.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import decode, encode
from eth_utils import function_signature_to_4byte_selector, keccak

from chain.chain import Chain
from tests.chain.helpers import ALICE, address_of, contract_address, mine, sign_tx

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "modern.json").read_text())
PUSH0, MCOPY, TLOAD, TSTORE, CLZ = 0x5F, 0x5E, 0x5C, 0x5D, 0x1E


def opcodes(code: bytes) -> set[int]:
    """The opcodes of ``code``, skipping PUSH immediates (so data bytes don't count)."""
    seen, i = set(), 0
    while i < len(code):
        op = code[i]
        seen.add(op)
        i += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return seen


def calldata(signature: str, types: list[str], args: list) -> bytes:
    return function_signature_to_4byte_selector(signature) + encode(types, args)


@pytest.fixture
def deployed(chain: Chain):
    create = sign_tx(ALICE, 0, None, data=bytes.fromhex(FIXTURE["bytecode"][2:]), gas=3_000_000)
    block = mine(chain, [create])
    (receipt,) = chain.get_receipts(block)
    assert receipt.state_root == b"\x01"  # status: success
    return contract_address(address_of(ALICE), 0)


def test_fixture_is_default_target_output() -> None:
    assert FIXTURE["compiler"].startswith("solcjs 0.8.")
    assert FIXTURE["evmVersion"] == "osaka"
    code = bytes.fromhex(FIXTURE["deployedBytecode"][2:])
    assert {PUSH0, MCOPY, TLOAD, TSTORE, CLZ} <= opcodes(code)


def test_deploy_and_runtime_code(chain: Chain, deployed: bytes) -> None:
    assert chain.get_code(deployed) == bytes.fromhex(FIXTURE["deployedBytecode"][2:])


def test_store_writes_storage_and_emits_event(chain: Chain, deployed: bytes) -> None:
    data = b"hello, pouw"
    tx = sign_tx(ALICE, 1, deployed, data=calldata("store(uint256,bytes)", ["uint256", "bytes"], [7, data]), gas=300_000)
    block = mine(chain, [tx])
    (receipt,) = chain.get_receipts(block)
    assert receipt.state_root == b"\x01"
    (log,) = receipt.logs
    assert log.address == deployed
    assert log.topics[0] == int.from_bytes(keccak(text="Stored(address,uint256,bytes)"), "big")
    assert log.topics[1] == int.from_bytes(address_of(ALICE), "big")
    assert log.topics[2] == 7
    assert decode(["bytes"], log.data) == (data + data,)
    assert chain.get_storage(deployed, 0) == 7  # `stored` is slot 0
    out = chain.call(deployed, calldata("lastData()", [], []))
    assert decode(["bytes"], out.output) == (data + data,)
    # The transient lock was released and is gone after the transaction.
    assert chain.get_storage(deployed, 2) == 0


def test_transient_storage(chain: Chain, deployed: bytes) -> None:
    out = chain.call(deployed, calldata("transientRoundTrip(uint256)", ["uint256"], [99]))
    assert not out.is_error and decode(["uint256"], out.output) == (99,)
    tx = sign_tx(ALICE, 1, deployed, data=calldata("transientRoundTrip(uint256)", ["uint256"], [5]), gas=100_000)
    mine(chain, [tx])
    read = chain.call(deployed, calldata("transientRead()", [], []))
    assert decode(["uint256"], read.output) == (0,)


@pytest.mark.parametrize("x, zeros", [(0, 256), (1, 255), (2**255, 0), (2**200 + 5, 55), (2**256 - 1, 0)])
def test_clz(chain: Chain, deployed: bytes, x: int, zeros: int) -> None:
    out = chain.call(deployed, calldata("leadingZeros(uint256)", ["uint256"], [x]))
    assert decode(["uint256"], out.output) == (zeros,)

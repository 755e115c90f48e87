"""Precompiles whose pure-Python fallback in py-evm is far slower than their gas price:
the node must run the native one. BLAKE2 F (0x09, EIP-152) charges 1 gas per round; in
pure Python a round takes ~5 us, so one 30M-gas transaction would hold every validator's
import ~150 s. With blake2b-py (py-evm uses it when installed) 50M rounds take ~0.6 s."""
from __future__ import annotations

import eth.precompiles.blake2 as py_evm_blake2
from eth._utils.blake2.coders import extract_blake2b_parameters
from eth._utils.blake2.compression import blake2b_compress as pure_python_compress

from tests.chain.helpers import ALICE, mine, sign_tx
from tests.chain.test_vm import deploy


def test_py_evm_runs_the_native_blake2_compression() -> None:
    import blake2b

    assert py_evm_blake2.blake2b_compress is blake2b.compress


def test_native_and_pure_python_compressions_agree() -> None:
    for rounds, final in ((0, True), (1, False), (12, True), (1000, False)):
        data = rounds.to_bytes(4, "big") + bytes(range(64)) + bytes(range(128, 256)) + bytes(range(16)) + bytes([final])
        parameters = extract_blake2b_parameters(data)
        assert py_evm_blake2.blake2b_compress(*parameters) == pure_python_compress(*parameters)


def test_a_block_with_a_heavy_blake2_call_imports(chain) -> None:
    """2M rounds (2M gas): ~10 s in pure Python, a few ms natively; the block's result
    is the EIP-152 compression (checked against the pure-Python one at 2,000 rounds)."""
    # STATICCALL(gas, 0x09, 0, 213, 0, 64) on calldata copied to memory; return the 64 bytes
    runtime = bytes.fromhex("60d5" "5f" "5f" "37" "6040" "5f" "60d5" "5f" "6009" "5a" "fa" "50" "6040" "5f" "f3")
    contract = deploy(chain, runtime)
    data = (2_000_000).to_bytes(4, "big") + bytes(64) + bytes(128) + bytes(16) + b"\x01"
    mine(chain, [sign_tx(ALICE, 1, contract, data=data, gas=2_500_000)])
    receipt = chain.get_receipts(chain.head())[0]
    assert receipt.state_root == b"\x01" and receipt.gas_used > 2_000_000
    small = (2_000).to_bytes(4, "big") + data[4:]
    assert chain.call(contract, small).output == pure_python_compress(*extract_blake2b_parameters(small))

"""Our VM and header: opcode table, CLZ, PREVRANDAO, header encoding, template hash.
(The difficulty rule the header validation applies: tests/consensus/test_difficulty.py.)"""
from __future__ import annotations

import pytest
import rlp
from eth.db.atomic import AtomicDB
from eth_utils import keccak

from chain.chain import Chain, PouwChainDB, Seal
from chain.db import batch_view
from chain.header import SEAL_FIELDS, TEMPLATE_FIELDS, PouwBlockHeader, template_hash
from chain.vm import CLZ, CLZ_GAS, POUW_OPCODES
from tests.chain.helpers import ALICE, MINER, address_of, contract_address, mine, sign_tx


def deploy(chain: Chain, runtime: bytes, nonce: int = 0) -> bytes:
    init = bytes.fromhex(f"60{len(runtime):02x}600c600039" f"60{len(runtime):02x}6000f3") + runtime
    mine(chain, [sign_tx(ALICE, nonce, None, data=init, gas=200_000)])
    return contract_address(address_of(ALICE), nonce)


def run_code(chain: Chain, code: bytes, gas: int = 100_000):
    view = batch_view(chain.db)
    try:
        head = chain.head()
        vm = chain._vm(PouwChainDB(view), head, head)
        return vm.execute_bytecode(
            origin=MINER, gas_price=0, gas=gas, to=b"\x42" * 20, sender=MINER,
            value=0, data=b"", code=code,
        )
    finally:
        view.discard()


def test_opcode_table_has_modern_opcodes() -> None:
    for op, name in [(0x5F, "PUSH0"), (0x5E, "MCOPY"), (0x5C, "TLOAD"), (0x5D, "TSTORE"), (CLZ, "CLZ")]:
        assert POUW_OPCODES[op].mnemonic == name


@pytest.mark.parametrize("value, expected", [(0, 256), (1, 255), (0x80, 248), (2**255, 0), (2**256 - 1, 0)])
def test_clz_semantics_and_gas(chain: Chain, value: int, expected: int) -> None:
    # PUSH32 value; CLZ; PUSH0; MSTORE; PUSH1 32; PUSH0; RETURN
    code = b"\x7f" + value.to_bytes(32, "big") + bytes([CLZ]) + bytes.fromhex("5f5260205ff3")
    computation = run_code(chain, code)
    assert int.from_bytes(computation.output, "big") == expected
    # PUSH32 (3) + CLZ + PUSH0 (2) + MSTORE (3 + 3 memory) + PUSH1 (3) + PUSH0 (2)
    assert computation.get_gas_used() == 3 + CLZ_GAS + 2 + 6 + 3 + 2


def test_clz_costs_five_gas(chain: Chain) -> None:
    assert run_code(chain, bytes([0x5F, CLZ, 0x00])).get_gas_used() == 2 + 5


def test_prevrandao_is_parent_hash(chain: Chain) -> None:
    contract = deploy(chain, bytes.fromhex("445f5260205ff3"))  # PREVRANDAO; return it
    head = chain.head()
    assert chain.call(contract).output == head.hash  # the next block's parent


def test_header_roundtrip_and_field_order(chain: Chain) -> None:
    block = mine(chain, [], seal=Seal(job_id=b"\x01" * 32, start_checkpoint=b"\x02" * 32, step_count=9,
                                      final_state=b"\x03" * 32, work_accumulator=b"\x04" * 32))
    header = block.header
    encoded = rlp.encode(header)
    assert rlp.decode(encoded, sedes=PouwBlockHeader) == header
    names = [name for name, _ in PouwBlockHeader._meta.fields]
    assert names[13:18] == list(SEAL_FIELDS)
    assert "mix_hash" not in names and "nonce" not in names
    assert header.hash == keccak(encoded)
    assert chain.get_block_by_hash(header.hash).header.work_accumulator == b"\x04" * 32


def test_template_hash_definition(chain: Chain) -> None:
    block = mine(chain, [], extra_data=b"tpl")
    h = block.header
    expected = keccak(rlp.encode([
        h.parent_hash, h.block_number, h.timestamp, h.gas_limit, h.extra_data,
        h.coinbase, h.difficulty, h.base_fee_per_gas, h.transaction_root,
    ]))
    assert template_hash(h) == expected == h.mining_hash
    for field in SEAL_FIELDS + ("state_root", "receipt_root", "gas_used", "bloom"):
        value = 1 if field in ("step_count", "gas_used", "bloom") else b"\x09" * 32
        assert template_hash(h.copy(**{field: value})) == expected
    for field in TEMPLATE_FIELDS:
        current = getattr(h, field)
        changed = current + 1 if isinstance(current, int) else b"\x07" * len(current) or b"\x07"
        assert template_hash(h.copy(**{field: changed})) != expected, field


def test_engine_precompile_is_callable(genesis) -> None:
    from chain.sealing import NoProofEngine

    address = b"\x00" * 19 + b"\x7f"

    def echo_twice(computation):
        computation.consume_gas(10, reason="test precompile")
        computation.output = computation.msg.data * 2
        return computation

    class EngineWithPrecompile(NoProofEngine):
        @classmethod
        def extra_precompiles(cls):
            return {address: echo_twice}

    chain = Chain.open(AtomicDB(), genesis, seal_engine=EngineWithPrecompile)
    assert chain.call(address, b"ab").output == b"abab"
    plain = Chain.open(AtomicDB(), genesis, seal_engine=NoProofEngine)
    assert plain.call(address, b"ab").output == b""


def test_genesis_hash_is_deterministic(genesis) -> None:
    from tests.chain.helpers import open_chain

    assert open_chain(AtomicDB(), genesis).genesis_hash == open_chain(AtomicDB(), genesis).genesis_hash

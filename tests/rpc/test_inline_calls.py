"""eth_call tried on the event loop (rpc/evm_deadline.py ``on_the_loop``): cheap calls
finish there; anything that may run long leaves the loop within about the budget, with
nothing changed, and the answer over RPC is the same as from a thread."""
from __future__ import annotations

import time
from typing import Any

import pytest

from rpc.automine import Automine
from rpc.backend import CallRequest, ChainBackend
from rpc.evm_deadline import INLINE_BUDGET_S, LeaveTheLoop, on_the_loop
from tests.rpc.conftest import ACCOUNT, Rpc
from tests.rpc.contract import encode_uint
from tests.rpc.helpers import hexed, signed
from tests.rpc.test_server import deploy, mined_receipt

GAS = 50_000_000
MODEXP = (5).to_bytes(20, "big")
ECPAIRING = (8).to_bytes(20, "big")


def modexp_input(base: int, exponent: int, modulus: int, size: int) -> bytes:
    return b"".join(n.to_bytes(32, "big") for n in (size, size, size)) + b"".join(
        n.to_bytes(size, "big") for n in (base, exponent, modulus))


def deploy_runtime(backend: ChainBackend, runtime: bytes, nonce: int) -> bytes:
    """Deploy ``runtime`` straight through the pool and automine; its address."""
    from eth._utils.address import generate_contract_address
    from eth_utils import to_canonical_address

    init = bytes.fromhex(f"61{len(runtime):04x}600e600039" f"61{len(runtime):04x}6000f3") + runtime
    backend.submit_raw_transaction(signed(ACCOUNT.key, nonce, to=None, value=0, data=init, gas=1_000_000))
    Automine(backend).mine_now()
    return generate_contract_address(to_canonical_address(ACCOUNT.address), nonce)


def run_inline(backend: ChainBackend, request: CallRequest) -> Any:
    with on_the_loop(), backend.simulate(backend.head_header()) as sim:
        return sim.run(request, GAS)


def test_a_cheap_call_finishes_on_the_loop(backend: ChainBackend) -> None:
    contract = deploy_runtime(backend, bytes.fromhex("602a5f5260205ff3"), 0)  # return 42
    result = run_inline(backend, CallRequest(to=contract))
    assert result.success and int.from_bytes(result.output, "big") == 42


@pytest.mark.parametrize("to, data", [
    (MODEXP, modexp_input(3, (1 << 8192) - 1, (1 << 8192) - 159, 1024)),  # ~1 s of bigint pow
    (ECPAIRING, b"\0" * 192 * 4),
])
def test_a_precompile_leaves_the_loop_before_it_runs(backend: ChainBackend, to: bytes, data: bytes) -> None:
    started = time.monotonic()
    with pytest.raises(LeaveTheLoop):
        run_inline(backend, CallRequest(to=to, data=data))
    assert time.monotonic() - started < 0.1


def test_a_precompile_reached_through_a_contract_leaves_the_loop(backend: ChainBackend) -> None:
    # STATICCALL(gas=90000, 0x08, 0, 0, 0, 0) with little gas forwarded: still refused
    runtime = bytes.fromhex("5f5f5f5f" "6008" "62015f90" "fa" "00")
    contract = deploy_runtime(backend, runtime, 0)
    with pytest.raises(LeaveTheLoop):
        run_inline(backend, CallRequest(to=contract))


def test_a_large_memory_charge_and_a_long_loop_leave_the_loop(backend: ChainBackend) -> None:
    big_memory = deploy_runtime(backend, bytes.fromhex("62100000" "51" "00"), 0)  # MLOAD at 1 MiB
    loop = deploy_runtime(backend, bytes.fromhex("5b600056"), 1)  # JUMPDEST PUSH1 0 JUMP
    with pytest.raises(LeaveTheLoop):
        run_inline(backend, CallRequest(to=big_memory))
    started = time.monotonic()
    with pytest.raises(LeaveTheLoop):
        run_inline(backend, CallRequest(to=loop))
    assert time.monotonic() - started < INLINE_BUDGET_S + 0.05
    # outside the loop both run to their end (out of gas at the cap)
    with backend.simulate(backend.head_header()) as sim:
        assert sim.run(CallRequest(to=big_memory), 200_000).error == "out of gas"


@pytest.mark.asyncio
async def test_answers_are_the_same_on_the_loop_and_in_a_thread(rpc: Rpc, automine: Automine, backend: ChainBackend) -> None:
    """Each call once with the cache on (tried on the loop) and once under a state
    override that changes nothing (always in a thread): same answers, errors included."""
    address = await deploy(rpc)
    tx = await rpc.result("eth_sendRawTransaction", hexed(signed(ACCOUNT.key, 1, to=address, value=0,
                                                                   data=encode_uint(5), gas=100_000)))
    await mined_receipt(rpc, tx)
    same = {"0x" + "99" * 20: {"balance": "0x0"}}
    modexp = "0x" + modexp_input(3, 1000, 1_000_003, 32).hex()
    for call in [{"to": address}, {"to": address, "data": "0x" + encode_uint(0).hex()},
                 {"to": address, "data": "0x" + encode_uint(3).hex()}, {"to": "0x" + MODEXP.hex(), "data": modexp},
                 {"to": address, "gas": "0x5208"}, {"from": "0x" + "77" * 20, "to": address, "value": "0x1"}]:
        on_loop = await rpc.call("eth_call", call, "latest")
        in_thread = await rpc.call("eth_call", call, "latest", same)
        assert {k: v for k, v in on_loop.items() if k != "id"} == {k: v for k, v in in_thread.items() if k != "id"}, call
    answer = await rpc.result("eth_call", {"to": "0x" + MODEXP.hex(), "data": modexp})
    assert int(answer, 16) == pow(3, 1000, 1_000_003)


def test_the_loop_share_bounds_the_time_tries_take() -> None:
    """However many expensive calls arrive, tries on the loop take at most the share of
    its time (plus the burst): the rest go straight to a thread."""
    from rpc.evm_deadline import TimeShare

    share = TimeShare(share=0.25, burst=0.05, start=1000.0)
    now, spent, tried = 1000.0, 0.0, 0
    for _ in range(10_000):  # a call every 1 ms for 10 s, each taking its whole budget
        now += 0.001
        if share.allows(now):
            tried += 1
            share.spend(INLINE_BUDGET_S)
            spent += INLINE_BUDGET_S
    assert spent <= 0.25 * 10 + 0.05 + INLINE_BUDGET_S
    assert tried > 1000  # and it keeps trying at that pace, not never
    cheap = TimeShare(share=0.25, burst=0.05, start=2000.0)
    now = 2000.0
    for _ in range(10_000):  # cheap calls (0.3 ms) every 2 ms are always tried
        now += 0.002
        assert cheap.allows(now)
        cheap.spend(0.0003)


class BlockReadCounter(ChainBackend):
    """Counts whole-block reads (a call tried on the loop must read headers only)."""

    block_reads = 0

    def head(self) -> Any:
        self.block_reads += 1
        return super().head()

    def block_by_hash(self, block_hash: bytes) -> Any:
        self.block_reads += 1
        return super().block_by_hash(block_hash)

    def block_by_number(self, number: int) -> Any:
        self.block_reads += 1
        return super().block_by_number(number)


@pytest.mark.asyncio
async def test_a_call_on_the_head_or_a_hash_reads_headers_not_blocks(aiohttp_client: Any, backend: ChainBackend) -> None:
    """A whole block (up to the block size limit) decoded on the event loop before the
    first gas charge would stall it: eth_call resolves the head and hashes to headers."""
    from rpc.config import RpcConfig
    from rpc.server import create_app

    counting = BlockReadCounter(backend.chain)
    contract = deploy_runtime(counting, bytes.fromhex("602a5f5260205ff3"), 0)
    rpc = Rpc(await aiohttp_client(create_app(counting, RpcConfig(call_cache_bytes=0))))
    head = counting.head_header()
    counting.block_reads = 0
    for block in ("latest", "pending", {"blockHash": "0x" + head.hash.hex()}):
        assert int(await rpc.result("eth_call", {"to": "0x" + contract.hex()}, block), 16) == 42
    assert counting.block_reads == 0
    await rpc.result("eth_call", {"to": "0x" + contract.hex()}, hex(head.block_number))  # by number: a thread

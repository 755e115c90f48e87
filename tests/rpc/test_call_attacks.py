"""Red-team tests of eth_call's answer cache, eth_call tried on the event loop, head state
reads and eth_sendRawTransaction on the loop, and the event worker that skips reading
new blocks nobody listens for.

Plays an attacker who wants a wrong (stale, mixed-up) eth_call answer out of the cache,
a different answer on the loop than in a thread, a stalled event loop (measured as the
latency of a concurrent eth_blockNumber), more memory than the cache's byte bound, or a
filter that misses a block because it was installed at the moment of a new head.

"On the loop" and "in a thread" are compared by sending the same call once without and
once with a state override that changes nothing (overrides disable both the cache and
the try on the loop).
"""
from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from typing import Any, Awaitable, Callable

import pytest

from rpc.automine import Automine
from rpc.backend import CallRequest, ChainBackend
from rpc.call_cache import CallCache, CallOutcome, request_bytes
from rpc.config import RpcConfig
from rpc.evm_deadline import LeaveTheLoop
from rpc.server import SERVICES, create_app
from tests.rpc.conftest import ACCOUNT, ACCOUNT2, Rpc
from tests.rpc.helpers import hexed, signed
from tests.rpc.test_inline_calls import deploy_runtime, run_inline

NOOP = {"0x" + "99" * 20: {"balance": "0x0"}}


def strip_id(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "id"}


async def serve(aiohttp_client: Any, backend: ChainBackend, **config: Any) -> Rpc:
    return Rpc(await aiohttp_client(create_app(backend, RpcConfig(**config))))


async def worst_block_number_latency(rpc: Rpc, attack: Callable[[], Awaitable[Any]], rounds: int) -> float:
    """Worst eth_blockNumber round trip (s) while ``attack`` runs ``rounds`` times in a row."""
    worst = 0.0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal worst
        while not stop.is_set():
            started = time.perf_counter()
            answer = await rpc.call("eth_blockNumber")
            assert "result" in answer
            worst = max(worst, time.perf_counter() - started)
            await asyncio.sleep(0.0005)

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.01)
    for _ in range(rounds):
        await attack()
        await asyncio.sleep(0.003)
    stop.set()
    await prober
    return worst


# -- loop stalls ------------------------------------------------------------------------


def test_mechanism_big_calldata_is_processed_before_the_first_deadline_check(backend: ChainBackend) -> None:
    """A CREATE call with ~2.4 MB of init code (the 5 MiB body allows it) does all its
    pre-execution work (intrinsic gas over every byte, EIP-3860 size check) before the
    first gas charge, the only place the 2 ms budget is checked: the whole thing runs on
    the loop and finishes there with an error, ~10x the budget."""
    request = CallRequest(to=None, data=b"\x01" * 2_400_000)
    started = time.perf_counter()
    with pytest.raises(Exception) as raised:  # CallInvalid, not LeaveTheLoop
        run_inline(backend, request)
    took = time.perf_counter() - started
    assert not isinstance(raised.value, LeaveTheLoop)
    assert "EIP-3860" in str(raised.value)
    assert took > 0.008, took  # ~19 ms measured on this machine, budget 2 ms
    # to an account, the same calldata leaves the loop, but only after ~9 ms on it
    started = time.perf_counter()
    with pytest.raises(LeaveTheLoop):
        run_inline(backend, CallRequest(to=b"\x11" * 20, data=b"\x01" * 2_400_000))
    assert time.perf_counter() - started > 0.004


@pytest.mark.asyncio
async def test_huge_calldata_eth_call_does_not_stall_the_loop_more_than_in_a_thread(
    aiohttp_client: Any, backend: ChainBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop may be held by a call's try for about its 2 ms budget. Measured: how long
    eth_call's EVM work runs on the loop's own thread (deterministic), and, printed only
    (noisy), the worst concurrent eth_blockNumber round trip on either path."""
    import threading

    import rpc.eth_methods as eth_methods

    on_loop_thread: list[float] = []
    outcome = eth_methods._call_outcome

    def timed(*args: Any) -> Any:
        started = time.perf_counter()
        try:
            return outcome(*args)
        finally:
            if threading.current_thread() is threading.main_thread():
                on_loop_thread.append(time.perf_counter() - started)

    monkeypatch.setattr(eth_methods, "_call_outcome", timed)
    rpc = await serve(aiohttp_client, backend)
    call = {"input": "0x" + "01" * 2_400_000}
    inline_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest"]})
    thread_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [call, "latest", NOOP]})

    def sender(body: str) -> Callable[[], Awaitable[Any]]:
        async def send() -> Any:
            response = await rpc.client.post("/", data=body, headers={"Content-Type": "application/json"})
            answer = json.loads(await response.text())
            assert "EIP-3860" in answer["error"]["message"], answer
        return send

    in_thread = await worst_block_number_latency(rpc, sender(thread_body), 6)
    on_loop = await worst_block_number_latency(rpc, sender(inline_body), 6)
    print(f"worst eth_blockNumber: thread path {in_thread * 1000:.1f} ms, loop path {on_loop * 1000:.1f} ms; "
          f"EVM work on the loop thread: {len(on_loop_thread)} tries, worst {max(on_loop_thread, default=0) * 1000:.1f} ms")
    assert max(on_loop_thread, default=0.0) < 0.005, on_loop_thread


@pytest.mark.asyncio
async def test_maximal_raw_transaction_on_the_loop_is_cheap(aiohttp_client: Any, backend: ChainBackend) -> None:
    """eth_sendRawTransaction runs on the loop: a transaction at the pool's 128 KiB limit
    (decode, recover, intrinsic gas, admit) and an oversized one (refused) stay ~1 ms."""
    rpc = await serve(aiohttp_client, backend)
    # gas: EIP-7623 floor 21,000 + 40 x 130,000 (the pool refuses less)
    raws = [signed(ACCOUNT.key, n, data=b"\x01" * 130_000, gas=5_300_000) for n in range(5)]
    oversize = signed(ACCOUNT2.key, 0, data=b"\x01" * 2_000_000, gas=30_000_000)
    took: list[float] = []
    submit = backend.submit_raw_transaction

    def timed(raw: bytes) -> Any:
        started = time.perf_counter()
        try:
            return submit(raw)
        finally:
            took.append(time.perf_counter() - started)

    backend.submit_raw_transaction = timed  # type: ignore[method-assign]
    sent = iter(raws)

    async def attack() -> None:
        await rpc.result("eth_sendRawTransaction", hexed(next(sent)))

    worst = await worst_block_number_latency(rpc, attack, 5)
    error = await rpc.error("eth_sendRawTransaction", hexed(oversize))
    assert "oversized" in error["message"]
    print(f"worst eth_blockNumber during 128 KiB raw transactions: {worst * 1000:.1f} ms; "
          f"on the loop per transaction: {max(took[:5]) * 1000:.2f} ms, oversized {took[5] * 1000:.2f} ms")
    assert len(took) == 6 and max(took) < 0.01  # ~1.5 ms (128 KiB), ~0.1 ms (oversized)
    # the round trip (printed) is mostly the 260 KB hex body's transfer and parse, as before
    # the change, and showed rare ~170 ms outliers not spent in the handler: not asserted


def test_calls_between_gas_charges_leave_the_loop_within_a_few_ms(backend: ChainBackend) -> None:
    """Work between two gas charges under 100,000 gas and 256 KiB of memory: KECCAK of
    ~200 KiB in a loop, a JUMP to the end of 24 KiB of code (jumpdest analysis), LOG with
    12 KiB of data, CALLDATACOPY of ~200 KiB: each try leaves the loop (or ends) within a
    few ms."""
    code = bytes.fromhex(
        "5b"                        # 0: JUMPDEST
        "62032000" "5f" "20" "50"   # POP(KECCAK256(0, 0x32000))
        "62032000" "5f" "5f" "37"   # CALLDATACOPY(0, 0, 0x32000)
        "613000" "5f" "a0"          # LOG0(0, 0x3000)
        "5f" "56")                  # JUMP(0)
    keccak_loop = deploy_runtime(backend, code, 0)
    jumper = deploy_runtime(backend, bytes.fromhex("615ffc56") + b"\x60\x00" * ((0x5ffc - 4) // 2) + b"\x5b\x00", 1)
    for request in (CallRequest(to=keccak_loop, data=b"\x07" * 0x32000), CallRequest(to=jumper)):
        worst = 0.0
        for _ in range(3):
            started = time.thread_time()  # this thread's CPU time: a busy CI machine does not count
            try:
                run_inline(backend, request)
            except LeaveTheLoop:
                pass
            worst = max(worst, time.thread_time() - started)
        assert worst < 0.010, (request.to, worst)


def test_nested_calls_with_little_gas_leave_the_loop_and_agree_with_a_thread(backend: ChainBackend) -> None:
    """A contract calling itself with all its gas (63/64 each level): on the loop it
    either finishes or leaves within a few ms, and if it finishes the answer equals the
    thread's."""
    # CALL(gas(), address(), 0, 0, 0, 0, 0) ; return 32 bytes of the result flag
    runtime = bytes.fromhex("5f5f5f5f5f" "30" "5a" "f1" "5f52" "60205ff3")
    contract = deploy_runtime(backend, runtime, 0)
    for gas in (90_000, 5_000_000):
        request = CallRequest(to=contract, gas=gas)
        started = time.thread_time()
        try:
            on_loop = run_inline(backend, request)
        except LeaveTheLoop:
            on_loop = None
        assert time.thread_time() - started < 0.03
        with backend.simulate(backend.head_header()) as sim:
            in_thread = sim.run(request, gas)
        if on_loop is not None:
            assert (on_loop.success, on_loop.output, on_loop.error) == (in_thread.success, in_thread.output, in_thread.error)


# -- same answer on the loop as in a thread ------------------------------------------------

#: Runtime returning NUMBER, TIMESTAMP, COINBASE, BASEFEE, GASPRICE, CHAINID, SELFBALANCE,
#: BLOCKHASH(NUMBER-1), CALLER, CALLVALUE, ORIGIN, GASLIMIT, PREVRANDAO (13 words).
CONTEXT_RUNTIME = bytes.fromhex(
    "43" "5f52"  "42" "602052"  "41" "604052"  "48" "606052"  "3a" "608052"  "46" "60a052"
    "47" "60c052"  "600143" "03" "40" "60e052"  "33" "61010052"  "34" "61012052"  "32" "61014052"
    "45" "61016052"  "44" "61018052"  "6101a05ff3")


@pytest.mark.asyncio
async def test_tricky_calls_answer_the_same_on_the_loop_cached_and_in_a_thread(
    aiohttp_client: Any, backend: ChainBackend
) -> None:
    ctx = deploy_runtime(backend, CONTEXT_RUNTIME, 0)
    reverter = deploy_runtime(backend, bytes.fromhex("7f" + "ab" * 32 + "5f52" "60205ffd"), 1)  # revert(32 bytes)
    invalid = deploy_runtime(backend, bytes.fromhex("fe"), 2)
    # SLOAD slot 0 twice, return gas used by the second (warm) and the first (cold) read
    warmth = deploy_runtime(backend, bytes.fromhex("5a" "5f54" "50" "5a" "5f54" "50" "5a"
                                                   "90" "03" "5f52" "03" "602052" "60405ff3"), 3)
    # TSTORE(0, TLOAD(0)+1); return TLOAD(0): 1 on every fresh call
    transient = deploy_runtime(backend, bytes.fromhex("5f5c" "6001" "01" "5f5d" "5f5c" "5f52" "60205ff3"), 4)
    Automine(backend).mine_now()
    rpc = await serve(aiohttp_client, backend)
    hx = lambda a: "0x" + a.hex()  # noqa: E731
    calls: list[dict[str, Any]] = [
        {"to": hx(ctx)},
        {"to": hx(ctx), "from": ACCOUNT2.address, "value": "0x5", "gasPrice": "0x3b9aca00", "nonce": "0x0"},
        {"to": hx(ctx), "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "gas": "0x30000"},
        {"to": hx(reverter)}, {"to": hx(invalid)}, {"to": hx(ctx), "gas": "0x5208"}, {"to": hx(ctx), "gas": "0x5300"},
        {"to": hx(warmth)}, {"to": hx(transient)},
        {"from": "0x" + "77" * 20, "to": hx(ctx), "value": "0x1"},
        {"from": ACCOUNT.address, "to": hx(ctx), "nonce": "0xffffffffffffffff"},
        # CREATE returning CONTEXT_RUNTIME's output from init code
        {"data": "0x" + CONTEXT_RUNTIME.hex()},
        {"from": ACCOUNT.address, "data": "0x" + CONTEXT_RUNTIME.hex(), "nonce": "0x3"},
    ]
    for call in calls:
        for block in ("latest", "pending", "safe", "finalized"):
            in_thread = await rpc.call("eth_call", call, block, NOOP)
            first = await rpc.call("eth_call", call, block)  # on the loop (or cached)
            again = await rpc.call("eth_call", call, block)  # cached
            assert strip_id(first) == strip_id(in_thread) == strip_id(again), (call, block, first, in_thread)
    # a transient or warm slot never carries over from one call to the next
    answer = await rpc.result("eth_call", {"to": hx(transient)}, "latest", NOOP)
    assert int(answer, 16) == 1


# -- cache: wrong answers -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_call_cache_follows_the_head_and_keeps_old_blocks_exact(aiohttp_client: Any, backend: ChainBackend) -> None:
    """NUMBER/TIMESTAMP/BLOCKHASH/balances at "latest" change with every block; named by
    hash they never do; an unknown hash is not kept as an error once the block exists;
    "pending" means the head for eth_call (cached the same as latest)."""
    ctx = deploy_runtime(backend, CONTEXT_RUNTIME, 0)
    rpc = await serve(aiohttp_client, backend)
    call = {"to": "0x" + ctx.hex(), "from": ACCOUNT.address}
    seen: dict[str, str] = {}
    for n in range(4):
        head = await rpc.result("eth_getBlockByNumber", "latest", False)
        latest = await rpc.result("eth_call", call, "latest")
        assert latest == await rpc.result("eth_call", call, "pending")
        assert latest == await rpc.result("eth_call", call, "latest", NOOP)
        assert int(latest[2:66], 16) == int(head["number"], 16) + 1  # NUMBER of the child
        assert latest not in seen.values()
        seen[head["hash"]] = latest
        backend.submit_raw_transaction(signed(ACCOUNT.key, 1 + n, to=ACCOUNT2.address, value=1))
        Automine(backend).mine_now()
    for block_hash, answer in seen.items():
        assert await rpc.result("eth_call", call, {"blockHash": block_hash}) == answer
        assert await rpc.result("eth_call", call, {"blockHash": block_hash, "requireCanonical": True}) == answer
    # a hash that is not (yet) a block: an error, not kept
    missing = {"blockHash": "0x" + "ab" * 32}
    first = await rpc.error("eth_call", call, missing)
    assert first == await rpc.error("eth_call", call, missing)


@pytest.mark.asyncio
async def test_calls_the_parser_normalises_share_an_entry_and_different_calls_do_not(
    aiohttp_client: Any, backend: ChainBackend
) -> None:
    """"data" vs "input", a missing "from" vs the zero address, hex case: the same call;
    calls that differ in value, sender, nonce or gas never share an answer."""
    ctx = deploy_runtime(backend, CONTEXT_RUNTIME, 0)
    rpc = await serve(aiohttp_client, backend)
    to = "0x" + ctx.hex()
    same = [{"to": to, "data": "0xAB"}, {"to": to, "input": "0xab"}, {"to": to.upper().replace("0X", "0x"), "data": "0xab",
            "from": "0x" + "00" * 20}]
    answers = {await rpc.result("eth_call", call) for call in same}
    assert len(answers) == 1
    different = [{"to": to, "value": "0x1", "from": ACCOUNT.address}, {"to": to, "from": ACCOUNT2.address},
                 {"to": to, "from": ACCOUNT.address}]
    results = [await rpc.result("eth_call", call) for call in different]
    assert len(set(results)) == 3
    for call, result in zip(different, results):
        assert await rpc.result("eth_call", call, "latest", NOOP) == result


# -- cache: memory bound ------------------------------------------------------------------


def _measure_cache(make_request: Callable[[int], CallRequest], count: int) -> tuple[int, int]:
    """(bytes the cache counts, bytes Python actually holds for it) after ``count``
    distinct small entries with a 32-byte answer."""
    import gc

    cache = CallCache(1 << 40)
    head = bytes(32)
    requests = [make_request(i) for i in range(count)]  # as the parser would make them
    outcomes = [CallOutcome(output="0x" + "00" * 31 + f"{i % 256:02x}") for i in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for request, outcome in zip(requests, outcomes):
        cache.put((head, request), outcome, request_bytes(request))
    held_by_cache = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # what the parsed request and the answer cost (kept alive by the cache in the server)
    per_request = _deep_size(requests[0]) + _deep_size(outcomes[0])
    return cache.bytes, held_by_cache + per_request * count


def _deep_size(obj: Any, seen: set[int] | None = None) -> int:
    import sys

    seen = set() if seen is None else seen
    if id(obj) in seen or obj is None or isinstance(obj, (bool,)) or (isinstance(obj, int) and -5 <= obj <= 256):
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, (tuple, list)):
        size += sum(_deep_size(x, seen) for x in obj)
    elif hasattr(obj, "__dict__"):
        size += _deep_size(vars(obj), seen)
    elif isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif hasattr(obj, "__slots__"):
        size += sum(_deep_size(getattr(obj, s, None), seen) for s in obj.__slots__)
    return size


def test_call_cache_bytes_bound_the_memory_it_really_holds() -> None:
    counted, real = _measure_cache(
        lambda i: CallRequest(sender=bytes(20), to=b"\x11" * 20, data=i.to_bytes(4, "big")), 5_000)
    print(f"tiny calls: counted {counted / 5_000:.0f} B/entry, real {real / 5_000:.0f} B/entry")
    assert real <= counted * 1.25, (counted, real)


def test_call_cache_counts_access_lists_at_their_real_size() -> None:
    def request(i: int) -> CallRequest:
        addresses = tuple((i.to_bytes(4, "big") + n.to_bytes(16, "big"), ()) for n in range(400))
        return CallRequest(to=b"\x11" * 20, data=i.to_bytes(4, "big"), access_list=addresses)

    counted, real = _measure_cache(request, 60)
    print(f"access-list calls: counted {counted / 60:.0f} B/entry, real {real / 60:.0f} B/entry")
    assert real <= counted * 1.25, (counted, real)


# -- event worker: filters installed at a new head ------------------------------------------


@pytest.mark.asyncio
async def test_a_filter_installed_at_a_new_head_sees_every_later_block_and_log(
    aiohttp_client: Any, backend: ChainBackend
) -> None:
    """Install block and log filters right as blocks are mined (from a thread, racing the
    event worker with nothing else listening): every block mined after a filter was
    installed, and each of its logs, is reported."""
    import threading

    # LOG1(topic=1) of 0 bytes then STOP
    logger = deploy_runtime(backend, bytes.fromhex("6001" "5f5f" "a1" "00"), 0)
    rpc = await serve(aiohttp_client, backend)
    nonce = 1
    stop = threading.Event()

    def mine() -> None:
        nonlocal nonce
        while not stop.is_set():
            backend.submit_raw_transaction(signed(ACCOUNT.key, nonce, to="0x" + logger.hex(), value=0, gas=50_000))
            nonce += 1
            Automine(backend).mine_now()
            time.sleep(0.004)

    miner = threading.Thread(target=mine)
    miner.start()
    checked = 0
    try:
        for round_ in range(15):
            await asyncio.sleep(0.001 * (round_ % 6))  # nobody listening: the worker skips heads
            block_filter = await rpc.result("eth_newBlockFilter")
            log_filter = await rpc.result("eth_newFilter", {"address": "0x" + logger.hex()})
            installed_at = int(await rpc.result("eth_blockNumber"), 16)  # read after both exist
            while int(await rpc.result("eth_blockNumber"), 16) < installed_at + 3:
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.03)
            hashes = await rpc.result("eth_getFilterChanges", block_filter)
            logs = await rpc.result("eth_getFilterChanges", log_filter)
            numbers = [int((await rpc.result("eth_getBlockByHash", h, False))["number"], 16) for h in hashes]
            assert numbers == sorted(set(numbers)), numbers
            assert numbers and numbers[-1] >= installed_at + 3, (installed_at, numbers)
            expected = set(range(installed_at + 1, numbers[-1] + 1))
            assert expected <= set(numbers), (installed_at, numbers)
            log_blocks = {int(log["blockNumber"], 16) for log in logs}
            assert expected <= log_blocks, (installed_at, sorted(log_blocks))
            checked += len(expected)
            await rpc.result("eth_uninstallFilter", block_filter)
            await rpc.result("eth_uninstallFilter", log_filter)
    finally:
        stop.set()
        await asyncio.to_thread(miner.join)
    assert checked >= 45


@pytest.mark.asyncio
async def test_a_filter_installed_after_a_quiet_stretch_gets_the_next_block(
    aiohttp_client: Any, backend: ChainBackend
) -> None:
    """Blocks mined while nothing listens are skipped; a filter installed then reports the
    very next block (the worker's last head moved on with the skipped ones)."""
    rpc = await serve(aiohttp_client, backend)
    for n in range(3):
        backend.submit_raw_transaction(signed(ACCOUNT.key, n, value=1))
        Automine(backend).mine_now()
    await asyncio.sleep(0.05)
    block_filter = await rpc.result("eth_newBlockFilter")
    backend.submit_raw_transaction(signed(ACCOUNT.key, 3, value=1))
    block = Automine(backend).mine_now()
    assert block is not None
    for _ in range(100):
        changes = await rpc.result("eth_getFilterChanges", block_filter)
        if changes:
            break
        await asyncio.sleep(0.01)
    assert changes == ["0x" + block.hash.hex()]

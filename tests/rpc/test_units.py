"""Unit tests of the pieces under the server: hex codec, revert decoding, registry,
filters, event hub, CORS, executor isolation."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any, Iterator, TypedDict

import pytest

from rpc import RpcConfig, create_app
from rpc.backend import ChainBackend
from rpc.dispatch import decode_json
from safejson import nesting_depth
from rpc.errors import ExecutionReverted, InvalidParams, ParseError, decode_revert_reason
from rpc.events import EventHub, NewHead
from rpc.hexcodec import parse_data, parse_quantity, parse_storage_slot, quantity
from rpc.params import parse_block_id, parse_call
from rpc.registry import Param, Registry
from tests.rpc.conftest import Rpc


def test_quantity_round_trip() -> None:
    assert quantity(0) == "0x0" and quantity(255) == "0xff"
    assert parse_quantity("0x0") == 0 and parse_quantity("0xFF") == 255


@pytest.mark.parametrize("bad", ["0x", "1", "0x01", "0xg", 5, None, "0x1" + "0" * 64])
def test_invalid_quantity(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


@pytest.mark.parametrize("bad", ["0x1", "ab", "0xzz", 3])
def test_invalid_data(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_data(bad)


def test_storage_slot_accepts_leading_zeros() -> None:
    assert parse_storage_slot("0x" + "00" * 31 + "01") == 1
    with pytest.raises(ValueError):
        parse_storage_slot("0x" + "1" * 65)


def test_block_ids() -> None:
    assert parse_block_id("latest").tag == "latest"
    assert parse_block_id("0x10").number == 16
    assert parse_block_id("0x" + "ab" * 32).block_hash == b"\xab" * 32
    assert parse_block_id({"blockHash": "0x" + "ab" * 32, "requireCanonical": True}).require_canonical


def test_invalid_block_id() -> None:
    for bad in ({"blockHash": "0x" + "ab" * 32, "blockNumber": "0x1"}, {}, [], "newest"):
        with pytest.raises(ValueError):
            parse_block_id(bad)


def test_invalid_call_data_and_input_differ() -> None:
    with pytest.raises(InvalidParams):
        parse_call({"data": "0x01", "input": "0x02"})
    assert parse_call({"data": "0x01", "input": "0x01"}).data == b"\x01"


def test_revert_reason_decoding() -> None:
    reason = b"nope"
    data = bytes.fromhex("08c379a0") + (32).to_bytes(32, "big") + len(reason).to_bytes(32, "big") + reason.ljust(32, b"\0")
    assert decode_revert_reason(data) == "nope"
    error = ExecutionReverted(data)
    assert error.to_json() == {"code": 3, "message": "execution reverted: nope", "data": "0x" + data.hex()}
    assert ExecutionReverted(b"\x01\x02").message == "execution reverted"
    panic = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    assert decode_revert_reason(panic) == "panic: 0x11"
    assert decode_revert_reason(bytes.fromhex("08c379a0") + b"\xff" * 64) is None  # bad offset


def test_invalid_json_is_parse_error() -> None:
    for text in (b"{", b"\xff\xfe", b"NaN", b"[" * 100_000, b'{"a": Infinity}'):
        with pytest.raises(ParseError):
            decode_json(text)
    assert nesting_depth('{"a": "[[[[[["}') == 1


def test_registry_refuses_duplicates_and_checks_params() -> None:
    registry = Registry()

    @registry.method("x_a", Param("n", parse_quantity), Param("flag", bool, False))
    async def a(ctx: Any, n: int, flag: bool) -> int:
        return n

    with pytest.raises(ValueError):
        registry.method("x_a")(a)
    method = registry.get("x_a")
    assert method is not None
    assert method.parse_params(["0x1"]) == [1, False]
    with pytest.raises(InvalidParams, match=r"invalid argument 0 \(n\)"):
        method.parse_params(["1"])
    with pytest.raises(InvalidParams, match="too many arguments"):
        method.parse_params(["0x1", True, 3])


def test_invalid_registry_handlers_are_refused_at_registration() -> None:
    """A decorator that lands on the wrong line (a class, a TypedDict) or a plain function
    meant for the event loop fails at import, not as -32603 at the first request."""
    registry = Registry()

    class Answer(TypedDict):
        n: int

    with pytest.raises(TypeError, match="must be a function"):
        registry.method("x_a")(Answer)
    with pytest.raises(TypeError, match="must be a function"):
        registry.method("x_b", blocking=True)(dict)

    def plain(ctx: Any) -> int:
        return 1

    with pytest.raises(TypeError, match="coroutine function"):
        registry.method("x_c")(plain)
    registry.method("x_d", blocking=True)(plain)
    registry.method("x_e", evm=True)(plain)
    assert sorted(registry.methods) == ["x_d", "x_e"]


def test_event_hub_delivers_from_other_threads() -> None:
    hub = EventHub()
    loop = asyncio.new_event_loop()
    received: list[Any] = []
    unlisten = hub.listen(loop, received.append)
    thread = threading.Thread(target=hub.notify_new_head, args=(b"\x01" * 32,))
    thread.start()
    thread.join()
    loop.run_until_complete(asyncio.sleep(0.01))
    assert received == [NewHead(b"\x01" * 32)]
    unlisten()
    hub.notify_new_head(b"\x02" * 32)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert len(received) == 1
    loop.close()
    hub.listen(loop, received.append)
    hub.notify_new_head(b"\x03" * 32)  # a closed loop is skipped, not an error


@pytest.mark.asyncio
async def test_cors_off_unless_configured(aiohttp_client: Any, backend: ChainBackend) -> None:
    plain = await aiohttp_client(create_app(backend, RpcConfig()))
    response = await plain.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, headers={"Origin": "http://a.example"})
    assert "Access-Control-Allow-Origin" not in response.headers
    preflight = await plain.options("/", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 405 and "Access-Control-Allow-Origin" not in preflight.headers
    cors = await aiohttp_client(create_app(backend, RpcConfig(cors_origins=("http://a.example",))))
    response = await cors.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, headers={"Origin": "http://a.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://a.example"
    preflight = await cors.options("/", headers={"Origin": "http://a.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    other = await cors.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}, headers={"Origin": "http://b.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


class SlowBackend(ChainBackend):
    """eth_call takes a second of work checked like gas charges (rpc/evm_deadline.py):
    other requests must still be answered at once."""

    @contextlib.contextmanager
    def simulate(self, header: Any, overrides: Any = None) -> Iterator[Any]:
        from rpc.evm_deadline import check_deadline

        for _ in range(100):
            time.sleep(0.01)
            check_deadline()
        with super().simulate(header, overrides) as sim:
            yield sim


@pytest.mark.asyncio
async def test_slow_method_does_not_block_others(aiohttp_client: Any, backend: ChainBackend) -> None:
    slow = SlowBackend(backend.chain)
    rpc = Rpc(await aiohttp_client(create_app(slow, RpcConfig())))
    call = asyncio.create_task(rpc.call("eth_call", {"to": "0x" + "11" * 20}))
    await asyncio.sleep(0.1)
    started = time.perf_counter()
    for _ in range(5):
        assert (await rpc.call("eth_blockNumber"))["result"] == "0x0"
        assert (await rpc.call("eth_chainId"))["result"]
    assert time.perf_counter() - started < 0.5
    assert not call.done()
    assert (await call)["result"] == "0x"


@pytest.mark.asyncio
async def test_websocket_message_too_large_closes_connection(aiohttp_client: Any, backend: ChainBackend) -> None:
    client = await aiohttp_client(create_app(backend, RpcConfig(max_body_bytes=1000)))
    ws = await client.ws_connect("/")
    await ws.send_str('{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":["' + "a" * 2000 + '"]}')
    message = await ws.receive()
    assert message.type.name in ("CLOSE", "CLOSED", "CLOSING")
    # the server still serves
    response = await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
    assert (await response.json())["result"] == "0x539"


@pytest.mark.asyncio
async def test_get_on_root_without_upgrade(rpc: Rpc, aiohttp_client: Any, backend: Any) -> None:
    response = await rpc.client.get("/")  # a browser: the dashboard (rpc/dashboard/)
    assert response.status == 200 and response.content_type == "text/html"
    from rpc.config import RpcConfig
    from rpc.server import create_app

    plain = await aiohttp_client(create_app(backend, RpcConfig(port=0, dashboard=False)))
    response = await plain.get("/")  # --no-dashboard: JSON-RPC only, as before
    assert response.status == 405


def test_schema_reference_loads() -> None:
    from tests.rpc import schema_check

    if not schema_check.available():
        pytest.skip("execution-apis reference (../shared), pyyaml or jsonschema absent: results not schema-checked")
    assert schema_check.has_schema("eth_getBlockByNumber")
    schema_check.check_result("eth_blockNumber", "0x1")
    with pytest.raises(Exception):
        schema_check.check_result("eth_blockNumber", "0x01")

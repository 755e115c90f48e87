"""Against a real ``pouw-node run`` process: the EVM wall-clock limit and gas cap, heavy
calls that cannot starve cheap ones, and the --rpc-api, --rpc-cors and --txpool-* flags."""
from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
import urllib.request
from typing import Any, Iterator

import pytest

from tests.rpc.conftest import ACCOUNT, ACCOUNT2
from tests.rpc.devnode import DevNode, dev_genesis, start_pouw
from tests.rpc.helpers import hexed, signed

pytestmark = pytest.mark.slow

LOOP = {"0x" + "c5" * 20: {"code": "0x5b600056"}}  # JUMPDEST PUSH1 0 JUMP, forever
ORIGIN = "http://localhost:3000"


def post(url: str, method: str, *params: Any, headers: dict[str, str] | None = None, timeout: float = 60) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read()), dict(answer.headers)


@pytest.fixture(scope="module")
def node() -> Iterator[DevNode]:
    genesis = dev_genesis(1337)
    running = start_pouw("automine", genesis, args=(
        "--rpc-evmtimeout", "1", "--rpc-gascap", "30000000", "--rpc-api", "eth,net,web3,txpool,admin",
        "--rpc-cors", ORIGIN, "--txpool-account-slots", "2",
    ))
    try:
        yield running
    finally:
        running.stop()


def test_heavy_calls_stop_and_cheap_calls_keep_answering(node: DevNode) -> None:
    """Six infinite loops at once (more than the EVM threads): each stops after about
    1 s with geth's error, while cheap reads sent meanwhile answer promptly."""
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        started = time.monotonic()
        heavy = [pool.submit(post, node.url, "eth_call", {"to": "0x" + "c5" * 20}, "latest", LOOP) for _ in range(6)]
        time.sleep(0.3)  # the loops are running
        cheap_latencies = []
        for method, params in [("eth_getBalance", (ACCOUNT.address, "latest"))] * 10 + [("eth_blockNumber", ())] * 10:
            t = time.monotonic()
            answer, _ = post(node.url, method, *params)
            assert "result" in answer
            cheap_latencies.append(time.monotonic() - t)
        answers = [future.result()[0] for future in heavy]
        heavy_elapsed = time.monotonic() - started
    for answer in answers:
        assert answer["error"] == {"code": -32000, "message": "execution aborted (timeout = 1s)"}
    assert heavy_elapsed < 10, f"six 1 s calls took {heavy_elapsed:.1f} s"
    assert max(cheap_latencies) < 1.0, f"a cheap call waited {max(cheap_latencies):.2f} s behind the loops"
    answer, _ = post(node.url, "eth_call", {"to": ACCOUNT2.address}, "latest")
    assert answer["result"] == "0x"


def test_rpc_flags_reach_the_config() -> None:
    from node.cli import build_parser, rpc_config_from_args, txpool_limits_from_args

    args = build_parser().parse_args([
        "run", "--datadir", "x", "--rpc-gascap", "100000", "--rpc-evmtimeout", "2.5", "--rpc-cors", "a,b",
        "--rpc-api", "eth,admin", "--txpool-account-slots", "3", "--txpool-global-slots", "99",
        "--txpool-price-bump", "25", "--txpool-price-limit", "7", "--rpc-call-cache", "0",
        "--rpc-batch-limit", "50", "--rpc-batch-response-max", "1MiB",
    ])
    config: Any = rpc_config_from_args(args)
    assert (config.gas_cap, config.evm_timeout_s, config.cors_origins, config.apis) == (100000, 2.5, ("a", "b"), ("eth", "admin"))
    assert (config.call_cache_bytes, config.max_batch, config.max_batch_response_bytes) == (0, 50, 1 << 20)
    from chain.txpool import TxPoolLimits

    assert txpool_limits_from_args(args) == TxPoolLimits(max_per_sender=3, max_slots=99, price_bump_percent=25, min_gas_price=7)
    defaults: Any = rpc_config_from_args(build_parser().parse_args(["run", "--datadir", "x"]))
    assert defaults.cors_origins == () and "admin" not in defaults.apis and defaults.evm_timeout_s == 5.0
    from rpc.config import RpcConfig

    plain = RpcConfig()
    for name in ("call_cache_bytes", "max_batch", "max_batch_response_bytes", "gas_cap"):
        assert getattr(defaults, name) == getattr(plain, name), name


def test_rpc_api_and_cors_flags(node: DevNode) -> None:
    answer, _ = post(node.url, "admin_nodeInfo")
    assert answer["result"]["protocols"]["pouw"]["network"] == 1337
    answer, _ = post(node.url, "pouw_taskFamilies")
    assert answer["error"]["code"] == -32601  # pouw_ not in --rpc-api
    _, headers = post(node.url, "eth_chainId", headers={"Origin": ORIGIN})
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN
    _, headers = post(node.url, "eth_chainId", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


def test_txpool_account_slots_flag(node: DevNode) -> None:
    # nonces 10, 11, 12 are queued behind a gap: never mined, and the third is one too many
    for nonce in (10, 11):
        answer, _ = post(node.url, "eth_sendRawTransaction", hexed(signed(ACCOUNT2.key, nonce)))
        assert "result" in answer
    answer, _ = post(node.url, "eth_sendRawTransaction", hexed(signed(ACCOUNT2.key, 12)))
    assert answer["error"] == {"code": -32000, "message": "account limit exceeded"}
    status, _ = post(node.url, "txpool_status")
    assert status["result"] == {"pending": "0x0", "queued": "0x2"}


def test_invalid_rpc_flags() -> None:
    for flags in (["--rpc-api", "eth,bogus"], ["--rpc-evmtimeout", "-1"], ["--txpool-account-slots", "0"]):
        done = subprocess.run([sys.executable, "-m", "node.cli", "run", "--datadir", "/nonexistent", *flags],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "Traceback" not in done.stderr

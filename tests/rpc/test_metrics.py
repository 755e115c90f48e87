"""Prometheus metrics at /metrics (rpc/metrics.py), scraped from real node processes: a
mining node (with JSON logs, so its per-block lines are checked field by field) and a
validator that syncs from it over p2p (its lines name the peer); --no-metrics and
--no-dashboard turn the endpoints off."""
from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.rpc.pouw_node import MiningNode, wait_until

pytestmark = pytest.mark.timeout(240)


def scrape(url: str) -> dict[str, list[Any]]:
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(metrics: dict[str, list[Any]], family: str, sample: str | None = None, **labels: str) -> float:
    for s in metrics[family]:
        if (sample is None or s.name == sample) and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample or family} {labels} in {metrics[family]}")


def rpc(url: str, method: str, *params: Any) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MiningNode, MiningNode]]:
    tmp = tmp_path_factory.mktemp("metrics")
    port = free_port()
    with MiningNode(tmp, p2p_port=port, extra_args=("--log-format", "json"), name="miner") as miner:
        with MiningNode(tmp, mine=False, p2p_port=0, peers=f"127.0.0.1:{port}", name="validator") as validator:
            yield miner, validator


def test_a_mining_node_reports_its_state(pair: tuple[MiningNode, MiningNode]) -> None:
    miner, _ = pair
    url = miner.url
    assert url is not None
    wait_until(lambda: int(rpc(url, "eth_blockNumber")["result"], 16) >= 4, 60, "four blocks")
    for _ in range(3):
        rpc(url, "eth_blockNumber")
    rpc(url, "eth_getBalance", "0xnot-an-address", "latest")  # an error answer
    rpc(url, "made_upMethod")  # unknown methods never become labels
    metrics = scrape(url)
    head = int(rpc(url, "eth_blockNumber")["result"], 16)

    assert head - 2 <= value(metrics, "pouw_chain_head_block") <= head
    assert value(metrics, "pouw_chain_head_difficulty") > 0
    assert value(metrics, "pouw_node_info", chain_id="7357", seal_engine="pouw") == 1
    assert value(metrics, "pouw_p2p_peers") >= 0
    assert value(metrics, "pouw_txpool_transactions", state="pending") == 0
    # the miner: running, its rates, its blocks, its rewards (maturity 2: two blocks immature)
    assert value(metrics, "pouw_miner_running") == 1
    assert value(metrics, "pouw_miner_steps_per_second") > 0 and value(metrics, "pouw_miner_work_units_per_second") > 0
    mined = value(metrics, "pouw_miner_blocks_mined", "pouw_miner_blocks_mined_total")
    assert mined >= 4
    canonical = value(metrics, "pouw_miner_canonical_blocks")
    assert canonical >= 4
    reward = int(rpc(url, "pouw_getRewards", "0x00000000000000000000000000000000000c0ffe", "0x0",
                     hex(int(value(metrics, "pouw_chain_head_block"))))["result"]["total"], 16)
    mature = value(metrics, "pouw_miner_rewards_eth", maturity="mature")
    immature = value(metrics, "pouw_miner_rewards_eth", maturity="immature")
    assert immature > 0 and mature > 0
    assert abs((mature + immature) - reward / 1e18) < 1e-9 * max(1.0, reward / 1e18)
    # job progress: the standing job
    assert value(metrics, "pouw_job_steps_done", job="standing-0") > 0
    assert 0 < value(metrics, "pouw_job_progress_ratio", job="standing-0") <= 1
    # block import and verification: one observation per block this node imported
    imported = value(metrics, "pouw_block_import_seconds", "pouw_block_import_seconds_count", source="local")
    assert imported >= 4 and imported == value(metrics, "pouw_block_verification_seconds",
                                               "pouw_block_verification_seconds_count", source="local")
    assert value(metrics, "pouw_block_import_seconds", "pouw_block_import_seconds_sum", source="local") > 0
    # RPC requests by method and outcome
    assert value(metrics, "pouw_rpc_requests", "pouw_rpc_requests_total", method="eth_blockNumber", outcome="ok") >= 4
    assert value(metrics, "pouw_rpc_requests", "pouw_rpc_requests_total", method="pouw_getRewards", outcome="ok") == 0
    assert value(metrics, "pouw_rpc_request_duration_seconds", "pouw_rpc_request_duration_seconds_count",
                 method="eth_blockNumber") >= 4
    methods = {s.labels.get("method") for s in metrics["pouw_rpc_requests"]}
    assert "made_upMethod" not in methods
    # no GPU here: said plainly, no per-GPU series
    assert value(metrics, "pouw_gpu_available") == 0 and "pouw_gpu_utilization_percent" not in metrics

    after = scrape(url)  # counters only go up; the getRewards call above is counted now
    assert value(after, "pouw_rpc_requests", "pouw_rpc_requests_total", method="pouw_getRewards", outcome="ok") == 1
    assert value(after, "pouw_miner_canonical_blocks") >= canonical


def test_every_imported_block_is_one_json_log_line(pair: tuple[MiningNode, MiningNode]) -> None:
    miner, _ = pair
    wait_until(lambda: sum('"imported block' in line for line in miner.lines) >= 3, 60, "three import lines")
    records = [json.loads(line) for line in miner.lines if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    blocks = [r for r in records if r["message"].startswith("imported block")]
    numbers = [r["number"] for r in blocks]
    assert numbers[:3] == [1, 2, 3]
    first = blocks[0]
    assert first["logger"] == "chain.import" and first["level"] == "info"
    assert first["hash"].startswith("0x") and len(first["hash"]) == 66 and first["hash"] in first["message"]
    assert first["job"] == "standing-0" and first["steps"] > 0 and first["peer"] == "local"
    assert first["verifyMs"] > 0 and first["importMs"] >= first["verifyMs"]
    imports = rpc(miner.url, "pouw_blockImports", 3)["result"]
    assert len(imports) == 3 and int(imports[0]["number"], 16) > int(imports[1]["number"], 16)
    assert imports[0]["source"] == "local" and imports[0]["verifySeconds"] > 0


def test_a_validator_logs_each_block_with_the_peer_that_sent_it(pair: tuple[MiningNode, MiningNode]) -> None:
    miner, validator = pair
    url = validator.url
    assert url is not None
    wait_until(lambda: int(rpc(url, "eth_blockNumber")["result"], 16) >= 3, 90,
               f"the validator to sync\n{validator.log()}")
    lines = [line for line in validator.lines if "chain.import: imported block" in line]
    assert lines, validator.log()
    named = f" peer=127.0.0.1:{miner.p2p_port}/"  # the miner's listen address and node id
    assert all(named in line or line.endswith(" peer=p2p") for line in lines), lines[:3]
    assert any(named in line for line in lines), lines[:3]
    assert all("verify=" in line and "ms" in line for line in lines)
    # the import log's listeners run once an import has returned, just after the head moved
    metrics = wait_until(lambda: (lambda m: m if value(m, "pouw_block_verification_seconds",
                                                       "pouw_block_verification_seconds_count", source="peer") >= 3
                                  else None)(scrape(url)), 30, "three verifications in the metrics")
    assert value(metrics, "pouw_p2p_peers") == 1
    assert value(metrics, "pouw_miner_running") == 0
    info = rpc(url, "pouw_nodeInfo")["result"]
    assert info["mining"] is False and info["trainsJobs"] is True and int(info["peers"], 16) == 1


def test_no_metrics_and_no_dashboard(tmp_path_factory: pytest.TempPathFactory) -> None:
    with MiningNode(tmp_path_factory.mktemp("off"), extra_args=("--no-metrics", "--no-dashboard")) as node:
        url = node.url
        assert url is not None
        for path, code in (("/metrics", 404), ("/", 405), ("/dashboard/app.js", 404)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=10)
            assert refused.value.code == code, path
        info = rpc(url, "pouw_nodeInfo")["result"]
        assert info["metrics"] is False and info["dashboard"] is False
        wait_until(lambda: int(rpc(url, "eth_blockNumber")["result"], 16) >= 1, 60, "a block")
        assert rpc(url, "eth_blockNumber")["result"]  # JSON-RPC itself still served


def test_gpu_series_from_nvml_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NVML readings (no GPU on CI: the readings are given here), one series per GPU
    and reading; a field NVML cannot read on a board is left out, not reported as 0."""
    import pouw.telemetry
    from pouw.telemetry import GpuInfo
    from rpc.metrics import NodeCollector

    readings = [GpuInfo(0, "NVIDIA H200", 150 * 2**30, 20 * 2**30, 97, 61, 512.5),
                GpuInfo(1, "NVIDIA H200", 150 * 2**30, 1 * 2**30, 0, 35, None)]
    monkeypatch.setattr(pouw.telemetry, "gpu_snapshot", lambda: readings)
    families = {f.name: f for f in NodeCollector(object())._gpus()}
    assert families["pouw_gpu_available"].samples[0].value == 1
    util = {s.labels["gpu"]: s.value for s in families["pouw_gpu_utilization_percent"].samples}
    assert util == {"0": 97.0, "1": 0.0}
    assert families["pouw_gpu_memory_used_bytes"].samples[0].value == 20 * 2**30
    assert families["pouw_gpu_temperature_celsius"].samples[1].labels == {"gpu": "1", "name": "NVIDIA H200"}
    assert [s.labels["gpu"] for s in families["pouw_gpu_power_watts"].samples] == ["0"]


def test_the_reward_tally_follows_reorgs() -> None:
    """The miner's reward gauges are kept incrementally; a reorg below the last block
    counted starts the tally over, and it always equals pouw_getRewards over the chain."""
    from rpc.metrics import RewardTally
    from rpc.pouw_view import PouwView
    from tests.chain.helpers import MINER
    from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis

    chain = open_pouw_chain(pouw_genesis(expected_steps=6, k=2, maturity=2))
    view = PouwView(chain)
    tally = RewardTally(view, bytes(MINER))
    other = b"\x77" * 20

    def check() -> None:
        head = chain.head().block_number
        expected = view.rewards(bytes(MINER), 0, head)
        blocks, mature, immature = tally.update()
        assert blocks == expected.blocks_mined
        assert mature + immature == expected.block_rewards + expected.job_fees
        assert immature == expected.immature

    fork = mine_block(chain, MINER).block.header
    check()
    for _ in range(3):
        mine_block(chain, MINER)
    check()
    parent = fork.hash
    for _ in range(5):  # a heavier branch by another miner replaces ours
        m = mine_block(chain, other, parent_hash=parent, dt=6, do_import=False)
        chain.import_block(m.block, m.payload)
        parent = m.block.hash
    check()
    assert tally.update()[0] == 1

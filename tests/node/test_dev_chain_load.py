"""2,000 transfers land on a dev chain past the height where difficulty used to overflow.

Under the old per-block retarget, blocks a second apart raised difficulty 25 % a block
and at about block 693 of the dev genesis it passed 2**256: every fast block was refused
and the head froze (issue 12). Here a dev datadir first gets 800 blocks stamped a second
apart (built in-process, each imported through the real header validation), then real
``pouw-node run`` processes, ``--automine`` and ``--dev-period 1``, take 2,000 transfers
each and every one lands.
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from node.node import open_datadir
from tests.chain.helpers import DEV_ADDRESSES, DEV_KEYS, transfer
from tests.node.test_cli import DEV_CHAIN_ID, RunningNode, init

PREBUILT_BLOCKS = 800
TRANSFERS = 2_000
PER_SENDER_WAVE = 50  # the pool keeps at most 64 pending transactions per sender
SINK = b"\x77" * 20


@pytest.fixture(scope="module")
def past_the_old_overflow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dev datadir holding 800 blocks a second apart, the last one stamped now."""
    datadir = tmp_path_factory.mktemp("devload") / "dev"
    first = int(time.time()) - PREBUILT_BLOCKS
    init(datadir, "dev")
    with open_datadir(datadir) as dd:
        chain = dd.chain
        for i in range(PREBUILT_BLOCKS):
            block, payload = chain.build_block(b"\xc0" * 20, timestamp=first + i)
            chain.import_block(block, payload)
        head = chain.head()
        assert head.block_number == PREBUILT_BLOCKS
        # (the old rule refused every block from about #693 on: difficulty past 2**256)
        assert chain.genesis.initial_difficulty < head.difficulty <= chain.genesis.maximum_difficulty < 2**256
    return datadir


def _post(url: str, payload: Any) -> Any:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _send_all(node: RunningNode, timeout: float) -> int:
    """Send TRANSFERS transfers from the five dev accounts in waves (each sender at most
    PER_SENDER_WAVE pending), waiting for each wave to be mined; returns the last block."""
    nonces = [0] * len(DEV_KEYS)
    sent = 0
    deadline = time.monotonic() + timeout
    while sent < TRANSFERS:
        batch = []
        for k, key in enumerate(DEV_KEYS):
            for _ in range(min(PER_SENDER_WAVE, (TRANSFERS - sent - len(batch)) or 0)):
                tx = transfer(key, nonces[k], SINK, 1, chain_id=DEV_CHAIN_ID)
                nonces[k] += 1
                batch.append({"jsonrpc": "2.0", "id": len(batch), "method": "eth_sendRawTransaction",
                              "params": ["0x" + tx.encode().hex()]})
        answers = _post(node.url, batch)
        assert all("result" in a for a in answers), [a for a in answers if "error" in a][:3]
        sent += len(batch)
        while True:  # the wave is mined when every sender's nonce caught up
            counts = _post(node.url, [
                {"jsonrpc": "2.0", "id": k, "method": "eth_getTransactionCount", "params": ["0x" + a.hex(), "latest"]}
                for k, a in enumerate(DEV_ADDRESSES)
            ])
            if all(int(c["result"], 16) == nonces[int(c["id"])] for c in counts):
                break
            assert time.monotonic() < deadline, f"transfers not mined in {timeout:.0f} s: {counts}"
            time.sleep(0.05)
    return int(node.rpc("eth_blockNumber"), 16)


def _check_landed(node: RunningNode, head: int) -> None:
    balance = int(node.rpc("eth_getBalance", "0x" + SINK.hex(), "latest"), 16)
    assert balance == TRANSFERS
    assert head > PREBUILT_BLOCKS
    top = node.rpc("eth_getBlockByNumber", hex(head), False)
    assert int(top["difficulty"], 16) < 2**256


@pytest.mark.slow
@pytest.mark.parametrize("producer, failure", [
    (("--automine",), "automine failed"),
    (("--dev-period", "1"), "dev block producer failed"),
], ids=["automine", "dev-period-1"])
def test_two_thousand_transfers_land(past_the_old_overflow: Path, tmp_path: Path, producer: tuple[str, ...],
                                     failure: str) -> None:
    datadir = tmp_path / "node"
    shutil.copytree(past_the_old_overflow, datadir)
    node = RunningNode(datadir, *producer, "--no-p2p")
    try:
        head = _send_all(node, timeout=240)
        _check_landed(node, head)
    finally:
        code, log = node.stop()
    assert code == 0, log
    assert "Traceback" not in log and failure not in log

"""`pouw-node run --mine`: a node process mines blocks that advance the standing job."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.consensus.helpers import pouw_genesis_dict
from tests.node.test_cli import init

ROOT = Path(__file__).resolve().parents[2]
COINBASE = "0x00000000000000000000000000000000000c0ffe"


def cli(*args: str, **kw):
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT, capture_output=True, text=True, **kw)


def test_node_mines_with_the_mine_flag(tmp_path: Path) -> None:
    genesis = tmp_path / "genesis.json"
    raw = pouw_genesis_dict(expected_steps=40, k=2, maturity=1, targetBlockTime=1,
                            maxAdjustUpPercent=25, maxAdjustDownPercent=20)
    raw["consensus"]["minimumDifficulty"] = 1000
    genesis.write_text(json.dumps(raw))
    datadir = tmp_path / "node"
    init(datadir, genesis)
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "run", "--datadir", str(datadir), "--no-rpc", "--no-p2p", "--mine",
         "--coinbase", COINBASE, "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(12)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "mined block" in out, out

    from node.node import open_datadir

    with open_datadir(datadir) as opened:
        head = opened.chain.head()
        assert head.block_number >= 2, out
        for n in range(1, head.block_number + 1):
            header = opened.chain.get_header_by_hash(opened.chain.get_canonical_hash(n))
            assert header.coinbase == bytes.fromhex(COINBASE[2:])
            assert header.step_count >= 1
            assert opened.chain.get_payload(header.hash) is not None


def test_invalid_mine_without_coinbase_or_on_a_dev_chain(tmp_path: Path) -> None:
    datadir = tmp_path / "dev"
    init(datadir, "dev")
    run = cli("run", "--datadir", str(datadir), "--no-rpc", "--mine", "--coinbase", COINBASE, timeout=60)
    assert run.returncode == 1 and "sealEngine" in run.stderr
    run = cli("run", "--datadir", str(datadir), "--no-rpc", "--mine", timeout=60)
    assert run.returncode == 1 and "--coinbase" in run.stderr

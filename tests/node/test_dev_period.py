"""``pouw-node run --dev-period S``: the node's own periodic block producer on a no-proof
chain (like geth's ``--dev.period``), refused plainly on a proof-of-work chain."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from node.node import DevBlockProducer, NodeError
from rpc.backend import ChainBackend
from tests.chain.helpers import ALICE, DEV_ADDRESSES, dev_genesis, transfer
from tests.node.test_cli import DEV_CHAIN_ID, RunningNode, cli, head_of, init, one_line_error


@pytest.fixture
def dev_datadir(tmp_path: Path) -> Path:
    datadir = tmp_path / "dev"
    init(datadir, "dev")
    return datadir


def test_run_dev_period_builds_blocks_with_its_coinbase_and_pool_txs(dev_datadir: Path) -> None:
    coinbase = "0x" + "c3" * 20
    node = RunningNode(dev_datadir, "--dev-period", "0.3", "--coinbase", coinbase, "--no-p2p")
    try:
        tx = transfer(ALICE, 0, DEV_ADDRESSES[1], 10**18, chain_id=DEV_CHAIN_ID)
        node.rpc("eth_sendRawTransaction", "0x" + tx.encode().hex())
        deadline = time.monotonic() + 20
        receipt = None
        while receipt is None and time.monotonic() < deadline:
            time.sleep(0.1)
            receipt = node.rpc("eth_getTransactionReceipt", "0x" + tx.hash.hex())
        assert receipt is not None and receipt["status"] == "0x1"
        mined_in = int(receipt["blockNumber"], 16)
        while int(node.rpc("eth_blockNumber"), 16) < mined_in + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert int(node.rpc("eth_blockNumber"), 16) >= max(3, mined_in + 2)  # empty blocks too
        block = node.rpc("eth_getBlockByNumber", "0x1", False)
        assert block["miner"].lower() == coinbase
    finally:
        code, log = node.stop()
    assert code == 0, log
    assert "dev block producer on: a block every 0.3 s" in log
    assert head_of(dev_datadir)[0] >= 3


def test_invalid_run_dev_period_on_proof_of_work_chain(tmp_path: Path) -> None:
    datadir = tmp_path / "pouw"
    init(datadir)  # genesis/default.json: "pouw"
    result = cli("run", "--datadir", datadir, "--dev-period", "1", "--no-rpc", "--no-p2p")
    assert result.returncode == 1
    assert "--dev-period needs a development genesis" in one_line_error(result)


def test_invalid_run_dev_period_values(dev_datadir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli import build_parser

    for bad in ("0", "-1", "nan", "inf", "soon"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["run", "--datadir", str(dev_datadir), "--dev-period", bad])
        assert exit_.value.code == 2 and "--dev-period" in capsys.readouterr().err
    result = cli("run", "--datadir", dev_datadir, "--dev-period", "1", "--coinbase", "0x12", "--no-rpc", "--no-p2p")
    assert result.returncode == 1
    assert "--coinbase: expected a 0x-prefixed 20-byte hex address" in one_line_error(result)


def test_dev_block_producer_in_process() -> None:
    from eth.db.atomic import AtomicDB

    from chain.chain import Chain
    from chain.txpool import TxPool

    genesis = dev_genesis()
    chain = Chain.open(AtomicDB(), genesis)
    chain.txpool = TxPool(genesis.chain_id, chain.state_view())
    backend = ChainBackend(chain)
    with pytest.raises(NodeError):
        DevBlockProducer(backend, 0)
    producer = DevBlockProducer(backend, 0.05, b"\xc5" * 20).start()
    try:
        deadline = time.monotonic() + 10
        while producer.blocks_built < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        producer.stop()
    built = producer.blocks_built
    assert built >= 3 and chain.head().block_number == built
    assert bytes(chain.head().coinbase) == b"\xc5" * 20
    time.sleep(0.2)
    assert producer.blocks_built == built  # stopped means stopped

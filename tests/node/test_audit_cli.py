"""``pouw-node audit`` (node/auditing.py) on a datadir, and block files that carry a fraud
proof's start state: a chain with a substituted block and the proof of it is exported,
imported into a fresh datadir with no peer, and audited there."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.auditor import audit_block
from consensus.blobs import LevelDBBlobStore
from consensus.engine import backend_for
from node.auditing import EXIT_FRAUD
from node.cli import main
from node.node import export_blocks
from tests.chain.helpers import ALICE, BOB, ETHER, GWEI, MINER
from tests.consensus.fraud_helpers import prove_tx, substitute_block
from tests.consensus.helpers import mine_block, open_pouw_chain, pouw_genesis_dict, post_job_tx, tiny_spec


def _genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(pouw_genesis_dict(expected_steps=30, k=2, maturity=8)))
    return path


def test_an_exported_proof_imports_offline_and_the_audit_names_the_lie(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from genesis.format import parse_genesis

    genesis_path = _genesis_file(tmp_path)
    chain = open_pouw_chain(parse_genesis(json.loads(genesis_path.read_text())))
    mine_block(chain, MINER, [post_job_tx(ALICE, 0, tiny_spec(steps=400), price=GWEI, escrow=ETHER)])
    mine_block(chain, MINER)
    sub = substitute_block(chain, b"\xcc" * 20, segment=3, job_id=1, seed=21)
    chain.import_block(sub.block, sub.payload)
    LevelDBBlobStore(chain.db).put_state(audit_block(chain, sub.block.hash, backend_for("cpu")).start_state or b"")
    mine_block(chain, MINER, [prove_tx(BOB, 0, sub.block.hash, 3)])
    stats = export_blocks(chain, tmp_path / "chain.rlp")
    assert stats.blobs >= 2  # the job's initial state is derived; a checkpoint and the proof's start state travel

    datadir = tmp_path / "node"
    assert main(["init", "--datadir", str(datadir), "--genesis", str(genesis_path)]) == 0
    assert main(["import", "--datadir", str(datadir), str(tmp_path / "chain.rlp")]) == 0
    capsys.readouterr()

    assert main(["audit", "--datadir", str(datadir), "--workers", "1"]) == EXIT_FRAUD
    out = capsys.readouterr().out
    assert f"block #3 0x{sub.block.hash.hex()} job 1: FRAUD at segment 3" in out
    assert "block #2" in out and "honest" in out and "1 fraud" in out
    assert main(["audit", "--datadir", str(datadir), "--job", "1", "--to", "2"]) == 0
    assert "0 frauds" in capsys.readouterr().out


def test_invalid_audit_requests_are_refused_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    datadir = tmp_path / "node"
    assert main(["init", "--datadir", str(datadir), "--genesis", str(_genesis_file(tmp_path))]) == 0
    capsys.readouterr()
    assert main(["audit", "--datadir", str(datadir)]) == 1
    assert "nothing to audit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["audit", "--datadir", str(datadir), "--workers", "0"])
    assert usage.value.code == 2
    assert "1 to 256 workers" in capsys.readouterr().err
    dev = tmp_path / "dev"
    assert main(["init", "--datadir", str(dev), "--genesis", "dev"]) == 0
    capsys.readouterr()
    assert main(["audit", "--datadir", str(dev)]) == 1
    assert "proof-of-work chain" in capsys.readouterr().err
    assert main(["run", "--datadir", str(dev), "--audit", "--no-p2p", "--no-rpc"]) == 1
    assert "proof-of-work chain" in capsys.readouterr().err

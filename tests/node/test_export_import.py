"""Export a chain to a block file and import it into a fresh datadir.

The chain has transfers, contract creations and contract calls (storage writes with
logs), so import re-executes every kind of state change; the imported chain must end
on the same head hash and state root. ``build_chain_file`` is shared with the crash
and CLI tests.
"""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import rlp
from eth.db.atomic import AtomicDB

from chain.chain import Chain
from node.node import (
    CorruptBlockFile,
    DEV_GENESIS_PATH,
    encode_entry,
    export_blocks,
    import_blocks,
    init_datadir,
    open_datadir,
    read_block_file,
    read_genesis,
)
from genesis import load_genesis
from tests.chain.helpers import (
    DEV_ADDRESSES,
    DEV_KEYS,
    MINER,
    STORAGE_INIT,
    contract_address,
    mine,
    sign_tx,
    store_call,
)

DEV_CHAIN_ID = 1337


@dataclass(frozen=True)
class BuiltChain:
    """A chain built in memory and written to a block file."""

    path: Path
    head_number: int
    head_hash: bytes
    state_root: bytes
    contracts: tuple[bytes, ...]
    """Storage contracts created (slot 0 holds the last value stored)."""


def build_chain(blocks: int, txs_per_block: int = 4, seed: int = 0) -> tuple[Chain, tuple[bytes, ...]]:
    """A dev-genesis chain in memory: transfers between the dev accounts and to fresh
    addresses, a storage contract created in block 1 and another every 10 blocks, and
    calls that write to them. Returns the chain and the contracts' addresses."""
    rng = random.Random(seed)
    genesis = load_genesis(DEV_GENESIS_PATH)
    chain = Chain.open(AtomicDB(), genesis)
    nonces = [0] * len(DEV_KEYS)
    contracts: list[bytes] = []

    def next_nonce(k: int) -> int:
        nonces[k] += 1
        return nonces[k] - 1

    for number in range(1, blocks + 1):
        txs = []
        if number == 1 or number % 10 == 0:
            nonce = next_nonce(0)
            txs.append(sign_tx(DEV_KEYS[0], nonce, None, data=STORAGE_INIT, gas=200_000, chain_id=DEV_CHAIN_ID))
            contracts.append(contract_address(DEV_ADDRESSES[0], nonce))
        while len(txs) < txs_per_block:
            k = rng.randrange(1, len(DEV_KEYS))
            if contracts and rng.random() < 0.4:
                target = contracts[rng.randrange(len(contracts))]
                txs.append(store_call(DEV_KEYS[k], next_nonce(k), target, number * 1000 + len(txs), chain_id=DEV_CHAIN_ID))
            else:
                to = DEV_ADDRESSES[rng.randrange(len(DEV_KEYS))] if rng.random() < 0.5 else rng.randbytes(20)
                txs.append(sign_tx(DEV_KEYS[k], next_nonce(k), to, value=rng.randrange(1, 10**15), chain_id=DEV_CHAIN_ID))
        mine(chain, txs, coinbase=MINER)
    return chain, tuple(contracts)


def build_chain_file(path: Path, blocks: int, txs_per_block: int = 4, seed: int = 0) -> BuiltChain:
    chain, contracts = build_chain(blocks, txs_per_block, seed)
    with open(path, "wb") as f:
        for block_rlp in chain.export_blocks():
            f.write(block_rlp)
    head = chain.head()
    return BuiltChain(path, head.block_number, bytes(head.hash), bytes(head.state_root), contracts)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltChain:
    return build_chain_file(tmp_path_factory.mktemp("chainfile") / "chain.rlp", blocks=50, txs_per_block=4)


def fresh_datadir(tmp_path: Path, name: str = "datadir") -> Path:
    datadir = tmp_path / name
    init_datadir(datadir, read_genesis("dev"))
    return datadir


def test_export_import_round_trip(built: BuiltChain, tmp_path: Path) -> None:
    datadir = fresh_datadir(tmp_path)
    with open_datadir(datadir) as dd:
        stats = import_blocks(dd.chain, built.path)
        head = dd.chain.head()
        assert stats.imported == 50 and stats.known == 1  # block 0 is our genesis
        assert stats.transactions == 50 * 4
        assert bytes(head.hash) == built.head_hash
        assert bytes(head.state_root) == built.state_root
        for contract in built.contracts:
            assert dd.chain.get_code(contract) != b""
        assert dd.chain.get_storage(built.contracts[0], 0) != 0 or len(built.contracts) > 1
        # Exported again, the chain gives back the very same bytes.
        out = tmp_path / "again.rlp"
        assert export_blocks(dd.chain, out).blocks == 51
    assert out.read_bytes() == built.path.read_bytes()


def test_import_is_idempotent(built: BuiltChain, tmp_path: Path) -> None:
    datadir = fresh_datadir(tmp_path)
    with open_datadir(datadir) as dd:
        import_blocks(dd.chain, built.path)
    with open_datadir(datadir) as dd:
        stats = import_blocks(dd.chain, built.path)
        assert (stats.imported, stats.known) == (0, 51)
        assert bytes(dd.chain.head().hash) == built.head_hash


def test_export_range(built: BuiltChain, tmp_path: Path) -> None:
    datadir = fresh_datadir(tmp_path)
    with open_datadir(datadir) as dd:
        import_blocks(dd.chain, built.path)
        first, second = tmp_path / "a.rlp", tmp_path / "b.rlp"
        assert export_blocks(dd.chain, first, end=20).blocks == 21
        assert export_blocks(dd.chain, second, start=21).blocks == 30
    target = fresh_datadir(tmp_path, "target")
    with open_datadir(target) as dd:
        assert import_blocks(dd.chain, first).imported == 20
        assert import_blocks(dd.chain, second).imported == 30
        assert bytes(dd.chain.head().hash) == built.head_hash


def test_payload_entries_round_trip() -> None:
    """A block with a work payload is written as [block, payload] and read back apart."""
    chain, _ = build_chain(2, txs_per_block=1)
    blocks = list(chain.export_blocks())
    data = encode_entry(blocks[1], b"\x01" * 70) + encode_entry(blocks[2], None) + encode_entry(blocks[0], b"")
    entries = list(read_block_file(io.BytesIO(data), max_entry_bytes=10**6))
    assert [(e.block_rlp, e.payload) for e in entries] == [(blocks[1], b"\x01" * 70), (blocks[2], None), (blocks[0], b"")]
    assert entries[1].offset == len(encode_entry(blocks[1], b"\x01" * 70))
    # Without payloads the file is plain concatenated block RLP (geth's format).
    assert encode_entry(blocks[1], None) == blocks[1]
    assert rlp.decode(blocks[1])  # a plain RLP list


def test_payload_is_imported_and_exported(tmp_path: Path) -> None:
    chain, _ = build_chain(2, txs_per_block=1)
    blocks = list(chain.export_blocks())
    source = tmp_path / "payload.rlp"
    source.write_bytes(encode_entry(blocks[1], b"work-1") + encode_entry(blocks[2], None))
    datadir = fresh_datadir(tmp_path)
    with open_datadir(datadir) as dd:
        assert import_blocks(dd.chain, source).imported == 2
        assert dd.chain.get_payload(dd.chain.get_canonical_hash(1)) == b"work-1"
        out = tmp_path / "out.rlp"
        export_blocks(dd.chain, out, start=1)
    assert out.read_bytes() == source.read_bytes()


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x80", "expected an RLP list"),
        (b"\xf9\x01", "truncated length prefix"),
        (b"\xf9\x01\x00" + b"\xc0" * 10, "truncated (file ends 10 bytes into a 256-byte entry)"),
        (b"\xf8\x05" + b"\xc0" * 5, "non-canonical length prefix"),
        (b"\xfb" + (10**9).to_bytes(4, "big"), "exceeds the limit"),
    ],
)
def test_invalid_block_file_entry(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptBlockFile, match="corrupt block at offset 0: ") as info:
        list(read_block_file(io.BytesIO(data), max_entry_bytes=10**6))
    assert reason in str(info.value)


# --- pouw chains: blocks with the blobs their verification reads ------------------------------


@pytest.fixture(scope="module")
def pouw_chain_with_a_job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A pouw datadir mined by the real miner code: a standing-job block, a block posting
    a job on an uploaded dataset, then blocks training that job (their verification reads
    the dataset, and from the second on the job's checkpoint state)."""
    import json

    from consensus.blobs import LevelDBBlobStore
    from pouw.datasets import dataset_id, dataset_to_bytes, synthetic_blobs
    from tests.consensus.helpers import mine_block, pouw_genesis_dict, post_job_tx, tiny_spec

    root = tmp_path_factory.mktemp("pouwexport")
    genesis_path = root / "genesis.json"
    genesis_path.write_text(json.dumps(pouw_genesis_dict(expected_steps=6, k=3, maturity=2)))
    datadir = root / "source"
    init_datadir(datadir, read_genesis(str(genesis_path)))
    dataset = dataset_to_bytes(synthetic_blobs(b"\x05" * 32, 256, 64, (16,), 4))
    spec = tiny_spec(steps=60, dataset=dataset_id(dataset), input_shape=[16], num_classes=4, hidden=8, batch=8)
    with open_datadir(datadir) as dd:
        chain = dd.chain
        LevelDBBlobStore(chain.db).put(dataset)  # as pouw_putDataset stores it
        mine_block(chain, MINER)
        mine_block(chain, MINER, transactions=[post_job_tx(DEV_KEYS[0], 0, spec, 10**9, 10**9 * 60)])
        jobs = [mine_block(chain, MINER).job_id for _ in range(3)]
        assert jobs == [1, 1, 1]
        head = chain.head()
        checkpoint = bytes(chain.get_block_by_number(3).header.final_state)
    return {"root": root, "genesis": genesis_path, "datadir": datadir, "head": bytes(head.hash),
            "dataset": bytes.fromhex(dataset_id(dataset)[2:]), "checkpoint": checkpoint}


def test_export_writes_blobs_and_import_needs_no_peer(pouw_chain_with_a_job: dict, tmp_path: Path) -> None:
    """`pouw-node export` writes FILE.blobs (the job's dataset, its checkpoint states),
    and `pouw-node import` into a fresh datadir, with no peer, reaches the same head."""
    from tests.node.test_cli import cli, head_of, init

    built = pouw_chain_with_a_job
    out = tmp_path / "chain.rlp"
    result = cli("export", "--datadir", built["datadir"], out)
    assert result.returncode == 0, result.stderr
    # the dataset, and the checkpoint states blocks 2, 4 and 5 start from (standing job, job 1)
    assert "4 blobs" in result.stdout and "chain.rlp.blobs" in result.stdout, result.stdout
    blobs = (tmp_path / "chain.rlp.blobs").read_bytes()
    assert built["dataset"] in blobs and built["checkpoint"] in blobs

    target = tmp_path / "target"
    init(target, built["genesis"])
    result = cli("import", "--datadir", target, out, timeout=300)
    assert result.returncode == 0, result.stderr
    assert head_of(target)[1] == built["head"]


def test_invalid_import_without_blobs_names_block_and_blob(pouw_chain_with_a_job: dict, tmp_path: Path) -> None:
    """Without the blob file, import stops at the first block that trains the posted job
    with one line naming the block number and the missing dataset; blocks before it stay."""
    from tests.node.test_cli import cli, head_of, init, one_line_error

    built = pouw_chain_with_a_job
    out = tmp_path / "chain.rlp"
    assert cli("export", "--datadir", built["datadir"], out, "--no-blobs").returncode == 0
    assert not (tmp_path / "chain.rlp.blobs").exists()
    target = tmp_path / "target"
    init(target, built["genesis"])
    result = cli("import", "--datadir", target, out, timeout=300)
    assert result.returncode == 1
    line = one_line_error(result)
    assert "block #3 " in line and "0x" + built["dataset"].hex() in line and "FILE.blobs" in line, line
    assert head_of(target)[0] == 2
    # A blob file that lies about a blob is refused, naming it.
    bad = tmp_path / "bad.blobs"
    bad.write_bytes(rlp.encode([built["dataset"], b"not the dataset"]))
    result = cli("import", "--datadir", target, out, "--blobs", bad, timeout=300)
    assert result.returncode == 1 and "does not match its hash" in one_line_error(result)

"""Crash safety: SIGKILL ``pouw-node import`` at random moments, again and again.

Every block import is one LevelDB write batch (chain/db.py), so whatever instant the
process dies at, the datadir must hold a consistent chain: it opens, the head is a
block of the reference chain, every trie node of the head state is present (the whole
state trie and every storage trie are walked), the head's block, receipts and
transaction lookups are readable, and the head never goes backwards. Each trial then
lets the next import resume; the last one runs to completion and must end on the
reference head hash and state root.

Seed: random per run and printed; set POUW_CRASH_SEED to replay one.
"""
from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rlp
from eth.rlp.accounts import Account
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from trie import HexaryTrie
from trie.iter import NodeIterator

from chain.chain import Chain
from node.node import init_datadir, open_datadir, read_genesis
from tests.chain.helpers import DEV_ADDRESSES
from tests.node.test_export_import import build_chain

BLOCKS = 200
TXS_PER_BLOCK = 4
TRIALS = 12
#: After the child says it started importing, kill it within this many seconds (first
#: trials; later ones size the window from the import rate seen so far, so that the
#: kills spread over the whole chain on fast and slow machines alike).
KILL_WINDOW_S = 0.4
#: Share of trials killed at a random instant from process start (startup, opening).
EARLY_KILL_SHARE = 0.2

pytestmark = pytest.mark.slow


def pouw_node() -> list[str]:
    script = Path(sys.executable).with_name("pouw-node")
    return [str(script)] if script.exists() else [sys.executable, "-m", "node.cli"]


def walk_state(db: object, state_root: bytes) -> int:
    """Read every node of the state trie, every storage trie and every code: raises
    MissingTrieNode (or KeyError for code) if the datadir lacks any. Returns the
    number of accounts."""
    accounts = 0
    for _, value in NodeIterator(HexaryTrie(db, state_root)).items():
        account = rlp.decode(value, sedes=Account)
        accounts += 1
        if account.storage_root != BLANK_ROOT_HASH:
            for _ in NodeIterator(HexaryTrie(db, account.storage_root)).items():
                pass
        if account.code_hash != EMPTY_SHA3:
            db[account.code_hash]  # type: ignore[index]
    return accounts


def check_head(datadir: Path, reference: Chain, contracts: tuple[bytes, ...]) -> int:
    """Open the datadir and check its head against the reference chain; return its number."""
    with open_datadir(datadir) as dd:
        chain = dd.chain
        head = chain.head()
        number = head.block_number
        assert head.hash == reference.get_canonical_hash(number), f"head #{number} is not on the reference chain"
        ref_header = reference.get_header_by_hash(head.hash)
        assert head.state_root == ref_header.state_root
        assert walk_state(dd.db, head.state_root) >= len(DEV_ADDRESSES)
        for address in DEV_ADDRESSES:
            assert chain.get_balance(address) == reference.get_balance(address, number)
            assert chain.get_nonce(address) == reference.get_nonce(address, number)
        for contract in contracts:
            assert chain.get_storage(contract, 0) == reference.get_storage(contract, 0, number)
            assert chain.get_code(contract) == reference.get_code(contract, number)
        block = chain.get_block_by_number(number)
        receipts = chain.get_receipts(block)
        assert len(receipts) == len(block.transactions)
        for tx in block.transactions:
            location = chain.get_transaction_by_hash(tx.hash)
            assert location is not None and location.block_hash == head.hash
        return number


def run_and_kill(cmd: list[str], rng: random.Random, window_s: float) -> tuple[str, float | None, int | None]:
    """Start ``cmd``; SIGKILL it at a random moment. Returns (when, seconds into the
    import or None for an early kill, exit code if it ended before the kill)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = threading.Event()
    lines: "queue.Queue[str]" = queue.Queue()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
            if "importing" in line:
                started.set()
        started.set()  # EOF: the process ended

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if rng.random() < EARLY_KILL_SHARE:
        delay = rng.uniform(0.0, 1.0)
        when, into = f"{delay:.3f}s after start", None
        time.sleep(delay)
    else:
        assert started.wait(30), "pouw-node import did not start"
        delay = rng.uniform(0.0, window_s)
        when, into = f"{delay:.3f}s into the import", delay
        time.sleep(delay)
    ended = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(5)
    if ended is not None and ended != 0:
        output = "".join(lines.queue)
        raise AssertionError(f"import failed before the kill (exit {ended}):\n{output}")
    return when, into, ended


def test_import_survives_sigkill_at_random_moments(tmp_path: Path) -> None:
    seed = int(os.environ.get("POUW_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\ncrash test seed: {seed} (replay with POUW_CRASH_SEED={seed})")
    rng = random.Random(seed)

    t0 = time.perf_counter()
    reference, contracts = build_chain(BLOCKS, TXS_PER_BLOCK, seed=seed)
    chain_file = tmp_path / "chain.rlp"
    with open(chain_file, "wb") as f:
        for block_rlp in reference.export_blocks():
            f.write(block_rlp)
    print(f"built {BLOCKS} blocks x {TXS_PER_BLOCK} txs in {time.perf_counter() - t0:.1f}s")

    datadir = tmp_path / "datadir"
    init_datadir(datadir, read_genesis("dev"))
    cmd = [*pouw_node(), "import", "--datadir", str(datadir), str(chain_file), "--progress", "10"]

    heads = [0]
    mid_import = 0
    window_s = KILL_WINDOW_S
    for trial in range(TRIALS):
        when, into, ended = run_and_kill(cmd, rng, window_s)
        number = check_head(datadir, reference, contracts)
        if into is not None and into > 0.05 and number > heads[-1] and ended is None:
            # Aim the mean kill at ~70% of an even share of the blocks still to import.
            rate = (number - heads[-1]) / into
            share = 0.7 * (BLOCKS - number) / (TRIALS - trial)
            window_s = min(1.0, max(0.02, 2 * share / rate))
        assert number >= heads[-1], f"trial {trial}: head went back from #{heads[-1]} to #{number}"
        if heads[-1] < number < BLOCKS:
            mid_import += 1
        print(f"trial {trial:2d}: killed {when}{' (had finished)' if ended == 0 else ''}: head #{number}")
        heads.append(number)

    # SIGTERM (not KILL) stops the import cleanly: exit 130, one line, no traceback. It runs on a
    # fresh datadir so that the import is surely still going when the signal lands (on the one
    # above only a few blocks may be left, and a process already exiting dies of the signal).
    fresh = tmp_path / "fresh"
    init_datadir(fresh, read_genesis("dev"))
    term_cmd = [*pouw_node(), "import", "--datadir", str(fresh), str(chain_file), "--progress", "10"]
    proc = subprocess.Popen(term_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    while "imported 10 blocks" not in (line := proc.stderr.readline()) and line:
        pass
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    proc.wait(20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted (blocks imported so far are kept" in err
    assert 10 <= check_head(fresh, reference, contracts) < BLOCKS

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open_datadir(datadir) as dd:
        head = dd.chain.head()
        assert head.block_number == BLOCKS
        assert head.hash == reference.head().hash
        assert head.state_root == reference.head().state_root
    assert check_head(datadir, reference, contracts) == BLOCKS
    print(f"{mid_import} of {TRIALS} kills landed mid-import; heads {heads[1:]}; total {time.perf_counter() - t0:.1f}s")
    assert mid_import >= 1

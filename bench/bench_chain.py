"""Benchmark of block import with full validation: plain transfers and token transfers.

    python bench/bench_chain.py [--blocks N] [--txs-per-block M] [--no-profile]

Builds, on a no-proof dev genesis in a temporary LevelDB datadir, N blocks of M plain
ETH transfers and N blocks of M calls of an ERC20-like ``transfer(to, amount)`` (two
SSTOREs and a LOG3, raw bytecode in genesis), from 64 funded senders. Then imports them
into a fresh datadir through ``Chain.import_block`` (every stage: header, body with
signature recovery, execution, state root) and prints:

* transfers imported per second, and the ratio to the 800 transfers/s floor;
* token-transfer (contract call) transactions imported per second;
* sender recoveries per second with the active eth-keys backend (coincurve), measured in
  the same run: the floor no import can beat while it recovers every sender once;
* when transfers fall under the floor (or with --profile), a cProfile of one import
  of the transfer blocks: where the time goes.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rlp  # noqa: E402
from eth.vm.forks.prague.transactions import PragueTransactionBuilder  # noqa: E402
from eth_hash.auto import keccak  # noqa: E402
from eth_keys import KeyAPI, keys  # noqa: E402

from chain.chain import Chain  # noqa: E402
from chain.db import LevelDB  # noqa: E402
from chain.header import PouwBlock  # noqa: E402
from genesis.format import parse_genesis  # noqa: E402
from node.node import DEV_GENESIS_PATH  # noqa: E402

FLOOR_TRANSFERS_PER_S = 800
SENDERS = 64
GWEI = 10**9
TOKEN = bytes.fromhex("00000000000000000000000000000000000070c3")
COINBASE = b"\xc0" * 20
BLOCK_TIME = 5


def token_runtime() -> bytes:
    """transfer(to = calldata[0:32], amount = calldata[32:64]) over balances[address] at
    storage slot = address; emits Transfer(from, to, amount); reverts if underfunded."""
    topic = keccak(b"Transfer(address,address,uint256)")
    head = bytes.fromhex(
        "33" "54"          # CALLER SLOAD                      [bal]
        "6020" "35"        # PUSH1 32 CALLDATALOAD             [bal, amt]
        "81" "81" "11"     # DUP2 DUP2 GT                      [bal, amt, amt > bal]
        "60FF" "57"        # PUSH1 fail JUMPI (patched below)  [bal, amt]
        "90" "03" "33" "55"  # SWAP1 SUB CALLER SSTORE         balances[from] = bal - amt
        "6000" "35" "80" "54"  # PUSH1 0 CALLDATALOAD DUP1 SLOAD   [to, bal_to]
        "6020" "35" "01" "90" "55"  # + amt; SWAP1 SSTORE       balances[to] += amt
        "6020" "35" "6000" "52"  # mem[0] = amt
        "6000" "35" "33"   # [to, from]
    )
    body = head + b"\x7f" + topic + bytes.fromhex("6020" "6000" "a3" "00")  # LOG3(0, 32, sig, from, to); STOP
    fail = len(body)
    code = body + bytes.fromhex("5b" "6000" "80" "fd")  # JUMPDEST PUSH1 0 DUP1 REVERT
    return code.replace(b"\x60\xff\x57", bytes([0x60, fail, 0x57]), 1)


def sender_keys() -> list[keys.PrivateKey]:
    return [keys.PrivateKey(keccak(b"bench sender %d" % i)) for i in range(SENDERS)]


def bench_genesis(senders: list[keys.PrivateKey]) -> Any:
    raw = json.loads(Path(DEV_GENESIS_PATH).read_text())
    raw["gasLimit"] = 60_000_000
    for key in senders:
        raw["alloc"]["0x" + key.public_key.to_canonical_address().hex()] = {"balance": hex(10**24)}
    raw["alloc"]["0x" + TOKEN.hex()] = {
        "code": "0x" + token_runtime().hex(),
        "storage": {
            "0x" + key.public_key.to_canonical_address().hex(): hex(10**30) for key in senders
        },
    }
    return parse_genesis(raw)


def sign(key: keys.PrivateKey, nonce: int, to: bytes, value: int, data: bytes, gas: int, chain_id: int) -> Any:
    unsigned = PragueTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=GWEI, max_fee_per_gas=50 * GWEI,
        gas=gas, to=to, value=value, data=data, access_list=[],
    )
    return PragueTransactionBuilder.decode(unsigned.as_signed_transaction(key).encode())


def build_blocks(datadir: Path, genesis: Any, blocks: int, per_block: int) -> tuple[list[bytes], list[bytes], float]:
    """Transfer blocks, then token blocks; returns their RLP and the build time."""
    senders = sender_keys()
    addresses = [k.public_key.to_canonical_address() for k in senders]
    nonces = [0] * SENDERS
    started = time.perf_counter()
    db = LevelDB(datadir)
    try:
        chain = Chain.open(db, genesis)
        out: dict[str, list[bytes]] = {"transfer": [], "token": []}
        i = 0
        for kind in ("transfer", "token"):
            for _ in range(blocks):
                txs = []
                for _ in range(per_block):
                    s = i % SENDERS
                    to = addresses[(i * 7 + 3) % SENDERS]
                    if kind == "transfer":
                        tx = sign(senders[s], nonces[s], to, 1000 + i, b"", 21_000, genesis.chain_id)
                    else:
                        data = to.rjust(32, b"\0") + (1 + i).to_bytes(32, "big")
                        tx = sign(senders[s], nonces[s], TOKEN, 0, data, 100_000, genesis.chain_id)
                    nonces[s] += 1
                    i += 1
                    txs.append(tx)
                parent = chain.head()
                block, payload = chain.build_block(COINBASE, timestamp=parent.timestamp + BLOCK_TIME, transactions=txs)
                chain.import_block(block, payload)
                receipts = chain.get_receipts(block)
                assert all(r.state_root == b"\x01" for r in receipts), f"a {kind} transaction failed"
                out[kind].append(rlp.encode(block))
    finally:
        db.close()
    return out["transfer"], out["token"], time.perf_counter() - started


def import_blocks(datadir: Path, genesis: Any, phases: list[list[bytes]]) -> list[tuple[float, float]]:
    """Import each phase's blocks in order into a fresh datadir; (wall, CPU) seconds
    per phase. CPU time is the figure to trust on a machine shared with other work."""
    db = LevelDB(datadir)
    try:
        chain = Chain.open(db, genesis)
        times = []
        for blocks in phases:
            wall, cpu = time.perf_counter(), time.process_time()
            for raw in blocks:
                result = chain.import_block(raw)
                assert not result.already_known
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        return times
    finally:
        db.close()


def recoveries_per_second(block_rlps: list[bytes]) -> tuple[float, float, str]:
    """Sender recovery on fresh transaction objects (nothing cached): ``tx.sender`` as
    py-evm computes it (signing hash + ECDSA recovery), and the ECDSA recovery alone."""
    txs = [tx for raw in block_rlps for tx in rlp.decode(raw, sedes=PouwBlock).transactions]
    api = KeyAPI()
    started = time.process_time()
    for tx in txs:
        tx.sender
    sender_rate = len(txs) / (time.process_time() - started)
    signed = [(keccak(tx.get_message_for_signing()), api.Signature(vrs=(tx.y_parity, tx.r, tx.s))) for tx in txs]
    started = time.process_time()
    for message_hash, signature in signed:
        api.ecdsa_recover(message_hash, signature)
    ecdsa_rate = len(txs) / (time.process_time() - started)
    return sender_rate, ecdsa_rate, type(api.backend).__name__


def profile_import(datadir: Path, genesis: Any, blocks: list[bytes], top: int = 25) -> str:
    db = LevelDB(datadir)
    try:
        chain = Chain.open(db, genesis)
        profiler = cProfile.Profile(time.process_time)  # CPU time: the machine may be shared
        profiler.enable()
        for raw in blocks:
            chain.import_block(raw)
        profiler.disable()
    finally:
        db.close()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=10, help="blocks of each kind (default 10)")
    parser.add_argument("--txs-per-block", type=int, default=100, help="transactions per block (default 100)")
    parser.add_argument("--profile", action="store_true", help="profile the transfer import even above the floor")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    args = parser.parse_args()

    genesis = bench_genesis(sender_keys())
    n = args.blocks * args.txs_per_block
    with tempfile.TemporaryDirectory(prefix="bench_chain_") as tmp:
        transfers, tokens, build_s = build_blocks(Path(tmp) / "source", genesis, args.blocks, args.txs_per_block)
        print(f"built {2 * args.blocks} blocks x {args.txs_per_block} txs in {build_s:.1f} s (not timed below)")
        (transfer_wall, transfer_cpu), (token_wall, token_cpu) = import_blocks(
            Path(tmp) / "target", genesis, [transfers, tokens]
        )
        sender_rate, ecdsa_rate, backend = recoveries_per_second(transfers + tokens)

        transfer_rate, token_rate = n / transfer_cpu, n / token_cpu
        print(f"import with full validation, LevelDB, {args.blocks} blocks x {args.txs_per_block} txs each "
              f"(rates per CPU second; wall-clock in brackets, lower when the machine is shared):")
        print(f"  plain transfers:           {transfer_rate:7.0f} tx/s  [{n / transfer_wall:.0f} tx/s wall, "
              f"{args.blocks / transfer_cpu:.1f} blocks/s]")
        print(f"  token transfer calls:      {token_rate:7.0f} tx/s  [{n / token_wall:.0f} tx/s wall, "
              f"{args.blocks / token_cpu:.1f} blocks/s]")
        print(f"  tx.sender (hash+recover):  {sender_rate:7.0f} /s    (eth-keys backend {backend}, same run)")
        print(f"  ECDSA recovery alone:      {ecdsa_rate:7.0f} /s")
        verdict = "above" if transfer_rate >= FLOOR_TRANSFERS_PER_S else "UNDER"
        print(f"ratio transfers / floor ({FLOOR_TRANSFERS_PER_S} transfers/s): {transfer_rate / FLOOR_TRANSFERS_PER_S:.2f}x "
              f"({verdict} the floor; wall-clock {n / transfer_wall / FLOOR_TRANSFERS_PER_S:.2f}x)")
        print(f"ratio transfer import / tx.sender rate: {transfer_rate / sender_rate:.3f} "
              f"(recovering each sender once is {100 * transfer_rate / sender_rate:.0f}% of transfer import time)")
        if not args.no_profile and (args.profile or transfer_rate < FLOOR_TRANSFERS_PER_S):
            print("\ncProfile (CPU time) of the transfer import (fresh datadir):")
            print(profile_import(Path(tmp) / "profiled", genesis, transfers))


if __name__ == "__main__":
    main()

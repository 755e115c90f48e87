"""Builders for tests: blocks with chosen fields, a storage contract, database snapshots,
and (re-exported from the development kit, ``devnet/kit/``) the dev keys, signers, the
noproof genesis and the fixed clock.

Shareable by every test package (``from tests.chain.helpers import ...``). Everything
here is deterministic: fixed keys, fixed genesis, fixed clock.
"""
from __future__ import annotations

import copy
from typing import Any, Iterable, Optional, Sequence

import rlp
from eth.abc import AtomicDatabaseAPI, BlockAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth.db.trie import make_trie_root_and_nodes
from eth_keys import keys
from eth_typing import Address

from chain.chain import Chain, Seal
from chain.header import PouwBlock
from chain.sealing import NoProofEngine
from devnet.kit.accounts import ALICE, BOB, CAROL, DEV_ADDRESSES, DEV_KEYS, MINER, address_of
from devnet.kit.chains import BLOCK_TIME, FixedClock
from devnet.kit.genesis import default_genesis_dict
from devnet.kit.genesis import noproof_genesis as dev_genesis
from devnet.kit.transactions import ETHER, GWEI, sign_tx, transfer
from genesis.format import GenesisConfig

OTHER_MINER = Address(b"\xc1" * 20)


def open_chain(
    db: Optional[AtomicDatabaseAPI] = None,
    genesis: Optional[GenesisConfig] = None,
    txpool: Any = None,
) -> Chain:
    """A chain on a fresh in-memory db with the no-proof engine and a clock far ahead."""
    genesis = genesis or dev_genesis()
    return Chain.open(
        db if db is not None else AtomicDB(),
        genesis,
        seal_engine=NoProofEngine,
        txpool=txpool,
        clock=FixedClock(genesis.timestamp + 10**6),
    )


# --- transactions ------------------------------------------------------------------


def contract_address(sender: bytes, nonce: int) -> Address:
    from eth._utils.address import generate_contract_address

    return generate_contract_address(sender, nonce)


# A tiny contract without a compiler. Runtime: SSTORE(0, CALLDATALOAD(0)); LOG1 with
# topic 0xaa..aa; STOP. Init code: CODECOPY the runtime that follows it and RETURN it.
STORAGE_RUNTIME = bytes.fromhex("600035600055" "7f" + "aa" * 32 + "60006000a1" "00")
STORAGE_INIT = (
    bytes.fromhex(f"60{len(STORAGE_RUNTIME):02x}600c600039" f"60{len(STORAGE_RUNTIME):02x}6000f3")
    + STORAGE_RUNTIME
)


def store_call(key: keys.PrivateKey, nonce: int, contract: bytes, value: int, **kw: Any) -> SignedTransactionAPI:
    """A call of the storage contract that writes ``value`` into slot 0."""
    return sign_tx(key, nonce, contract, data=value.to_bytes(32, "big"), gas=100_000, **kw)


# --- blocks ------------------------------------------------------------------------


def mine(
    chain: Chain,
    transactions: Sequence[SignedTransactionAPI] = (),
    *,
    coinbase: bytes = MINER,
    parent_hash: Optional[bytes] = None,
    dt: int = BLOCK_TIME,
    extra_data: bytes = b"",
    seal: Optional[Seal] = None,
    payload: Optional[bytes] = None,
    do_import: bool = True,
) -> BlockAPI:
    """Build a block (on the head, or ``parent_hash``) ``dt`` seconds after its parent,
    with exactly ``transactions``, and import it unless ``do_import`` is False."""
    parent = chain.head() if parent_hash is None else chain.get_header_by_hash(parent_hash)
    block, _ = chain.build_block(
        coinbase,
        timestamp=parent.timestamp + dt,
        transactions=list(transactions),
        extra_data=extra_data,
        seal=seal,
        parent_hash=parent.hash,
    )
    if do_import:
        chain.import_block(block, payload)
    return block


def with_header(block: BlockAPI, **changes: Any) -> BlockAPI:
    """The block with some header fields changed (its hash changes too)."""
    return block.copy(header=block.header.copy(**changes))


def with_transactions(block: BlockAPI, transactions: Sequence[SignedTransactionAPI]) -> BlockAPI:
    """The block with another body and a matching transaction root."""
    root, _ = make_trie_root_and_nodes(list(transactions))
    header = block.header.copy(transaction_root=root)
    return PouwBlock(header, transactions=list(transactions), uncles=[], withdrawals=[])


def block_rlp(block: BlockAPI) -> bytes:
    return rlp.encode(block)


# --- databases -----------------------------------------------------------------------


def db_snapshot(db: AtomicDatabaseAPI) -> dict[bytes, bytes]:
    """Every key and value of ``db`` (py-evm AtomicDB over MemoryDB, or our LevelDB)."""
    if hasattr(db, "iterate"):
        return dict(db.iterate())
    wrapped = getattr(db, "wrapped_db", None)
    store = getattr(wrapped, "kv_store", None)
    if store is None:
        raise TypeError(f"cannot snapshot {type(db).__name__}")
    return copy.copy(dict(store))


def canonical_numbers(chain: Chain) -> list[bytes]:
    return [chain.get_canonical_hash(n) for n in range(chain.head().block_number + 1)]


def txs_hashes(txs: Iterable[SignedTransactionAPI]) -> list[bytes]:
    return [tx.hash for tx in txs]


__all__ = [name for name in dir() if not name.startswith("_")]

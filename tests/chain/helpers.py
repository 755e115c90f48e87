"""Builders for tests: dev keys, signed transactions, blocks, database snapshots.

Shareable by every test package (``from tests.chain.helpers import ...``). Everything
here is deterministic: fixed keys, fixed genesis, fixed clock.
"""
from __future__ import annotations

import copy
import json
from typing import Any, Iterable, Optional, Sequence

import rlp
from eth.abc import AtomicDatabaseAPI, BlockAPI, SignedTransactionAPI
from eth.db.atomic import AtomicDB
from eth.db.trie import make_trie_root_and_nodes
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_keys import keys
from eth_typing import Address

from chain.chain import Chain, Seal
from chain.header import PouwBlock
from chain.sealing import NoProofEngine
from genesis.format import DEFAULT_GENESIS_PATH, GenesisConfig, parse_genesis

# The first five keys of the public test mnemonic
# "test test test test test test test test test test test junk" (m/44'/60'/0'/0/i),
# funded in genesis/default.json. Never use them where value is at stake.
DEV_KEYS = tuple(
    keys.PrivateKey(bytes.fromhex(h))
    for h in (
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    )
)
DEV_ADDRESSES = tuple(Address(k.public_key.to_canonical_address()) for k in DEV_KEYS)
ALICE, BOB, CAROL = DEV_KEYS[0], DEV_KEYS[1], DEV_KEYS[2]
MINER = Address(b"\xc0" * 20)
OTHER_MINER = Address(b"\xc1" * 20)
BLOCK_TIME = 5
GWEI = 10**9
ETHER = 10**18

BUILDER = PragueTransactionBuilder


def address_of(key: keys.PrivateKey) -> Address:
    return Address(key.public_key.to_canonical_address())


# --- genesis -----------------------------------------------------------------------


def default_genesis_dict() -> dict[str, Any]:
    return json.loads(DEFAULT_GENESIS_PATH.read_text())


def dev_genesis(**consensus_overrides: Any) -> GenesisConfig:
    """The default devnet genesis with the no-proof seal engine (and overrides of
    ``consensus.*`` fields, e.g. ``initialDifficulty=1000``)."""
    raw = default_genesis_dict()
    raw["consensus"]["sealEngine"] = "noproof"
    raw["consensus"].update(consensus_overrides)
    return parse_genesis(raw)


class FixedClock:
    """A clock tests move by hand (import refuses blocks too far in its future)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


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


def sign_tx(
    key: keys.PrivateKey,
    nonce: int,
    to: Optional[bytes] = None,
    value: int = 0,
    data: bytes = b"",
    gas: int = 21_000,
    *,
    chain_id: int = 7357,
    kind: str = "eip1559",
    max_fee: int = 10 * GWEI,
    tip: int = 1 * GWEI,
) -> SignedTransactionAPI:
    """A signed transaction of ``kind`` "eip1559" (type 2), "access_list" (type 1) or
    "legacy" (EIP-155); ``to=None`` creates a contract."""
    to_field = b"" if to is None else to
    if kind == "eip1559":
        unsigned = BUILDER.new_unsigned_dynamic_fee_transaction(
            chain_id=chain_id, nonce=nonce, max_priority_fee_per_gas=tip, max_fee_per_gas=max_fee,
            gas=gas, to=to_field, value=value, data=data, access_list=[],
        )
        signed = unsigned.as_signed_transaction(key)
    elif kind == "access_list":
        unsigned = BUILDER.new_unsigned_access_list_transaction(
            chain_id=chain_id, nonce=nonce, gas_price=max_fee, gas=gas, to=to_field,
            value=value, data=data, access_list=[],
        )
        signed = unsigned.as_signed_transaction(key)
    elif kind == "legacy":
        unsigned = BUILDER.create_unsigned_transaction(
            nonce=nonce, gas_price=max_fee, gas=gas, to=to_field, value=value, data=data
        )
        signed = unsigned.as_signed_transaction(key, chain_id=chain_id)
    else:
        raise ValueError(kind)
    # Re-decode with the Prague builder: py-evm's signers return older fork classes.
    raw = signed.encode() if hasattr(signed, "encode") else rlp.encode(signed)
    return BUILDER.decode(raw)


def transfer(key: keys.PrivateKey, nonce: int, to: bytes, value: int = 1, **kw: Any) -> SignedTransactionAPI:
    return sign_tx(key, nonce, to, value, **kw)


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

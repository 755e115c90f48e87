"""``eth_getProof`` (EIP-1186): Merkle-Patricia proofs of an account and its storage slots.

The state trie and every account's storage trie are py-evm's hexary tries, keyed by
keccak256(address) and keccak256(slot as 32 bytes), their nodes stored in the node's
database by hash. ``trie.HexaryTrie.get_proof`` walks from a root to a key and returns
the nodes on the way (also for an absent key: the proof of absence); a node is listed
when its parent refers to it by hash, and nodes shorter than 32 bytes stay inlined in
their parent, exactly as a verifier expects (EIP-1186, geth).
"""
from __future__ import annotations

from typing import Sequence, TypedDict

import rlp
from eth.abc import DatabaseAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA256
from eth_utils import keccak
from trie import HexaryTrie

from rpc.hexcodec import data, quantity

#: Most storage slots one eth_getProof may ask for.
MAX_PROOF_SLOTS = 1024


class StorageProofJson(TypedDict):
    key: str
    value: str
    proof: list[str]


class ProofJson(TypedDict):
    """eth_getProof's answer (EIP-1186)."""

    address: str
    accountProof: list[str]
    balance: str
    codeHash: str
    nonce: str
    storageHash: str
    storageProof: list[StorageProofJson]


def _encoded_proof(root: bytes, key: bytes, db: DatabaseAPI) -> list[bytes]:
    """RLP of each node on the path to ``key``, root first, as EIP-1186 lists them."""
    if root == BLANK_ROOT_HASH:
        return []
    nodes = HexaryTrie(db, root).get_proof(key)
    return [rlp.encode(node) for node in nodes if len(rlp.encode(node)) >= 32 or node is nodes[0]]


def account_proof(db: DatabaseAPI, state_root: bytes, address: bytes, slots: Sequence[int]) -> ProofJson:
    """The EIP-1186 answer for ``address`` and ``slots`` in the state ``state_root``."""
    state_trie = HexaryTrie(db, state_root)
    account_rlp = state_trie.get(keccak(address))
    if account_rlp:
        nonce, balance, storage_root, code_hash = rlp.decode(account_rlp)
        nonce, balance = int.from_bytes(nonce, "big"), int.from_bytes(balance, "big")
    else:  # absent: the empty account, and a proof of its absence
        nonce, balance, storage_root, code_hash = 0, 0, BLANK_ROOT_HASH, EMPTY_SHA256
    storage_trie = HexaryTrie(db, storage_root)
    storage: list[StorageProofJson] = []
    for slot in slots:
        key = keccak(slot.to_bytes(32, "big"))
        raw = storage_trie.get(key) if storage_root != BLANK_ROOT_HASH else b""
        value = int.from_bytes(rlp.decode(raw), "big") if raw else 0
        storage.append({
            "key": data(slot.to_bytes(32, "big")),
            "value": quantity(value),
            "proof": [data(node) for node in _encoded_proof(storage_root, key, db)],
        })
    return {
        "address": data(address),
        "accountProof": [data(node) for node in _encoded_proof(state_root, keccak(address), db)],
        "balance": quantity(balance),
        "codeHash": data(code_hash),
        "nonce": quantity(nonce),
        "storageHash": data(storage_root),
        "storageProof": storage,
    }

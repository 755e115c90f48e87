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
from eth.constants import BLANK_ROOT_HASH
from eth_typing import Address
from eth_utils import keccak
from trie import HexaryTrie

from chain.state_reader import StateReader
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


def account_proof(state: StateReader, address: bytes, slots: Sequence[int]) -> ProofJson:
    """The EIP-1186 answer for ``address`` and ``slots`` in ``state`` (values read by the
    state reader; an absent account is the empty one, with a proof of its absence)."""
    db = state.db
    account = state.account(address)
    storage_root = account.storage_root
    storage: list[StorageProofJson] = []
    for slot in slots:
        storage.append({
            "key": data(slot.to_bytes(32, "big")),
            "value": quantity(state.get_storage(Address(address), slot)),
            "proof": [data(node) for node in _encoded_proof(storage_root, keccak(slot.to_bytes(32, "big")), db)],
        })
    return {
        "address": data(address),
        "accountProof": [data(node) for node in _encoded_proof(state.state_root, keccak(address), db)],
        "balance": quantity(account.balance),
        "codeHash": data(account.code_hash),
        "nonce": quantity(account.nonce),
        "storageHash": data(storage_root),
        "storageProof": storage,
    }

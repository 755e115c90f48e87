"""py-evm's account database with the account encoding written out by hand, and the
accounts of recent state roots kept between blocks.

Every balance or nonce change during execution re-encodes the account
(``AccountDB._set_account``: ``rlp.encode(account, sedes=Account)``), and every first
read of an account in a block decodes one. Through ``rlp``'s generic sedes machinery
that was about a tenth of applying a plain transfer (py-spy, bench/bench_rpc.py's
transfer workload). An account is always the same four fields (two integers, two
32-byte hashes), so :func:`encode_account` and :func:`decode_account` do it directly and
fall back to ``rlp`` for anything outside the plain canonical shape; both give exactly
what ``rlp`` gives (tests/chain/test_speedups.py compares them on edge and random
values, and on malformed encodings, which still raise ``rlp``'s errors).

Accounts by state root (:data:`KNOWN_ACCOUNTS`): each block's execution starts from an
empty account cache and reads every sender, recipient and the coinbase from the state
trie again, though the block before it had just read or written all of them. When a
:class:`FastAccountDB` computes a state root it records, for that root, the encoding of
every account it read (unchanged, so the same under the new root) or wrote; an account
database opened on that root later answers those accounts from the record before
walking the trie. A state root fixes every account in it, so a record is true for any
database that holds that root (a node missing from a database is then not noticed for
those accounts, as with any cache). The last :data:`KNOWN_ROOTS` roots are kept, at
most :data:`KNOWN_ACCOUNTS_PER_ROOT` accounts each. tests/chain/test_speedups.py builds
blocks of creations, calls, self-destructs and empty-account touches with the record in
use and imports them into a chain that executes without it: same state roots.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Dict, Optional

import rlp
from eth.abc import AtomicDatabaseAPI, DatabaseAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.account import AccountDB
from eth.db.cache import CacheDB
from eth.db.diff import DBDiff
from eth.db.journal import JournalDB
from eth.rlp.accounts import Account
from eth_typing import Address, Hash32

from chain.speedups import encode_raw

KNOWN_ROOTS = 16
KNOWN_ACCOUNTS_PER_ROOT = 4096


def encode_account(account: Account) -> bytes:
    """``rlp.encode(account, sedes=Account)``."""
    nonce, balance, storage_root, code_hash = account.nonce, account.balance, account.storage_root, account.code_hash
    if (
        nonce.__class__ is not int or balance.__class__ is not int
        or not 0 <= nonce < 1 << 256 or not 0 <= balance < 1 << 256
        or storage_root.__class__ is not bytes or code_hash.__class__ is not bytes
        or len(storage_root) != 32 or len(code_hash) != 32
    ):
        return rlp.encode(account, sedes=Account)  # its own result, or its own error
    # big_endian_int's serialization (0 is the empty string), then the plain list encoding
    return encode_raw([
        nonce.to_bytes((nonce.bit_length() + 7) // 8, "big"),
        balance.to_bytes((balance.bit_length() + 7) // 8, "big"),
        storage_root,
        code_hash,
    ])


def _decode_int(data: bytes, pos: int) -> tuple[int, int]:
    """A canonical RLP string holding an integer at ``pos``: (value, next position), or
    (-1, pos) for anything else (the caller lets ``rlp`` decide)."""
    first = data[pos]
    if first < 0x80:
        if first == 0:  # b"\x00": an integer with a leading zero, which rlp refuses
            return -1, pos
        return first, pos + 1
    if first == 0x80:
        return 0, pos + 1
    if first <= 0xA0:  # 1 to 32 bytes
        length = first - 0x80
        end = pos + 1 + length
        if end > len(data) or data[pos + 1] == 0 or (length == 1 and data[pos + 1] < 0x80):
            return -1, pos
        return int.from_bytes(data[pos + 1:end], "big"), end
    return -1, pos


def decode_account(encoded: bytes) -> Account:
    """``rlp.decode(encoded, sedes=Account)``."""
    if len(encoded) >= 2 and encoded[0] == 0xF8 and encoded[1] == len(encoded) - 2 and encoded[1] >= 56:
        nonce, pos = _decode_int(encoded, 2)
        if nonce >= 0:
            balance, pos = _decode_int(encoded, pos)
            if balance >= 0 and len(encoded) == pos + 66 and encoded[pos] == 0xA0 and encoded[pos + 33] == 0xA0:
                return Account(nonce, balance, encoded[pos + 1:pos + 33], encoded[pos + 34:])
    return rlp.decode(encoded, sedes=Account)


class KnownAccounts:
    """Encoded accounts by state root: address -> ``rlp(account)``, or b"" for an
    account that does not exist under that root. Shared by every thread."""

    def __init__(self, roots: int = KNOWN_ROOTS, per_root: int = KNOWN_ACCOUNTS_PER_ROOT) -> None:
        self.roots = roots
        self.per_root = per_root
        self._by_root: "OrderedDict[bytes, Dict[bytes, bytes]]" = OrderedDict()
        self._lock = threading.Lock()

    def at(self, state_root: bytes) -> Optional[Dict[bytes, bytes]]:
        """The accounts recorded for ``state_root`` (do not modify), or None."""
        return self._by_root.get(state_root)

    def record(self, state_root: bytes, accounts: Dict[bytes, bytes]) -> None:
        if len(accounts) > self.per_root:
            return
        with self._lock:
            self._by_root[state_root] = accounts
            self._by_root.move_to_end(state_root)
            while len(self._by_root) > self.roots:
                self._by_root.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._by_root.clear()


KNOWN_ACCOUNTS = KnownAccounts()


class _AccountReadCache(CacheDB):
    """py-evm's per-root account read cache, consulting the accounts recorded for its
    root before the trie."""

    def __init__(self, db: DatabaseAPI, known: Optional[Dict[bytes, bytes]]) -> None:
        super().__init__(db)
        self.known = known

    def reset_cache(self) -> None:  # the root changed: the record no longer applies
        super().reset_cache()
        self.known = None

    def __getitem__(self, key: bytes) -> bytes:
        cached = self._cached_values
        if key in cached:
            return cached[key]
        known = self.known
        value = known.get(key) if known is not None else None
        if value is None:
            value = self._db[key]
        cached[key] = value
        return value


class FastAccountDB(AccountDB):
    """``AccountDB`` encoding and decoding accounts with the functions above, and
    recording and reusing the accounts of the state roots it computes."""

    def __init__(self, db: AtomicDatabaseAPI, state_root: Hash32 = BLANK_ROOT_HASH) -> None:
        super().__init__(db, state_root)
        # the same pipe as py-evm's (journal -> read cache -> trie), its read cache
        # replaced while both are still empty
        self._trie_cache = _AccountReadCache(self._trie_logger, KNOWN_ACCOUNTS.at(state_root))
        self._journaltrie = JournalDB(self._trie_cache)
        self._applied_diff: Optional[DBDiff] = None

    def _apply_account_diff_without_proof(self, diff: DBDiff, trie: DatabaseAPI) -> None:
        super()._apply_account_diff_without_proof(diff, trie)
        self._applied_diff = diff

    def make_state_root(self) -> Hash32:
        read_cache = self._trie_cache
        assert isinstance(read_cache, _AccountReadCache)
        # what was read under the current root (reset_cache below swaps in a new map)
        read = read_cache._cached_values
        known = read_cache.known
        self._applied_diff = None
        new_root = super().make_state_root()
        # unchanged accounts keep their encoding: the old root's record, what this
        # database read, then what it wrote
        accounts = dict(known) if known is not None and len(known) < KNOWN_ACCOUNTS.per_root // 2 else {}
        accounts.update(read.items())
        diff = self._applied_diff
        if diff is not None:
            for key in diff.deleted_keys():
                accounts[key] = b""
            for key, value in diff.pending_items():
                accounts[key] = value
        KNOWN_ACCOUNTS.record(new_root, accounts)
        read_cache.known = accounts if len(accounts) <= KNOWN_ACCOUNTS.per_root else None
        return new_root

    def _get_account(self, address: Address, from_journal: bool = True) -> Account:
        if from_journal and address in self._account_cache:
            return self._account_cache[address]
        encoded = self._get_encoded_account(address, from_journal)
        account = decode_account(encoded) if encoded else Account()
        if from_journal:
            self._account_cache[address] = account
        return account

    def _set_account(self, address: Address, account: Account) -> None:
        self._account_cache[address] = account
        self._journaltrie[address] = encode_account(account)

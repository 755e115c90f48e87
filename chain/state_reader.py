"""Reads of a stored state (balances, nonces, code, storage) straight from its tries.

py-evm's state object is built for execution: creating one (``VM.build_state``) sets
up journals and caches and runs Prague's system-contract set-up, which reads code,
before the first read. Answering ``eth_getBalance`` that way cost more than the read
itself, and the tx pool built one at every new head. A :class:`StateReader` reads the
same data the standard way (the account trie keyed by ``keccak(address)``, an
account's storage trie keyed by ``keccak(pad32(slot))``, code by its hash), keeps the
accounts it decoded, and is cheap to create. It only reads: writes go through py-evm.

Thread use: reads may come from several threads at once; the account memo is a plain
dict (each operation atomic under the GIL) cleared when it grows past its bound.
"""
from __future__ import annotations

import rlp
from eth.abc import DatabaseAPI
from eth.constants import BLANK_ROOT_HASH, EMPTY_SHA3
from eth.rlp.accounts import Account
from eth_hash.auto import keccak
from eth_typing import Address, Hash32
from eth_utils import int_to_big_endian
from trie import HexaryTrie

from chain.account_db import KNOWN_ACCOUNTS, decode_account
from chain.errors import ChainError

#: Accounts one reader keeps decoded before it starts afresh.
MAX_ACCOUNTS = 4096
BLANK_ACCOUNT = Account()


class MissingCode(ChainError):
    """An account's code hash names code the database does not hold."""


class StateReader:
    """Read-only access to the state with root ``state_root`` in ``db``."""

    def __init__(self, db: DatabaseAPI, state_root: Hash32) -> None:
        self.db = db
        self.state_root = state_root
        self._trie = HexaryTrie(db, state_root)
        self._accounts: dict[bytes, Account] = {}

    def account(self, address: bytes) -> Account:
        """The account at ``address`` (a blank one when it does not exist)."""
        account = self._accounts.get(address)
        if account is None:
            known = KNOWN_ACCOUNTS.at(self.state_root)  # recorded when this root was computed
            encoded = known.get(address) if known is not None else None
            if encoded is None:
                encoded = self._trie.get(keccak(address))
            account = decode_account(encoded) if encoded else BLANK_ACCOUNT
            if len(self._accounts) >= MAX_ACCOUNTS:
                self._accounts.clear()
            self._accounts[address] = account
        return account

    def get_balance(self, address: Address) -> int:
        return int(self.account(address).balance)

    def get_nonce(self, address: Address) -> int:
        return int(self.account(address).nonce)

    def get_code_hash(self, address: Address) -> Hash32:
        return Hash32(self.account(address).code_hash)

    def get_code(self, address: Address) -> bytes:
        code_hash = self.account(address).code_hash
        if code_hash == EMPTY_SHA3:
            return b""
        try:
            return bytes(self.db[code_hash])
        except KeyError:
            raise MissingCode(f"code 0x{code_hash.hex()} of 0x{bytes(address).hex()} is not stored") from None

    def get_storage(self, address: Address, slot: int) -> int:
        storage_root = self.account(address).storage_root
        if storage_root == BLANK_ROOT_HASH:
            return 0
        encoded = HexaryTrie(self.db, storage_root).get(keccak(int_to_big_endian(slot).rjust(32, b"\0")))
        return int(rlp.decode(encoded, sedes=rlp.sedes.big_endian_int)) if encoded else 0

"""The well-known development accounts.

The first five keys of the public test mnemonic
"test test test test test test test test test test test junk" (m/44'/60'/0'/0/i), the
ones anvil and hardhat fund too, so that a wallet or script pointed at either node
finds the same accounts (``genesis/devkeys.py`` holds them; ``genesis/default.json`` and
``genesis/dev.json`` fund them). Anyone can spend from them: never use them where value
is at stake.
"""
from __future__ import annotations

from eth_keys.datatypes import PrivateKey
from eth_typing import Address

from genesis.devkeys import DEV_KEYS_HEX

DEV_KEYS: tuple[PrivateKey, ...] = tuple(PrivateKey(bytes.fromhex(h[2:])) for h in DEV_KEYS_HEX)
"""The same keys as eth-keys objects, the form py-evm's transaction signers take."""


def address_of(key: PrivateKey) -> Address:
    """The 20-byte account address of ``key``."""
    return Address(key.public_key.to_canonical_address())


DEV_ADDRESSES: tuple[Address, ...] = tuple(address_of(k) for k in DEV_KEYS)
ALICE, BOB, CAROL = DEV_KEYS[0], DEV_KEYS[1], DEV_KEYS[2]

MINER = Address(b"\xc0" * 20)
"""The coinbase the kit's blocks pay unless told otherwise: no key, so its rewards
show up only as a balance, never as a sender."""

__all__ = ["ALICE", "BOB", "CAROL", "DEV_ADDRESSES", "DEV_KEYS", "DEV_KEYS_HEX", "MINER", "address_of"]

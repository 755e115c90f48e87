"""The well-known development keys.

The first five keys of the public test mnemonic
"test test test test test test test test test test test junk" (m/44'/60'/0'/0/i), the
ones anvil and hardhat fund too, so that a wallet or script pointed at either node finds
the same accounts. ``default.json`` and ``dev.json`` fund them. Anyone can spend from
them: never use them where value is at stake. The node signs with them only on a
development genesis and only when asked (``pouw-node run --dev-accounts``).
"""
from __future__ import annotations

DEV_KEYS_HEX: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)
"""The keys as 0x-hex, the form eth-account, web3.py and ``pouw-node`` flags take."""

__all__ = ["DEV_KEYS_HEX"]

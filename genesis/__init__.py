"""Genesis files: the parameters of a chain (format documented in genesis/README.md)."""
from genesis.format import (
    DEFAULT_GENESIS_PATH,
    GenesisAccount,
    GenesisConfig,
    PouwParams,
    RewardEra,
    load_genesis,
    parse_genesis,
)
from genesis.errors import GenesisError


def load_default_genesis() -> GenesisConfig:
    """The devnet genesis that ships with the package (genesis/default.json)."""
    return load_genesis(DEFAULT_GENESIS_PATH)


__all__ = [
    "DEFAULT_GENESIS_PATH",
    "GenesisAccount",
    "GenesisConfig",
    "GenesisError",
    "PouwParams",
    "RewardEra",
    "load_default_genesis",
    "load_genesis",
    "parse_genesis",
]

"""Fixtures for chain tests: a dev genesis and a fresh chain per test."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from eth.db.atomic import AtomicDB

from chain.chain import Chain
from genesis.format import GenesisConfig
from tests.chain.helpers import dev_genesis, open_chain


@pytest.fixture
def genesis() -> GenesisConfig:
    return dev_genesis()


@pytest.fixture
def chain(genesis: GenesisConfig) -> Chain:
    return open_chain(AtomicDB(), genesis)


@pytest.fixture(params=["memory", "leveldb"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Each backend the chain runs on: py-evm's in-memory AtomicDB and our LevelDB."""
    if request.param == "memory":
        yield AtomicDB()
        return
    from chain.db import LevelDB

    db = LevelDB(tmp_path / "chaindata")
    try:
        yield db
    finally:
        db.close()

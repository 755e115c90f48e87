"""Fixtures shared with the chain tests (a dev genesis, a chain on it, every db backend)."""
from tests.chain.conftest import any_db, chain, genesis  # noqa: F401

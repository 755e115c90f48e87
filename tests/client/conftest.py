"""Fixtures shared with the rpc tests."""
from tests.rpc.conftest import *  # noqa: F401,F403

"""Session-wide test hygiene."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Tests run ``pouw-node`` commands in process, and ``node.logs.setup_logging`` sets
    the root logger's handlers and level, and ``logging.disable`` for --verbosity 0: put
    all three back after each test, so that no test silences the next one's logs."""
    root = logging.getLogger()
    handlers, level, disabled = list(root.handlers), root.level, logging.root.manager.disable
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.disable(disabled)

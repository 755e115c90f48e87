"""web3.py module tests that fail on our dev node, each with its reason (rpc/README.md
lists them). Filled from scripts/web3_suite.py's comparison with anvil."""
from __future__ import annotations

#: test name (without the Async class prefix) -> reason; applies to every mode.
KNOWN_FAILURES: dict[str, str] = {}

#: Failures in one mode only: mode -> {test name: reason}.
KNOWN_FAILURES_BY_MODE: dict[str, dict[str, str]] = {"automine": {}, "interval": {}}


def known_failure(test_name: str, mode: str) -> str | None:
    """The reason ``test_name`` is expected to fail in ``mode``, or None."""
    return KNOWN_FAILURES.get(test_name) or KNOWN_FAILURES_BY_MODE.get(mode, {}).get(test_name)

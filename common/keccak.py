"""keccak-256 for the whole process: eth-hash's ``pysha3`` backend when it is installed.

py-evm, trie, rlp-based code, eth-keys and eth-utils all hash through one object,
``eth_hash.auto.keccak``, whose backend eth-hash picks at the first hash: pycryptodome
first when both are installed (``ETH_HASH_BACKEND`` overrides). pycryptodome's keccak
costs about 4 us a call through ctypes and releases the GIL around each of its C calls,
so in the node, where the RPC threads, the block builder and the event loop share the
GIL, every hash of a trie node could wait for the GIL again. ``safe-pysha3`` (what
``eth-hash[pysha3]`` installs on Python >= 3.9) is a C extension: about 1.2 us a call,
and it keeps the GIL for inputs under 2 KiB. Measured with bench/bench_rpc.py: see
rpc/README.md ("Performance").

:func:`use_fast_keccak` runs when ``common`` is imported, so before any of our code
hashes; it switches the shared object even if something hashed before. An explicit
``ETH_HASH_BACKEND`` is left alone. The digests are the same (tests/test_keccak.py).
"""
from __future__ import annotations

import os


def use_fast_keccak() -> str:
    """Make ``eth_hash.auto.keccak`` use the pysha3 backend if it is installed and no
    backend was chosen through ``ETH_HASH_BACKEND``; returns the backend in use."""
    chosen = os.environ.get("ETH_HASH_BACKEND", "")
    if chosen:
        return chosen
    try:
        from eth_hash.backends import pysha3
    except ImportError:  # safe-pysha3 missing: eth-hash's own choice stays
        return "auto"
    import eth_hash.auto

    # setattr, as eth-hash itself sets these (its attributes are typed as its own methods)
    setattr(eth_hash.auto.keccak, "hasher", pysha3.keccak256)  # noqa: B010
    setattr(eth_hash.auto.keccak, "preimage", pysha3.preimage)  # noqa: B010
    return "pysha3"


BACKEND = use_fast_keccak()

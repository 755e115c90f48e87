"""What every package of the node shares, and nothing else: the root of all errors, the
process's keccak backend (common/keccak.py), chosen when this package is imported, and
a byte-bounded LRU map (common/lru.py).

The lowest layer: it imports nothing of ours (docs/layout.md, "Dependencies").
"""
from common import keccak as _keccak  # noqa: F401 - chooses the fast keccak backend

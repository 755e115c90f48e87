"""chain package. Importing it installs chain/speedups.py's faster trie and rlp helpers
for the whole process (the same results, less time)."""
from chain import speedups as _speedups

_speedups.install()

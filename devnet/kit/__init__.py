"""The development kit: what benchmarks, tests and local tooling need to stand up a
chain, a node or a small network on this machine, with well-known keys.

Import from the module that holds the piece (the package itself imports nothing, so
``devnet.cli`` can take the dev keys without loading py-evm, torch or aiohttp):

- ``accounts.py``: the public test mnemonic's five keys, their addresses, a coinbase;
- ``transactions.py``: signed transactions of each type from those keys (``transfer``);
- ``genesis.py``: genesis builders: noproof, tiny-job pouw, ``genesis/dev.json``;
- ``chains.py``: a clock the caller moves, so block timestamps never wait on time;
- ``mining.py``: honest proof-of-useful-work mining of one block, on CPU;
- ``p2pnode.py``: ``TestNode``: chain, pool and P2P service in this process;
- ``processes.py``: ``DevNode``: ``pouw-node run`` or anvil in a process of its own;
- ``contract.py``: a tiny storage contract assembled by hand (no compiler needed).

Everything here is for development and measurement: the keys are public, the clocks
are fixed, nothing is meant to hold value.
"""

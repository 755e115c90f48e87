"""A local devnet: N nodes on this machine, M of them mining (``pouw-devnet``).

- ``cli.py``: ``pouw-devnet up | status | down | reset | kill`` (the README's first command);
- ``node.py``: the node process the devnet starts (``pouw-node run`` plus p2p options).
"""

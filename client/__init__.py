"""Clients of a node, apart from the server: the web3.py ``pouw`` module and the
``pouw-node job|rewards|account|dataset`` tools. They speak JSON-RPC to a node (any node)
and import nothing of the server (docs/layout.md)."""

"""The node, assembled: datadirs, the running node (chain, pool, RPC, p2p, miner,
automine), block files, the `pouw-node` command. The top of the package graph: it
imports every other package, and none of them imports it (docs/layout.md)."""

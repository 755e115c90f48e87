"""What every package of the node shares, and nothing else: the root of all errors.

The lowest layer: it imports nothing of ours (docs/layout.md, "Dependencies").
"""

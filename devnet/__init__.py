"""A local devnet and the development kit: the top layer, which may import every other
package of ours and which none of them imports.

- ``cli.py``: ``pouw-devnet up | status | down | reset | kill | partition | heal``: N
  ``pouw-node run`` processes on this machine, M of them mining (the README's first command);
- ``kit/``: the development kit that benchmarks, tests and local tooling share: dev keys,
  genesis builders, honest mining, in-process and subprocess nodes (``kit/__init__.py``);
- ``errors.py``: ``DevnetError``, the root of this package's errors.
"""

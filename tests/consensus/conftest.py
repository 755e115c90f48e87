"""Consensus tests: the registry precompile is registered by chain/vm.py's PouwComputation."""

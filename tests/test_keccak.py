"""The process's keccak backend (common/keccak.py): the fast one, with the same digests."""
from __future__ import annotations

import os
import subprocess
import sys

import eth_hash.auto
from eth_hash.backends import pycryptodome, pysha3
from eth_utils import keccak

import common.keccak


def test_importing_our_code_selects_pysha3() -> None:
    if os.environ.get("ETH_HASH_BACKEND"):
        return  # the user's choice is kept: nothing to check here
    assert common.keccak.BACKEND == "pysha3"
    assert eth_hash.auto.keccak.hasher == pysha3.keccak256


def test_pysha3_and_pycryptodome_agree_on_every_length_class() -> None:
    for size in (0, 1, 31, 32, 33, 135, 136, 137, 2047, 2048, 2049, 100_000, 1 << 20):
        data = bytes((i * 131 + size) % 251 for i in range(size))
        assert pysha3.keccak256(data) == pycryptodome.keccak256(data) == keccak(data)
    assert keccak(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"


def test_switch_applies_even_after_something_hashed_first() -> None:
    code = (
        "import eth_hash.auto; eth_hash.auto.keccak(b'x');"  # py-evm-style early hash
        "import common, eth_hash.backends.pysha3 as p;"
        "print(eth_hash.auto.keccak.hasher == p.keccak256)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ETH_HASH_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "True"


def test_an_explicit_backend_choice_is_left_alone() -> None:
    code = (
        "import common.keccak as k, eth_hash.auto as a, eth_hash.backends.pycryptodome as c; a.keccak(b'');"
        "print(k.BACKEND, a.keccak.hasher == c.keccak256)"
    )
    env = dict(os.environ, ETH_HASH_BACKEND="pycryptodome")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["pycryptodome", "True"]

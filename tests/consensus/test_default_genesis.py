"""The default devnet genesis is a pouw chain whose standing job trains on the built-in digits set."""
from __future__ import annotations

import pytest

from consensus.jobs import digits_dataset_id
from node.mining import MiningRefused, check_mining_allowed, parse_coinbase
from consensus.params import config_from_genesis
from genesis.format import DEFAULT_GENESIS_PATH, load_genesis
from pouw.families import get_family


def test_default_genesis_has_a_standing_job_on_the_builtin_digits() -> None:
    genesis = load_genesis(DEFAULT_GENESIS_PATH)
    assert genesis.seal_engine == "pouw"
    config = config_from_genesis(genesis)
    assert config.standing_jobs, "the default genesis needs a standing job so blocks keep coming"
    spec = config.standing_jobs[0]
    assert spec.dataset == digits_dataset_id()  # generated offline, identical on every machine
    w = get_family(spec.family).work_units(spec)
    # a block is about D / w steps: between a handful and MAX_STEPS_PER_BLOCK at the initial difficulty
    assert 10 <= genesis.initial_difficulty // w <= 10_000
    check_mining_allowed(genesis)


def test_invalid_mining_options() -> None:
    from tests.chain.helpers import dev_genesis

    with pytest.raises(MiningRefused):
        check_mining_allowed(dev_genesis())
    for bad in (None, "", "0x12", "f39fd6e51aad88f6f4ce6ab8827279cfffb92266", "0xF39fd6e51aad88f6f4ce6ab8827279cfffb92266"):
        with pytest.raises(MiningRefused):
            parse_coinbase(bad)
    assert parse_coinbase("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266") == bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")

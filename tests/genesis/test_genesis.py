"""The genesis file: the default loads, every bad field is refused by name, and the
genesis block hash is a deterministic function of the file."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from eth.db.atomic import AtomicDB

from chain.chain import Chain
from chain.sealing import NoProofEngine
from genesis import GenesisError, load_default_genesis, load_genesis, parse_genesis
from genesis.format import DEFAULT_GENESIS_PATH

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def raw() -> dict[str, Any]:
    return json.loads(DEFAULT_GENESIS_PATH.read_text())


def genesis_hash(config) -> bytes:
    return Chain.open(AtomicDB(), config, seal_engine=NoProofEngine).genesis_hash


def test_default_genesis_loads() -> None:
    g = load_default_genesis()
    assert g.chain_id == 7357
    assert g.seal_engine == "pouw" and not g.is_dev_only
    assert g.target_block_time == 5
    assert len(g.alloc) == 5
    assert g.alloc[bytes.fromhex(ALICE[2:])].balance == 10_000 * 10**18
    assert g.block_reward(0) == g.block_reward(999_999) == 2 * 10**18
    assert g.block_reward(1_000_000) == 10**18
    assert g.pouw.challenge_count >= 1
    assert g.difficulty_params.minimum_difficulty <= g.initial_difficulty <= g.maximum_difficulty == 2**128
    assert (g.retarget_window, g.retarget_smoothing) == (90, 15)  # defaults: absent from the file


def test_numbers_as_int_or_hex_and_full_account() -> None:
    r = raw()
    r["alloc"] = {
        "0x00000000000000000000000000000000000000aa": {
            "balance": "0x10", "nonce": 3, "code": "0x6000", "storage": {"0x01": "0x02", "3": 0},
        }
    }
    with pytest.raises(GenesisError, match=r"alloc\.0x0+aa\.storage\.3: expected a non-negative integer"):
        parse_genesis(r)
    r["alloc"]["0x00000000000000000000000000000000000000aa"]["storage"] = {"0x01": "0x02", "0x04": 0}
    g = parse_genesis(r)
    account = g.alloc[b"\x00" * 19 + b"\xaa"]
    assert (account.balance, account.nonce, account.code) == (16, 3, b"\x60\x00")
    assert dict(account.storage) == {1: 2}  # zero values are not stored


def test_genesis_hash_is_deterministic_and_covers_the_file() -> None:
    g = load_default_genesis()
    assert genesis_hash(g) == genesis_hash(load_genesis(DEFAULT_GENESIS_PATH))
    r = raw()
    r["alloc"][ALICE]["balance"] = "0x1"
    assert genesis_hash(parse_genesis(r)) != genesis_hash(g)
    r = raw()
    r["extraData"] = "0x00"
    assert genesis_hash(parse_genesis(r)) != genesis_hash(g)
    # parameters outside the header and state are committed too
    for section, key, value in [("consensus", "targetBlockTime", 6), ("pouw", "challengeCount", 9),
                                (None, "chainId", 7358), ("consensus", "coinbaseMaturity", 1),
                                ("consensus", "retargetWindow", 30), ("consensus", "maximumDifficulty", 2**100)]:
        r = raw()
        (r if section is None else r[section])[key] = value
        assert genesis_hash(parse_genesis(r)) != genesis_hash(g), key
    # ... but not their spelling
    r = raw()
    r["gasLimit"] = hex(r["gasLimit"])
    r["comment"] = "another comment"
    assert genesis_hash(parse_genesis(r)) == genesis_hash(g)


def test_noproof_is_flagged_dev_only() -> None:
    r = raw()
    r["consensus"]["sealEngine"] = "noproof"
    assert parse_genesis(r).is_dev_only


def test_config_is_frozen() -> None:
    g = load_default_genesis()
    with pytest.raises(Exception):
        g.chain_id = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        g.alloc[b"\x00" * 20] = None  # type: ignore[index]


# --- refusals: each names its field -------------------------------------------------


def refuse(field_pattern: str, mutate) -> None:
    r = copy.deepcopy(raw())
    mutate(r)
    with pytest.raises(GenesisError, match=field_pattern) as info:
        parse_genesis(r)
    assert info.value.field


def test_invalid_balance_negative() -> None:
    def mutate(r):
        r["alloc"][ALICE]["balance"] = "-5"

    refuse(rf'alloc\.{ALICE}\.balance: expected a non-negative integer or 0x-hex string, got "-5"', mutate)


def test_invalid_balance_decimal_string_and_float() -> None:
    refuse(r"alloc\..*\.balance", lambda r: r["alloc"][ALICE].update(balance="100"))
    refuse(r"alloc\..*\.balance", lambda r: r["alloc"][ALICE].update(balance=1.5))
    refuse(r"alloc\..*\.balance", lambda r: r["alloc"][ALICE].update(balance=True))
    refuse(r"alloc\..*\.balance: expected a value in", lambda r: r["alloc"][ALICE].update(balance=2**256))


def test_invalid_nonce() -> None:
    refuse(r"alloc\..*\.nonce", lambda r: r["alloc"][ALICE].update(nonce=-1))


def test_invalid_code() -> None:
    refuse(r"alloc\..*\.code: expected 0x-prefixed hex bytes", lambda r: r["alloc"][ALICE].update(code="0x6"))
    refuse(r"alloc\..*\.code: expected 0x-prefixed hex bytes", lambda r: r["alloc"][ALICE].update(code="60"))


def test_invalid_storage() -> None:
    refuse(r"alloc\..*\.storage: expected a JSON object", lambda r: r["alloc"][ALICE].update(storage=[1]))
    refuse(r"alloc\..*\.storage\.0x01", lambda r: r["alloc"][ALICE].update(storage={"0x01": "zz"}))


def test_invalid_account_unknown_field() -> None:
    refuse(r"alloc\..*\.balanse: unknown field", lambda r: r["alloc"][ALICE].update(balanse=1))


def test_invalid_address() -> None:
    refuse(r"alloc\.0x1234: expected a 0x-prefixed 20-byte hex address", lambda r: r["alloc"].update({"0x1234": {}}))
    bad_checksum = ALICE[:-1] + ALICE[-1].lower() if ALICE[-1].isupper() else ALICE.replace("f", "F", 1)
    refuse(r"EIP-55 checksum", lambda r: r["alloc"].update({bad_checksum: {}}))


def test_invalid_duplicate_address() -> None:
    refuse(r"address listed twice", lambda r: r["alloc"].update({ALICE.lower(): {"balance": 1}}))


def test_invalid_chain_id() -> None:
    refuse(r"^chainId: expected a value in \[1,", lambda r: r.update(chainId=0))
    refuse(r"^chainId: expected a non-negative", lambda r: r.update(chainId="7357"))


def test_invalid_top_level_fields() -> None:
    refuse(r"^timestamp", lambda r: r.update(timestamp=-1))
    refuse(r"^extraData: at most 32 bytes", lambda r: r.update(extraData="0x" + "00" * 33))
    refuse(r"^gasLimit: expected a value in \[5000", lambda r: r.update(gasLimit=100))
    refuse(r"^baseFeePerGas", lambda r: r.update(baseFeePerGas="0x"))
    refuse(r"^maxBlockBytes", lambda r: r.update(maxBlockBytes=10))
    refuse(r"^maxTransactionBytes", lambda r: r.update(maxTransactionBytes=None))
    refuse(r"^alloc: expected a JSON object", lambda r: r.update(alloc=[]))
    refuse(r"^chainID: unknown field", lambda r: r.update(chainID=1))
    refuse(r"^consensus: missing required field", lambda r: r.pop("consensus"))
    refuse(r"^gasLimit: missing required field", lambda r: r.pop("gasLimit"))


def test_invalid_consensus_fields() -> None:
    refuse(r"consensus\.sealEngine: expected one of", lambda r: r["consensus"].update(sealEngine="ethash"))
    refuse(r"consensus\.targetBlockTime", lambda r: r["consensus"].update(targetBlockTime=0))
    refuse(r"consensus\.minimumDifficulty", lambda r: r["consensus"].update(minimumDifficulty=0))
    refuse(r"consensus\.initialDifficulty: must be >= minimumDifficulty",
           lambda r: r["consensus"].update(initialDifficulty=10, minimumDifficulty=100))
    refuse(r"consensus\.maxAdjustDownPercent", lambda r: r["consensus"].update(maxAdjustDownPercent=100))
    refuse(r"consensus\.maxAdjustUpPercent", lambda r: r["consensus"].update(maxAdjustUpPercent=0))
    refuse(r"consensus\.coinbaseMaturity", lambda r: r["consensus"].update(coinbaseMaturity="ten"))
    refuse(r"consensus\.maximumDifficulty: must be >= initialDifficulty",
           lambda r: r["consensus"].update(maximumDifficulty=r["consensus"]["initialDifficulty"] - 1))
    refuse(r"consensus\.maximumDifficulty: expected a value in", lambda r: r["consensus"].update(maximumDifficulty=2**192 + 1))
    refuse(r"consensus\.retargetWindow", lambda r: r["consensus"].update(retargetWindow=0))
    refuse(r"consensus\.retargetSmoothing", lambda r: r["consensus"].update(retargetSmoothing=0))
    refuse(r"consensus\.blockReward: expected a JSON list", lambda r: r["consensus"].update(blockReward={}))
    refuse(r"consensus\.blockReward\.1\.fromBlock: eras must be in strictly increasing order",
           lambda r: r["consensus"].update(blockReward=[{"fromBlock": 5, "reward": 1}, {"fromBlock": 5, "reward": 2}]))
    refuse(r"consensus\.blockReward\.0\.reward", lambda r: r["consensus"].update(blockReward=[{"fromBlock": 0, "reward": "-1"}]))
    refuse(r"consensus\.blockReward\.0\.fromBlock: missing", lambda r: r["consensus"].update(blockReward=[{"reward": 1}]))


def test_invalid_pouw_fields() -> None:
    refuse(r"pouw\.challengeCount", lambda r: r["pouw"].update(challengeCount=0))
    refuse(r"pouw\.maxStateBytes", lambda r: r["pouw"].update(maxStateBytes=0))
    refuse(r"pouw\.maxDatasetBytes", lambda r: r["pouw"].pop("maxDatasetBytes"))
    refuse(r"pouw\.maxWorkUnitsPerStep", lambda r: r["pouw"].update(maxWorkUnitsPerStep=-3))
    refuse(r"pouw\.standingJobs\.0: expected a JSON object", lambda r: r["pouw"].update(standingJobs=["mlp"]))
    refuse(r"pouw\.k: unknown field", lambda r: r["pouw"].update(k=3))


def test_standing_jobs_stay_opaque() -> None:
    r = raw()
    r["pouw"]["standingJobs"] = [{"family": "mlp", "anything": [1, 2]}]
    g = parse_genesis(r)
    assert g.pouw.standing_jobs[0]["anything"] == [1, 2]


def test_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "g.json"
    bad.write_text("{ not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(bad)
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "missing.json")
    bad.write_text('{"comment": ' + "[" * 200_000 + "]" * 200_000 + "}")
    with pytest.raises(GenesisError, match="nested deeper"):  # refused before json.loads
        load_genesis(bad)

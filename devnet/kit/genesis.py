"""Genesis builders for development chains.

Three kinds, each built from a shipped file so that it follows that file's changes:

- :func:`noproof_genesis`: ``genesis/default.json`` with the no-proof seal engine: the
  EVM, fees and every header rule, without training (fast chains for the EVM and P2P);
- :func:`pouw_genesis`: ``genesis/default.json`` with proof of useful work on a tiny
  standing job (an MLP on the digits set) and a difficulty of a handful of steps, so
  that honest CPU mining of a block takes well under a second;
- :func:`dev_genesis_dict`: ``genesis/dev.json``, the file ``pouw-node init`` is given
  for a development node (noproof, chain id 1337 as anvil's).
"""
from __future__ import annotations

import json
from pathlib import Path

from consensus.jobs import digits_dataset_id
from genesis.format import DEFAULT_GENESIS_PATH, GenesisConfig, parse_genesis
from node.node import DEV_GENESIS_PATH
from pouw.families import get_family
from pouw.spec import JobSpec

JSONObject = dict[str, object]
"""A parsed JSON object whose values the caller narrows before use."""


def _object(parent: JSONObject, key: str) -> JSONObject:
    """``parent[key]``, which a genesis file holds as a JSON object."""
    child = parent[key]
    if not isinstance(child, dict):
        raise TypeError(f"genesis field {key}: expected an object, got {type(child).__name__}")
    return child


def _read(path: Path) -> JSONObject:
    raw = json.loads(path.read_text())
    if not isinstance(raw, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw


def default_genesis_dict() -> JSONObject:
    """A fresh parsed copy of ``genesis/default.json`` (the caller may change it)."""
    return _read(DEFAULT_GENESIS_PATH)


def noproof_genesis(**consensus: int) -> GenesisConfig:
    """The default genesis with the no-proof seal engine, and ``consensus.*`` fields
    overridden by name (``initialDifficulty=1000``)."""
    raw = default_genesis_dict()
    section = _object(raw, "consensus")
    section["sealEngine"] = "noproof"
    section.update(consensus)
    return parse_genesis(raw)


def tiny_spec(steps: int = 1_000_000, hidden: int = 4, batch: int = 4, **extra: object) -> JSONObject:
    """A job spec small enough to train on any CPU in microseconds per step: an MLP
    64 -> ``hidden`` -> 10 on the digits set; ``extra`` overrides any spec field."""
    spec: JSONObject = {
        "family": "mlp", "dataset": digits_dataset_id(), "input_shape": [64], "num_classes": 10,
        "hidden": [hidden], "batch_size": batch, "lr_shift": 4, "momentum_shift": None, "steps": steps,
    }
    spec.update(extra)
    return spec


def tiny_work_units() -> int:
    """Work units of one step of :func:`tiny_spec`: the unit difficulty is measured in."""
    return get_family("mlp").work_units(JobSpec.from_dict(tiny_spec()))


def pouw_genesis_dict(*, expected_steps: int = 6, k: int = 3, maturity: int = 2, **consensus: int) -> JSONObject:
    """The default genesis file with the pouw engine, :func:`tiny_spec` as its one
    standing job, ``k`` challenged segments, a coinbase maturity of ``maturity`` blocks
    and a starting and minimum difficulty of about ``expected_steps`` steps per block;
    ``consensus.*`` fields overridden by name. The dict, for writing a genesis file."""
    raw = default_genesis_dict()
    difficulty = tiny_work_units() * expected_steps
    section = _object(raw, "consensus")
    section.update({"sealEngine": "pouw", "initialDifficulty": difficulty, "minimumDifficulty": difficulty,
                    "coinbaseMaturity": maturity})
    section.update(consensus)
    pouw = _object(raw, "pouw")
    pouw["challengeCount"] = k
    pouw["standingJobs"] = [tiny_spec()]
    return raw


def pouw_genesis(*, expected_steps: int = 6, k: int = 3, maturity: int = 2, **consensus: int) -> GenesisConfig:
    """:func:`pouw_genesis_dict`, parsed, with the difficulty held within 1 % a block
    (unless overridden), so that a run's block cost stays about ``expected_steps``."""
    held = {"maxAdjustUpPercent": 1, "maxAdjustDownPercent": 1, **consensus}
    return parse_genesis(pouw_genesis_dict(expected_steps=expected_steps, k=k, maturity=maturity, **held))


def dev_genesis_dict(chain_id: int | None = None, alloc: dict[str, int] | None = None) -> JSONObject:
    """``genesis/dev.json``, optionally with another chain id and more funded accounts
    (address -> balance in wei)."""
    raw = _read(DEV_GENESIS_PATH)
    if chain_id is not None:
        raw["chainId"] = chain_id
    accounts = _object(raw, "alloc")
    for address, balance in (alloc or {}).items():
        accounts[address] = {"balance": hex(balance)}
    return raw


__all__ = [
    "JSONObject", "default_genesis_dict", "dev_genesis_dict", "noproof_genesis",
    "pouw_genesis", "pouw_genesis_dict", "tiny_spec", "tiny_work_units",
]

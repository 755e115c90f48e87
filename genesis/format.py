"""The genesis file: every parameter of a chain, read once and checked field by field.

The file format is documented in ``genesis/README.md``. :func:`load_genesis` turns a
path or a parsed dict into a frozen :class:`GenesisConfig`, or refuses it with a
:class:`~genesis.errors.GenesisError` whose message starts with the dotted path of the
offending field (``alloc.0xabc….balance: expected ...``), so a user can fix the file
without reading code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Final, Mapping, TypeVar

from eth_utils import is_checksum_address, keccak, to_canonical_address

from eth_typing import Address

import safejson
from genesis.errors import GenesisError

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1
MAX_COINBASE_MATURITY = 256
"""Fraud proofs name an ancestor within the audit window (= coinbase maturity) by its
hash among the last 256 (the EVM's BLOCKHASH range), so the window is at most 256."""

MAX_EXTRA_DATA_BYTES = 32
SEAL_ENGINES = ("pouw", "noproof")
"""``noproof`` accepts any seal: for tests and local development only."""

# --- the difficulty retarget's parameters (the rule itself: chain/difficulty.py) -----

DEFAULT_WINDOW: Final = 90
"""Blocks per measured span (genesis ``consensus.retargetWindow``)."""
DEFAULT_SMOOTHING: Final = 15
"""Consecutive spans averaged; each end of the window is the mean of this many
timestamps (genesis ``consensus.retargetSmoothing``)."""
DEFAULT_MAXIMUM_DIFFICULTY: Final = 2**128
"""Ceiling of every difficulty (genesis ``consensus.maximumDifficulty``)."""
MAXIMUM_DIFFICULTY_LIMIT: Final = 2**192
"""No genesis may set a higher ceiling: 2**64 blocks at 2**192 keep the score < 2**256."""


@dataclass(frozen=True)
class DifficultyParams:
    """The genesis parameters of the retarget rule."""

    target_block_time: int
    """Seconds the chain aims for between blocks."""
    minimum_difficulty: int
    """Floor for every block's difficulty (>= 1: every block adds to the score)."""
    max_adjust_up_percent: int
    """Largest increase from one block to the next, in percent of the parent's."""
    max_adjust_down_percent: int
    """Largest decrease from one block to the next, in percent of the parent's (< 100)."""
    maximum_difficulty: int = DEFAULT_MAXIMUM_DIFFICULTY
    """Ceiling for every block's difficulty, so no value overflows 2**256."""
    window: int = DEFAULT_WINDOW
    """Blocks per measured span: longer smooths more, shorter reacts faster."""
    smoothing: int = DEFAULT_SMOOTHING
    """Spans averaged: each end of the window is the mean of this many timestamps, so
    one manipulated timestamp counts 1/smoothing of its error."""



DEFAULT_GENESIS_PATH = Path(__file__).with_name("default.json")


# --- Data types ----------------------------------------------------------------------


@dataclass(frozen=True)
class GenesisAccount:
    """One pre-funded or pre-deployed account of the genesis state."""

    balance: int
    nonce: int
    code: bytes
    storage: Mapping[int, int]


@dataclass(frozen=True)
class RewardEra:
    """From block ``from_block`` on (until the next era), the coinbase earns ``reward`` wei."""

    from_block: int
    reward: int


@dataclass(frozen=True)
class PouwParams:
    """Parameters of the proof-of-useful-work seal engine (checked by that engine)."""

    challenge_count: int
    """k: steps recomputed at random per block besides the ticket step."""
    max_state_bytes: int
    """Bound on one serialized model state; bounds the work payload."""
    max_dataset_bytes: int
    """Bound on a job's dataset."""
    max_work_units_per_step: int
    """Bound on the cost of one step, so one recomputation stays cheap to verify."""
    standing_jobs: tuple[Mapping[str, Any], ...]
    """Job specs miners train when no paid job is open. Opaque here; the pouw engine
    validates them."""


@dataclass(frozen=True)
class GenesisConfig:
    """Everything a node needs to know about a chain before its first block."""

    chain_id: int
    """EIP-155 chain id: signed transactions name it, so they cannot replay elsewhere."""
    timestamp: int
    extra_data: bytes
    gas_limit: int
    base_fee_per_gas: int
    max_block_bytes: int
    """Consensus bound on an encoded block (header + body), checked before decoding."""
    max_transaction_bytes: int
    """Consensus bound on one encoded transaction."""
    alloc: Mapping[Address, GenesisAccount]
    seal_engine: str
    target_block_time: int
    initial_difficulty: int
    minimum_difficulty: int
    max_adjust_up_percent: int
    max_adjust_down_percent: int
    maximum_difficulty: int
    """Ceiling of every block's difficulty (so no value, and no score, overflows)."""
    retarget_window: int
    """Blocks per span the retarget measures (chain/difficulty.py)."""
    retarget_smoothing: int
    """Spans averaged: how many timestamps each end of the window is the mean of."""
    block_rewards: tuple[RewardEra, ...]
    coinbase_maturity: int
    pouw: PouwParams

    @property
    def difficulty_params(self) -> DifficultyParams:
        return DifficultyParams(
            target_block_time=self.target_block_time,
            minimum_difficulty=self.minimum_difficulty,
            max_adjust_up_percent=self.max_adjust_up_percent,
            max_adjust_down_percent=self.max_adjust_down_percent,
            maximum_difficulty=self.maximum_difficulty,
            window=self.retarget_window,
            smoothing=self.retarget_smoothing,
        )

    @property
    def is_dev_only(self) -> bool:
        """True for genesis files that must never run a public network (no proof)."""
        return self.seal_engine == "noproof"

    @property
    def parameters_hash(self) -> bytes:
        """keccak256 of the canonical JSON of every parameter except ``alloc`` (which the
        genesis state root commits to). The genesis header carries it (as its
        ``work_accumulator``), so chains that differ in any parameter, not only in
        their genesis state, have different genesis hashes."""
        return keccak(canonical_parameters_json(self).encode())

    def block_reward(self, block_number: int) -> int:
        """The reward of the last era starting at or before ``block_number``."""
        reward = 0
        for era in self.block_rewards:
            if era.from_block <= block_number:
                reward = era.reward
        return reward


def canonical_parameters_json(config: GenesisConfig) -> str:
    """Every field but ``alloc``, numbers as JSON integers, bytes as 0x-hex, keys sorted,
    no whitespace: one text per configuration, whatever the file's spelling."""
    params = {
        "chainId": config.chain_id,
        "timestamp": config.timestamp,
        "extraData": "0x" + config.extra_data.hex(),
        "gasLimit": config.gas_limit,
        "baseFeePerGas": config.base_fee_per_gas,
        "maxBlockBytes": config.max_block_bytes,
        "maxTransactionBytes": config.max_transaction_bytes,
        "consensus": {
            "sealEngine": config.seal_engine,
            "targetBlockTime": config.target_block_time,
            "initialDifficulty": config.initial_difficulty,
            "minimumDifficulty": config.minimum_difficulty,
            "maxAdjustUpPercent": config.max_adjust_up_percent,
            "maxAdjustDownPercent": config.max_adjust_down_percent,
            "maximumDifficulty": config.maximum_difficulty,
            "retargetWindow": config.retarget_window,
            "retargetSmoothing": config.retarget_smoothing,
            "blockReward": [{"fromBlock": e.from_block, "reward": e.reward} for e in config.block_rewards],
            "coinbaseMaturity": config.coinbase_maturity,
        },
        "pouw": {
            "challengeCount": config.pouw.challenge_count,
            "maxStateBytes": config.pouw.max_state_bytes,
            "maxDatasetBytes": config.pouw.max_dataset_bytes,
            "maxWorkUnitsPerStep": config.pouw.max_work_units_per_step,
            "standingJobs": [dict(job) for job in config.pouw.standing_jobs],
        },
    }
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# --- Loading -------------------------------------------------------------------------


GENESIS_JSON_DEPTH = 32
"""A genesis file nests about 5 deep; deeper text is refused before parsing (safejson)."""


def loads_genesis_json(text: str) -> Any:
    """Parse a genesis file's text, its nesting bounded first (ValueError if bad)."""
    return safejson.loads(text, max_depth=GENESIS_JSON_DEPTH)


def load_genesis(source: str | Path | Mapping[str, Any]) -> GenesisConfig:
    """Read and check a genesis file (a path, or an already parsed JSON object)."""
    if isinstance(source, Mapping):
        raw = source
    else:
        try:
            raw = loads_genesis_json(Path(source).read_text())
        except OSError as exc:
            raise GenesisError("genesis", f"cannot read {source}: {exc.strerror}") from None
        except ValueError as exc:
            raise GenesisError("genesis", f"not valid JSON: {exc}") from None
    return parse_genesis(raw)


def parse_genesis(raw: Mapping[str, Any]) -> GenesisConfig:
    """Check every field of a parsed genesis object; see genesis/README.md."""
    top = _Obj(raw, "genesis")
    top.allow_only(
        "chainId", "timestamp", "extraData", "gasLimit", "baseFeePerGas", "maxBlockBytes",
        "maxTransactionBytes", "alloc", "consensus", "pouw", "comment",
    )
    consensus = _Obj(top.required("consensus", _is_object), "consensus")
    consensus.allow_only(
        "sealEngine", "targetBlockTime", "initialDifficulty", "minimumDifficulty",
        "maxAdjustUpPercent", "maxAdjustDownPercent", "maximumDifficulty", "retargetWindow",
        "retargetSmoothing", "blockReward", "coinbaseMaturity",
    )
    pouw = _Obj(top.required("pouw", _is_object), "pouw")
    pouw.allow_only(
        "challengeCount", "maxStateBytes", "maxDatasetBytes", "maxWorkUnitsPerStep", "standingJobs",
    )

    seal_engine = consensus.required("sealEngine", _is_str)
    if seal_engine not in SEAL_ENGINES:
        raise GenesisError("consensus.sealEngine", f"expected one of {SEAL_ENGINES}, got {seal_engine!r}")

    minimum_difficulty = consensus.number("minimumDifficulty", low=1)
    initial_difficulty = consensus.number("initialDifficulty", low=1)
    if initial_difficulty < minimum_difficulty:
        raise GenesisError(
            "consensus.initialDifficulty",
            f"must be >= minimumDifficulty ({minimum_difficulty}), got {initial_difficulty}",
        )
    maximum_difficulty = consensus.number(
        "maximumDifficulty", default=DEFAULT_MAXIMUM_DIFFICULTY, low=1, high=MAXIMUM_DIFFICULTY_LIMIT
    )
    if maximum_difficulty < initial_difficulty:
        raise GenesisError(
            "consensus.maximumDifficulty",
            f"must be >= initialDifficulty ({initial_difficulty}), got {maximum_difficulty}",
        )

    return GenesisConfig(
        chain_id=top.number("chainId", low=1, high=UINT64_MAX),
        timestamp=top.number("timestamp", high=UINT64_MAX),
        extra_data=top.hex_bytes("extraData", default=b"", max_len=MAX_EXTRA_DATA_BYTES),
        gas_limit=top.number("gasLimit", low=5000, high=2**63 - 1),
        base_fee_per_gas=top.number("baseFeePerGas", high=UINT256_MAX),
        max_block_bytes=top.number("maxBlockBytes", low=1024),
        max_transaction_bytes=top.number("maxTransactionBytes", low=128),
        alloc=_parse_alloc(top.required("alloc", _is_object)),
        seal_engine=seal_engine,
        target_block_time=consensus.number("targetBlockTime", low=1),
        initial_difficulty=initial_difficulty,
        minimum_difficulty=minimum_difficulty,
        max_adjust_up_percent=consensus.number("maxAdjustUpPercent", low=1, high=1000),
        max_adjust_down_percent=consensus.number("maxAdjustDownPercent", low=1, high=99),
        maximum_difficulty=maximum_difficulty,
        retarget_window=consensus.number("retargetWindow", default=DEFAULT_WINDOW, low=1, high=10_000),
        retarget_smoothing=consensus.number("retargetSmoothing", default=DEFAULT_SMOOTHING, low=1, high=1_000),
        block_rewards=_parse_rewards(consensus.required("blockReward", _is_list)),
        # the audit window: a fraud proof names its block by the last 256 block hashes
        coinbase_maturity=consensus.number("coinbaseMaturity", high=MAX_COINBASE_MATURITY),
        pouw=PouwParams(
            challenge_count=pouw.number("challengeCount", low=1, high=1024),
            max_state_bytes=pouw.number("maxStateBytes", low=1),
            max_dataset_bytes=pouw.number("maxDatasetBytes", low=1),
            max_work_units_per_step=pouw.number("maxWorkUnitsPerStep", low=1),
            standing_jobs=_parse_standing_jobs(pouw.get("standingJobs", [], _is_list)),
        ),
    )


def _parse_alloc(raw: Mapping[str, Any]) -> Mapping[Address, GenesisAccount]:
    accounts: dict[Address, GenesisAccount] = {}
    for key, value in raw.items():
        where = f"alloc.{key}"
        address = _parse_address(key, where)
        if address in accounts:
            raise GenesisError(where, "address listed twice")
        obj = _Obj(_check(value, _is_object, where), where)
        obj.allow_only("balance", "nonce", "code", "storage", "comment")
        storage_raw = _Obj(obj.get("storage", {}, _is_object), f"{where}.storage")
        storage = {
            _parse_number(slot, f"{where}.storage.{slot}", UINT256_MAX): storage_raw.number(slot, high=UINT256_MAX)
            for slot in storage_raw.raw
        }
        accounts[address] = GenesisAccount(
            balance=obj.number("balance", default=0, high=UINT256_MAX),
            nonce=obj.number("nonce", default=0, high=UINT64_MAX - 1),
            code=obj.hex_bytes("code", default=b"", max_len=24576),
            storage=MappingProxyType({k: v for k, v in storage.items() if v != 0}),
        )
    return MappingProxyType(accounts)


def _parse_rewards(raw: list[Any]) -> tuple[RewardEra, ...]:
    eras = []
    for i, item in enumerate(raw):
        obj = _Obj(_check(item, _is_object, f"consensus.blockReward.{i}"), f"consensus.blockReward.{i}")
        obj.allow_only("fromBlock", "reward")
        eras.append(RewardEra(obj.number("fromBlock"), obj.number("reward", high=UINT256_MAX)))
    for i in range(1, len(eras)):
        if eras[i].from_block <= eras[i - 1].from_block:
            raise GenesisError(
                f"consensus.blockReward.{i}.fromBlock",
                f"eras must be in strictly increasing order, got {eras[i].from_block} after {eras[i - 1].from_block}",
            )
    return tuple(eras)


def _parse_standing_jobs(raw: list[Any]) -> tuple[Mapping[str, Any], ...]:
    for i, job in enumerate(raw):
        _check(job, _is_object, f"pouw.standingJobs.{i}")
    return tuple(MappingProxyType(dict(job)) for job in raw)


def _parse_address(text: str, where: str) -> Address:
    if not (isinstance(text, str) and text.startswith("0x") and len(text) == 42 and _is_hex(text[2:])):
        raise GenesisError(where, f"expected a 0x-prefixed 20-byte hex address, got {text!r}")
    body = text[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(text):
        raise GenesisError(where, f"mixed-case address fails its EIP-55 checksum: {text!r}")
    return Address(bytes(to_canonical_address(text)))


# --- Field readers -------------------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


def _is_object(v: Any) -> bool:
    return isinstance(v, Mapping)


def _is_list(v: Any) -> bool:
    return isinstance(v, list)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


_DESCRIPTIONS: dict[Callable[[Any], bool], str] = {
    _is_object: "a JSON object",
    _is_list: "a JSON list",
    _is_str: "a string",
}


def _check(value: Any, predicate: Callable[[Any], bool], where: str) -> Any:
    if not predicate(value):
        raise GenesisError(where, f"expected {_DESCRIPTIONS[predicate]}, got {json.dumps(value)}")
    return value


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _parse_number(value: Any, where: str, high: int, low: int = 0) -> int:
    """An int, or a 0x-prefixed hex string: the two spellings genesis files use."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.startswith("0x") and len(value) > 2 and _is_hex(value[2:]):
        number = int(value, 16)
    if number is None or number < 0:
        raise GenesisError(where, f"expected a non-negative integer or 0x-hex string, got {json.dumps(value)}")
    if not low <= number <= high:
        raise GenesisError(where, f"expected a value in [{low}, {high}], got {number}")
    return number


class _Obj:
    """A JSON object being read, that knows its dotted path for error messages."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        self.raw = raw
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where != "genesis" else key

    def allow_only(self, *keys: str) -> None:
        for key in self.raw:
            if key not in keys:
                raise GenesisError(self.path(key), "unknown field (a typo?)")

    def get(self, key: str, default: Any, predicate: Callable[[Any], bool]) -> Any:
        if key not in self.raw:
            return default
        return _check(self.raw[key], predicate, self.path(key))

    def required(self, key: str, predicate: Callable[[Any], bool]) -> Any:
        if key not in self.raw:
            raise GenesisError(self.path(key), "missing required field")
        return _check(self.raw[key], predicate, self.path(key))

    def number(self, key: str, *, default: int = _MISSING, low: int = 0, high: int = UINT256_MAX) -> int:
        if key not in self.raw:
            if default is _MISSING:
                raise GenesisError(self.path(key), "missing required field")
            return default
        return _parse_number(self.raw[key], self.path(key), high, low)

    def hex_bytes(self, key: str, *, default: bytes, max_len: int) -> bytes:
        if key not in self.raw:
            return default
        value = self.raw[key]
        if not (isinstance(value, str) and value.startswith("0x") and len(value) % 2 == 0 and _is_hex(value[2:])):
            raise GenesisError(self.path(key), f"expected 0x-prefixed hex bytes, got {json.dumps(value)}")
        data = bytes.fromhex(value[2:])
        if len(data) > max_len:
            raise GenesisError(self.path(key), f"at most {max_len} bytes, got {len(data)}")
        return data

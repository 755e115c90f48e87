"""The known answers of docs/protocol.md, read from the document and recomputed by the code.

Every vector in docs/protocol.md is a fenced block whose info string is ``vector NAME``.
Each non-empty line of it is ``key = value``; a line starting with ``#`` is a comment.
Values are written as the document's "Reading the vectors" says: ``0x`` + hex is a byte
string (``0xNN * k``: the byte NN repeated k times), and anything else is JSON. A key is
either an input (a name the block's checker reads), a call ``f(arg, ...)`` whose value
is the result, or an output the checker computes. :func:`compute_block` recomputes every
line of a block with the project's code, in the document's own notation, so a test
compares the two texts line by line: the document and the code cannot drift apart, and
no line of a block goes unchecked.

The sealed-block vector (``vector block``) is checked by tests/consensus/test_vectors.py
(it needs the consensus package); every other block is checked here.

``python -m tests.pouw.protocol_doc`` prints every block as the code computes it (the
text to paste into the document after a deliberate protocol change).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

CHECKED_ELSEWHERE = {"block": "tests/consensus/test_vectors.py"}
"""Blocks whose checker lives in another test package."""

_FENCE = re.compile(r"^```vector ([a-z0-9-]+)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_CALL = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\((.*)\)$", re.S)
_REPEAT = re.compile(r"^0x([0-9a-f]{2}) \* ([0-9]+)$")
_HEX = re.compile(r"^0x(?:[0-9a-f]{2})*$")


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class VectorBlock:
    """One ``vector`` block: its name, its ``key = value`` lines in order, and where it is."""

    name: str
    entries: dict[str, str]
    line: int
    document: dict[str, "VectorBlock"] = field(default_factory=dict, repr=False, compare=False)
    """Every block of the same document (a block may refer to another by name)."""

    def __getitem__(self, key: str) -> str:
        return self.entries[key]


class VectorFormatError(ValueError):
    """A vector block that does not follow the format (the test names the line)."""


def parse_vectors(text: str) -> dict[str, VectorBlock]:
    """Every ``vector`` block of a markdown text, by name (names are unique)."""
    blocks: dict[str, VectorBlock] = {}
    for match in _FENCE.finditer(text):
        name = match.group(1)
        first = text.count("\n", 0, match.start(2)) + 1
        entries: dict[str, str] = {}
        for offset, raw in enumerate(match.group(2).splitlines()):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, raw_value = line.partition(" = ")
            key, raw_value = key.strip(), raw_value.strip()
            if not sep or not key or not raw_value:
                raise VectorFormatError(f"protocol.md line {first + offset}: expected 'key = value', got {raw!r}")
            if key in entries:
                raise VectorFormatError(f"protocol.md line {first + offset}: key {key!r} twice in block {name!r}")
            entries[key] = raw_value
        if name in blocks:
            raise VectorFormatError(f"protocol.md line {first}: a second block named {name!r}")
        blocks[name] = VectorBlock(name, entries, first, blocks)
    return blocks


def document_vectors(path: Path = DOC) -> dict[str, VectorBlock]:
    return parse_vectors(path.read_text(encoding="utf-8"))


def split_args(text: str) -> list[str]:
    """Split ``a, [b, c], {"d": 1}`` at its top-level commas."""
    out, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(text):
        if quoted:
            quoted = ch != '"' or text[i - 1] == "\\"
        elif ch == '"':
            quoted = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return out + [tail] if tail or out else out


def value(text: str, env: dict[str, Any] | None = None, functions: dict[str, Callable[..., Any]] | None = None) -> Any:
    """A value in the document's notation: a name bound in ``env``, bytes, a call of one of
    ``functions`` (arguments evaluated the same way), or JSON."""
    text = text.strip()
    env = env or {}
    if text in env:
        return env[text]
    rep = _REPEAT.match(text)
    if rep:
        return bytes([int(rep.group(1), 16)]) * int(rep.group(2))
    if _HEX.match(text):
        return bytes.fromhex(text[2:])
    call = _CALL.match(text)
    if call and functions and call.group(1) in functions:
        args = [value(a, env, functions) for a in split_args(call.group(2))]
        return functions[call.group(1)](*args)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise VectorFormatError(f"cannot read value {text!r}") from None


def fmt(v: Any) -> str:
    """A computed value in the document's notation."""
    if isinstance(v, (bytes, bytearray)):
        return "0x" + bytes(v).hex()
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str):
        return v
    raise TypeError(f"no document notation for {type(v).__name__}")


def hex_word(v: int) -> str:
    return f"0x{v:016x}"


# --------------------------------------------------------------------------- datasets


def int8_bytes(seed: bytes, n_train: int, n_test: int, input_shape: list[int], num_classes: int):  # type: ignore[no-untyped-def]
    """The test set of the clamp vector (§12): every int8 value, -128 included.

    Part ``P`` (``train``, then ``test``) of ``n`` examples of ``d = prod(input_shape)``
    values: byte ``i`` of ``prng_bytes(derive_key(seed, b"vector/x/" + P), n * d)`` is
    value ``i`` (row-major), read as a two's-complement int8; labels are
    ``uniform_below(derive_key(seed, b"vector/y/" + P), num_classes, n)``; name
    ``"int8-bytes"``, no feature_scale.
    """
    from pouw.datasets import Dataset, dataset_from_bytes, dataset_to_bytes
    from pouw.prng import derive_key, prng_bytes, uniform_below

    shape = tuple(input_shape)
    d = int(np.prod(shape))

    def part(label: bytes, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw = np.frombuffer(prng_bytes(derive_key(seed, b"vector/x/" + label), n * d), dtype=np.int8)
        y = np.asarray(uniform_below(derive_key(seed, b"vector/y/" + label), num_classes, n), dtype=np.int64)
        return torch.from_numpy(raw.copy().reshape(n, *shape)), torch.from_numpy(y)

    x_tr, y_tr = part(b"train", n_train)
    x_te, y_te = part(b"test", n_test)
    ds = Dataset(x_tr, y_tr, x_te, y_te, num_classes, "int8-bytes")
    return dataset_from_bytes(dataset_to_bytes(ds))  # through the checked loader, as a node reads it


def _synthetic(seed: bytes | int, n_train: int, n_test: int, input_shape: list[int], num_classes: int, spread: int = 24):  # type: ignore[no-untyped-def]
    from pouw.datasets import synthetic_blobs

    return synthetic_blobs(seed, n_train, n_test, tuple(input_shape), num_classes, spread)


def _digits(input_shape: list[int]):  # type: ignore[no-untyped-def]
    from pouw.datasets import load_digits

    return load_digits(tuple(input_shape))


DATASETS: dict[str, Callable[..., Any]] = {"synthetic_blobs": _synthetic, "int8_bytes": int8_bytes, "digits": _digits}


@lru_cache(maxsize=16)
def dataset_for(text: str):  # type: ignore[no-untyped-def]
    """The dataset a block names (``synthetic_blobs(...)``, ``int8_bytes(...)``, ``digits(...)``)."""
    return value(text, functions=DATASETS)


# --------------------------------------------------------------------------- checkers


Checker = Callable[[VectorBlock, Any], dict[str, str]]
CHECKERS: dict[str, Checker] = {}


def checker(name: str) -> Callable[[Checker], Checker]:
    def register(fn: Checker) -> Checker:
        CHECKERS[name] = fn
        return fn

    return register


def _calls(block: VectorBlock, functions: dict[str, Callable[..., Any]], env: dict[str, Any]) -> dict[str, str]:
    """Every call line of the block, evaluated; every input line echoed."""
    out = {}
    for key, raw in block.entries.items():
        if key in env:
            out[key] = raw
            continue
        call = _CALL.match(key)
        if not call or call.group(1) not in functions:
            raise VectorFormatError(f"block {block.name!r}: unknown line {key!r}")
        out[key] = fmt(value(key, env, functions))
    return out


def _inputs(block: VectorBlock, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: value(block[name]) for name in names if name in block.entries}


def _backend(backend: Any):  # type: ignore[no-untyped-def]
    from pouw.arith import select_backend

    return backend if backend is not None else select_backend("cpu", "int8")


@checker("spec")
def check_spec(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§2.2: the canonical bytes (the block's ``spec`` must be them) and the spec hash."""
    from pouw.spec import JobSpec

    spec = JobSpec.from_dict(json.loads(block["spec"]))
    return {"spec": spec.canonical_bytes().decode("ascii"), "spec_hash": fmt(spec.spec_hash())}


@checker("arith")
def check_arith(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§3.2, §3.3, §3.8: the rounding rules, quantisation, the batch reciprocal."""
    from pouw import arith

    def t(v: Any) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.int64)

    def quantize(xs: list[int]) -> list[Any]:
        q, s = arith.quantize_int8(t(xs))
        return [q.tolist(), int(s)]

    functions = {
        "round_shift": lambda x, s: int(arith.round_shift(t(x), s)),
        "rescale_sat32": lambda x, s: int(arith.rescale_sat32(t([x]), s)[0]),
        "round_div": lambda n, d: int(arith.round_div(t(n), d)),
        "quantize_int8": quantize,
        "R": arith.recip_batch,
    }
    return _calls(block, functions, {})


@checker("exp-table")
def check_exp_table(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§3.6: table entries, the table's hash, and a softmax gradient."""
    from pouw.arith import exp_lut, softmax_xent_grad
    from pouw.prng import keccak256

    table = exp_lut().tolist()

    def grad(z: list[list[int]], y: list[int], a: int) -> list[list[int]]:
        return softmax_xent_grad(torch.tensor(z, dtype=torch.int32), torch.tensor(y), a).tolist()

    out = _calls(block, {"LUT": lambda k: table[k], "g": grad}, {"table_keccak": None})
    out["table_keccak"] = fmt(keccak256(b"".join(v.to_bytes(8, "little", signed=True) for v in table)))
    return out


@checker("log2q")
def check_log2q(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§7: log2q and the per-example loss."""
    from pouw.arith import log2_fixed
    from pouw.evaluate import example_losses

    def loss(z: list[list[int]], y: list[int], a: int) -> list[int]:
        return example_losses(torch.tensor(z, dtype=torch.int32), torch.tensor(y), a).tolist()

    return _calls(block, {"log2q": lambda n: int(log2_fixed(torch.tensor([n]))[0]), "loss": loss}, {})


@checker("state")
def check_state(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§4.0 and §5: an initial state's encoding and state hash."""
    from pouw.families import get_family
    from pouw.spec import JobSpec
    from pouw.state import serialize_state, state_hash

    spec = JobSpec.from_dict(json.loads(block["spec"]))
    s0 = get_family(spec.family).init_state(spec, value(block["init_seed"]))
    data = serialize_state(spec, s0)
    return {
        "spec": spec.canonical_bytes().decode("ascii"), "init_seed": block["init_seed"],
        **{f"{name}": fmt(t.reshape(-1).tolist()) for name, t in s0.items() if name in block.entries},
        "bytes": fmt(data), "state_hash": fmt(state_hash(data)),
    }


@checker("work-units")
def check_work_units(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§6: work units of example specs (the spec's dataset does not enter)."""
    from pouw.families import get_family
    from pouw.spec import JobSpec

    env = {key: json.loads(raw) for key, raw in block.entries.items() if not _CALL.match(key)}

    def work_units(spec: dict[str, Any]) -> int:
        full = {"dataset": "0x" + "00" * 32, "steps": 1, **spec}
        js = JobSpec.from_dict(full)
        return get_family(js.family).work_units(js)

    return _calls(block, {"work_units": work_units}, env)


@checker("datasets")
def check_datasets(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§8: the dataset id of each built-in and test dataset, a few of their values, and a
    digest of the digits file's values."""
    from pouw.datasets import dataset_id, dataset_to_bytes

    functions: dict[str, Callable[..., Any]] = dict(DATASETS)
    functions["id"] = lambda ds: dataset_id(dataset_to_bytes(ds))
    for tensor in ("x_train", "y_train", "x_test", "y_test"):
        functions[tensor] = lambda ds, _t=tensor: getattr(ds, _t).tolist()
    functions["keccak256_digits_csv_values"] = digits_csv_digest
    return _calls(block, functions, {})


def digits_csv_digest() -> bytes:
    """keccak256 of scikit-learn's digits.csv.gz values (1797 rows of 65), one byte each in file order."""
    import gzip
    import os

    import sklearn

    from pouw.prng import keccak256

    path = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        rows = [[int(float(v)) for v in line.split(",")] for line in f if line.strip()]
    return keccak256(bytes(v for row in rows for v in row))


@checker("dataset-file")
def check_dataset_file(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§8: the exact bytes of a small dataset with a recorded feature scale."""
    from pouw.datasets import Dataset, dataset_from_bytes, dataset_id, dataset_to_bytes

    x_train = torch.tensor(json.loads(block["x_train"]), dtype=torch.int8)
    x_test = torch.tensor(json.loads(block["x_test"]), dtype=torch.int8).reshape(-1, *x_train.shape[1:])
    y_train = torch.tensor(json.loads(block["y_train"]), dtype=torch.int64)
    y_test = torch.tensor(json.loads(block["y_test"]), dtype=torch.int64)
    scale = json.loads(block["feature_scale"])
    ds = Dataset(x_train, y_train, x_test, y_test, json.loads(block["num_classes"]), json.loads(block["name"]),
                 tuple(scale) if isinstance(scale, list) else scale)
    blob = dataset_to_bytes(ds)
    assert dataset_to_bytes(dataset_from_bytes(blob)) == blob
    n = int.from_bytes(blob[:8], "little")
    out = {key: block[key] for key in ("x_train", "y_train", "x_test", "y_test", "num_classes", "name", "feature_scale")}
    out.update({
        "header_length": str(n),
        "header": blob[8 : 8 + n].decode("ascii").rstrip(" "),
        "header_padding": str(n - len(blob[8 : 8 + n].rstrip(b" "))),
        "data": fmt(blob[8 + n :]),
        "dataset_id": dataset_id(blob),
    })
    return out


@checker("prng")
def check_prng(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§9: the word stream, the reduction, batch indices."""
    from pouw import prng

    env = _inputs(block, ("K",))
    functions = {
        "prng_u64": lambda k, c: hex_word(prng.prng_u64(k, c)),
        "uniform_below": prng.uniform_below,
        "batch_indices": prng.batch_indices,
        "derive_key": lambda k, label: prng.derive_key(k, label.encode("ascii")),
    }
    return _calls(block, functions, env)


@checker("seal")
def check_seal(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§10: seal seed, accumulator, tickets, challenges, points, segment bound."""
    from pouw import commit

    env = _inputs(block, ("template", "coinbase", "h_0", "c_1"))
    env["A_0"] = commit.seal_seed(env["template"], env["coinbase"], json.loads(block["job_id"]), env["h_0"],
                                  json.loads(block["m"]))
    env["A_1"] = commit.next_accumulator(env["A_0"], env["c_1"])
    out = {key: block[key] for key in ("template", "coinbase", "h_0", "c_1", "job_id", "m")}
    out["A_0"], out["A_1"] = fmt(env["A_0"]), fmt(env["A_1"])
    functions = {
        "H": commit.H,
        "wins": commit.is_winning_ticket,
        "challenge_segments": commit.challenge_segments,
        "trajectory_points": commit.trajectory_points,
        "max_segment_steps": commit.max_segment_steps,
    }
    rest = VectorBlock(block.name, {k: v for k, v in block.entries.items() if k not in out}, block.line, block.document)
    out.update(_calls(rest, functions, env))
    return out


_POINT_KEY = re.compile(r"^(c|A)_([0-9]+)$")
_EVAL_KEY = re.compile(r"^evaluate\(s_([0-9]+), (train|test)\)$")
TRAINING_INPUTS = ("dataset", "spec", "init_seed", "template", "coinbase", "job_id", "m")


@dataclass
class TrainingRun:
    """A training vector's trajectory as the project computes it."""

    spec: Any
    dataset: Any
    s0: dict
    seed: bytes
    trainer: Any


def run_training(block: VectorBlock, backend: Any = None) -> TrainingRun:
    """§12: the trajectory of ``spec.steps`` steps of segment length m (no budget point)
    from ``init_state(spec, init_seed)``, sealed with ``seal_seed(template, coinbase,
    job_id, h_0, m)``."""
    from pouw.commit import seal_seed
    from pouw.families import get_family
    from pouw.spec import JobSpec
    from pouw.state import serialize_state, state_hash
    from pouw.trainer import Trainer

    ds = dataset_for(block["dataset"])
    spec = JobSpec.from_dict(json.loads(block["spec"]))
    s0 = get_family(spec.family).init_state(spec, value(block["init_seed"]))
    h0 = state_hash(serialize_state(spec, s0))
    m = json.loads(block["m"])
    seed = seal_seed(value(block["template"]), value(block["coinbase"]), json.loads(block["job_id"]), h0, m)
    trainer = Trainer(spec, ds, s0, seed, _backend(backend), m=m)
    trainer.run()
    return TrainingRun(spec, ds, s0, seed, trainer)


@checker("train-mlp")
@checker("train-mlp-deep")
@checker("train-cnn")
@checker("train-clamp")
def check_training(block: VectorBlock, backend: Any = None, run: TrainingRun | None = None) -> dict[str, str]:
    """§12: dataset id, spec hash, h_0, seal seed, c_j and A_j at listed points, and the
    exact metrics (§7) of listed states on the training or test set."""
    from pouw.datasets import dataset_id, dataset_to_bytes
    from pouw.evaluate import evaluate
    from pouw.state import serialize_state, state_hash

    run = run or run_training(block, backend)
    spec, ds, tr = run.spec, run.dataset, run.trainer
    out = {key: block[key] for key in TRAINING_INPUTS}
    out["spec"] = spec.canonical_bytes().decode("ascii")
    for key in block.entries:
        if key in out:
            continue
        point, ev = _POINT_KEY.match(key), _EVAL_KEY.match(key)
        if key == "dataset_id":
            out[key] = dataset_id(dataset_to_bytes(ds))
        elif key == "spec_hash":
            out[key] = fmt(spec.spec_hash())
        elif key == "h_0":
            out[key] = fmt(state_hash(serialize_state(spec, run.s0)))
        elif key == "seal_seed":
            out[key] = fmt(run.seed)
        elif key == "points":
            out[key] = str(len(tr.points))
        elif point:
            rec = tr.points[int(point.group(2)) - 1]
            out[key] = fmt(rec.c if point.group(1) == "c" else rec.a)
        elif ev:
            step = int(ev.group(1))
            state = run.s0 if step == 0 else tr.point_state(next(p.j for p in tr.points if p.p == step))
            x, y = (ds.x_train, ds.y_train) if ev.group(2) == "train" else (ds.x_test, ds.y_test)
            out[key] = fmt(evaluate(spec, state, x, y, _backend(backend)).to_dict())
        else:
            raise VectorFormatError(f"block {block.name!r}: unknown line {key!r}")
    return out


CLAMP_COUNT_KEY = re.compile(r"^(steps|evaluate)\.([a-z0-9_]+)$")


@checker("clamp-counts")
def check_clamp_counts(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """§12: how many elements each clamp of §3 and §7 changes in a training vector's steps
    and in the evaluation of its last state, counted by the second implementation written
    from this document (tests/pouw/protocol_ref.py)."""
    from pouw.spec import JobSpec
    from tests.pouw.protocol_ref import reference_for, reference_trajectory

    train = block.document[json.loads(block["vector"])]
    spec = JobSpec.from_dict(json.loads(train["spec"]))
    run = run_training(train, backend)
    ref, points = reference_trajectory(spec, run.dataset, value(train["init_seed"]), run.seed, json.loads(train["m"]))
    judge = reference_for(spec.to_dict())
    judge.evaluate(points[-1][3], run.dataset.x_test.numpy(), run.dataset.y_test.numpy())
    out = {"vector": block["vector"]}
    for key in block.entries:
        if key == "vector":
            continue
        match = CLAMP_COUNT_KEY.match(key)
        if not match:
            raise VectorFormatError(f"block {block.name!r}: unknown line {key!r}")
        out[key] = str((ref if match.group(1) == "steps" else judge).hits[match.group(2)])
    return out


def compute_block(block: VectorBlock, backend: Any = None) -> dict[str, str]:
    """Every line of ``block`` as the project's code computes it."""
    if block.name not in CHECKERS:
        raise VectorFormatError(f"no checker for vector block {block.name!r}")
    return CHECKERS[block.name](block, backend)


def render(block: VectorBlock, computed: dict[str, str]) -> str:
    width = max(len(k) for k in computed)
    lines = [f"```vector {block.name}"] + [f"{k.ljust(width)} = {v}" for k, v in computed.items()] + ["```"]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Print docs/protocol.md's vector blocks as the code computes them.")
    parser.add_argument("names", nargs="*", help="only these blocks (default: all)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the markdown file to read")
    args = parser.parse_args()
    wanted = set(args.names)
    for name, block in document_vectors(args.doc).items():
        if name in CHECKED_ELSEWHERE or (wanted and name not in wanted):
            continue
        got = compute_block(block)
        print(render(block, got))
        bad = [k for k in got if got[k] != block.entries.get(k)]
        print(f"# {name}: " + ("matches the document" if not bad else "DIFFERS at " + ", ".join(bad)) + "\n")

"""docs/protocol.md's known answers, parsed from the document and recomputed.

Every ``vector`` block of the document is recomputed line by line with the project's
code (tests/pouw/protocol_doc.py; the training blocks on every backend in
tests/pouw/test_vectors.py, the sealed block in tests/consensus/test_vectors.py), and
the MLP vectors a second time by an implementation written from the document alone
(tests/pouw/protocol_ref.py), which also shows that the clamp vector needs every clamp.
"""
from __future__ import annotations

import json
import re

import pytest

from pouw.commit import seal_seed
from pouw.state import serialize_state, state_hash
from tests.pouw.protocol_doc import (
    CHECKED_ELSEWHERE,
    CHECKERS,
    DOC,
    VectorBlock,
    VectorFormatError,
    compute_block,
    dataset_for,
    document_vectors,
    fmt,
    parse_vectors,
    split_args,
    value,
)
from tests.pouw.protocol_ref import (
    EVAL_CLAMPS,
    TRAINING_CLAMPS,
    log2q,
    lut,
    reference_for,
    reference_trajectory,
    to_torch_state,
)

BLOCKS = document_vectors()
TRAINING = ("train-mlp", "train-mlp-deep", "train-cnn", "train-clamp")
"""Recomputed on every backend by tests/pouw/test_vectors.py."""



def assert_block_matches(block: VectorBlock, got: dict[str, str]) -> None:
    """The computed lines equal the document's, key for key and in order."""
    assert list(got) == list(block.entries), f"vector {block.name}: lines differ from what the checker computes"
    wrong = {key: (block[key], got[key]) for key in got if got[key] != block[key]}
    assert wrong == {}, f"vector {block.name} (docs/protocol.md line {block.line}): (document, code) = {wrong}"


# --------------------------------------------------------------------------- coverage


def test_every_vector_block_is_checked() -> None:
    assert set(BLOCKS) == set(CHECKERS) | set(CHECKED_ELSEWHERE)
    assert len(BLOCKS) >= 16


def test_every_hash_of_the_document_is_in_a_vector_block() -> None:
    """A hash written in prose would escape the tests: every 64-hex-digit string of the
    document lies inside a ``vector`` block."""
    text = DOC.read_text(encoding="utf-8")
    outside = re.sub(r"^```vector .*?^```$", "", text, flags=re.M | re.S)
    assert re.findall(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])", outside) == []


def test_the_document_names_no_path_outside_the_repository() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "/work/" not in text and "docs/protocol.md" not in text


# --------------------------------------------------------------------------- the vectors


@pytest.mark.parametrize("name", sorted(set(CHECKERS) - set(TRAINING)))
def test_vector_block_matches_the_code(name: str) -> None:
    assert_block_matches(BLOCKS[name], compute_block(BLOCKS[name]))


def test_a_changed_vector_line_is_caught() -> None:
    """The comparison can fail: one changed digit, one extra line, one missing line."""
    block = BLOCKS["prng"]
    changed = dict(block.entries)
    changed["prng_u64(K, 0)"] = "0x8ecde30af40ec970"
    bad = VectorBlock("prng", changed, block.line)
    with pytest.raises(AssertionError):
        assert_block_matches(bad, compute_block(bad))
    extra = VectorBlock("prng", {**block.entries, "prng_u64(K, 9)": "0x00"}, block.line)
    with pytest.raises(AssertionError):
        assert_block_matches(extra, {k: v for k, v in compute_block(extra).items() if k != "prng_u64(K, 9)"})
    with pytest.raises(VectorFormatError):
        compute_block(VectorBlock("prng", {**block.entries, "uniform(K, 9)": "0x00"}, block.line))


def test_clamp_counts_are_all_positive() -> None:
    """The clamp vector hits every clamp of §3 and §7 (counted by the reference)."""
    counts = {key: json.loads(v) for key, v in BLOCKS["clamp-counts"].entries.items() if key != "vector"}
    assert {key.split(".", 1)[1] for key in counts if key.startswith("steps.")} == set(TRAINING_CLAMPS)
    assert {key.split(".", 1)[1] for key in counts if key.startswith("evaluate.")} >= set(EVAL_CLAMPS)
    assert all(isinstance(n, int) and n > 0 for n in counts.values()), counts


# --------------------------------------------------------------------------- the format


def test_parse_vectors_reads_blocks_keys_and_comments() -> None:
    text = (
        "intro\n```vector demo\n# a comment\nK      = 0x01 * 3\nf(K, [1, 2]) = [3]\n\n```\n"
        "```python\nx = 1\n```\n```vector two\na = 1\n```\n"
    )
    blocks = parse_vectors(text)
    assert list(blocks) == ["demo", "two"]
    assert blocks["demo"].entries == {"K": "0x01 * 3", "f(K, [1, 2])": "[3]"}
    assert (blocks["demo"].line, blocks["two"].line) == (3, 12)
    assert blocks["demo"].document is blocks["two"].document and set(blocks["demo"].document) == {"demo", "two"}
    assert value("0x01 * 3") == b"\x01\x01\x01"
    assert value("0x0aff") == b"\x0a\xff"
    assert value('{"a": [1, null]}') == {"a": [1, None]}
    assert value("K", {"K": 5}) == 5
    assert value("f(1, [2, 3])", functions={"f": lambda a, b: a + sum(b)}) == 6
    assert split_args('a, [1, 2], {"x": "y, z"}, f(1, 2)') == ["a", "[1, 2]", '{"x": "y, z"}', "f(1, 2)"]
    assert fmt({"a": [b"\x01", 2, True]}) == '{"a": [0x01, 2, true]}'


@pytest.mark.parametrize(
    "text",
    [
        "```vector demo\nno equals sign\n```\n",
        "```vector demo\nk = 1\nk = 2\n```\n",
        "```vector demo\nk = \n```\n",
        "```vector demo\nk = 1\n```\n```vector demo\nj = 1\n```\n",
    ],
)
def test_invalid_vector_blocks_are_refused(text: str) -> None:
    with pytest.raises(VectorFormatError):
        parse_vectors(text)


def test_invalid_values_are_refused() -> None:
    with pytest.raises(VectorFormatError):
        value("not json")
    with pytest.raises(VectorFormatError):
        value("0xabc")  # odd number of hex digits is neither bytes nor JSON


def _doc_float_text(x: float) -> str:
    """§8's text of a feature_scale number, from its shortest digits D and exponent k
    (taken from ``repr``, whose *format* is what this checks: value = 0.D * 10**k)."""
    from decimal import Decimal

    sign, digit_tuple, exponent = Decimal(repr(x)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple)) or "0"
    k = 1 if digits == "0" else len(digits) + int(exponent)
    n = len(digits)
    if -4 < k <= 16:
        if k <= 0:
            out = "0." + "0" * (-k) + digits
        elif k >= n:
            out = digits + "0" * (k - n) + ".0"
        else:
            out = digits[:k] + "." + digits[k:]
    else:
        out = digits[0] + ("." + digits[1:] if n > 1 else "") + "e" + ("-" if k - 1 < 0 else "+") + f"{abs(k - 1):02d}"
    return ("-" if sign else "") + out


def test_the_documented_number_format_is_pythons_repr() -> None:
    import random

    rng = random.Random(8)
    samples = [0.0, -0.0, 0.5, 2.0, 1e-4, 1e-5, 1.5e16, 1e16, 1e15, 123456789012345678.0, 8 / 127, 5e-324, 1.7976931348623157e308]
    samples += [rng.uniform(0, 10) * 10.0 ** rng.randint(-12, 20) for _ in range(2000)]
    for x in samples:
        assert _doc_float_text(x) == repr(x), x


# --------------------------------------------------------------------------- second implementation


def _reference_run(name: str, wrong: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from pouw.spec import JobSpec

    block = BLOCKS[name]
    spec = JobSpec.from_dict(json.loads(block["spec"]))
    ds = dataset_for(block["dataset"])
    init_seed = value(block["init_seed"])
    m = json.loads(block["m"])
    h0 = state_hash(serialize_state(spec, to_torch_state(reference_for(spec.to_dict()).init_state(init_seed))))
    seed = seal_seed(value(block["template"]), value(block["coinbase"]), json.loads(block["job_id"]), h0, m)
    ref, points = reference_trajectory(spec, ds, init_seed, seed, m, wrong)
    listed = {"h_0": fmt(h0), "seal_seed": fmt(seed)}
    for key in block.entries:
        point = re.fullmatch(r"(c|A)_([0-9]+)", key)
        ev = re.fullmatch(r"evaluate\(s_([0-9]+), test\)", key)
        if point:
            _, c, a, _ = points[int(point.group(2)) - 1]
            listed[key] = fmt(c if point.group(1) == "c" else a)
        elif ev:
            step = int(ev.group(1))
            judge = reference_for(spec.to_dict(), wrong)
            state = judge.init_state(init_seed) if step == 0 else next(s for p, _, _, s in points if p == step)
            listed[key] = fmt(judge.evaluate(state, ds.x_test.numpy(), ds.y_test.numpy()))
    return ref, listed


@pytest.mark.parametrize("name", TRAINING)
def test_an_implementation_from_the_document_reproduces_the_training_vectors(name: str) -> None:
    _, listed = _reference_run(name)
    assert listed == {key: BLOCKS[name][key] for key in listed}
    assert len(listed) >= 6


@pytest.mark.parametrize("clamp", TRAINING_CLAMPS)
def test_reading_any_clamp_otherwise_changes_the_clamp_vector(clamp: str) -> None:
    ref, listed = _reference_run("train-clamp", (clamp,))
    assert ref.hits[clamp] > 0
    changed = sorted(key for key in listed if listed[key] != BLOCKS["train-clamp"][key])
    assert changed, f"reading {clamp} otherwise leaves every listed value of train-clamp unchanged"


def test_the_reference_tables_agree_with_the_document() -> None:
    from pouw.prng import keccak256

    table = lut()
    assert fmt(keccak256(b"".join(v.to_bytes(8, "little", signed=True) for v in table))) == BLOCKS["exp-table"]["table_keccak"]
    for key, text in BLOCKS["log2q"].entries.items():
        call = re.fullmatch(r"log2q\(([0-9]+)\)", key)
        if call:
            assert log2q(int(call.group(1))) == json.loads(text)

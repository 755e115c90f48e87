"""Bounded JSON: depth and size are refused before ``json.loads`` runs, in linear time."""
from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

import safejson
from safejson import JsonTooDeep, JsonTooLarge, loads, nesting_depth


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max([_depth(v) for v in value] or [0])
    if isinstance(value, dict):
        return 1 + max([_depth(v) for v in value.values()] or [0])
    return 0


def _random_value(rng: random.Random, depth: int) -> Any:
    if depth == 0:
        return rng.choice([1, None, "x[", '\\"{', "\\\\", "ü]}", '"', "\\", "[[{{"])
    if rng.random() < 0.5:
        return [_random_value(rng, depth - 1) for _ in range(rng.randrange(1, 3))]
    return {rng.choice(["a", "[", '"{', "\\"]): _random_value(rng, depth - 1)}


@pytest.mark.parametrize("chunk", [7, safejson._CHUNK])
def test_depth_is_exact_for_valid_json(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(safejson, "_CHUNK", chunk)  # 7: every carry across chunks is exercised
    rng = random.Random(5)
    for _ in range(1500):
        value = _random_value(rng, rng.randrange(0, 12))
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        assert nesting_depth(text) == _depth(value), text
        assert nesting_depth(text.encode()) == _depth(value), text


def test_loads_parses_what_json_parses() -> None:
    for text in ('{"a": [1, 2, {"b": "]]]"}]}', "[]", "3", '"\\\\"', b'{"x": 1}', '{"x": "\\u005b"}'):
        assert loads(text, max_depth=8) == json.loads(text)
    utf16 = '{"a": ["\u225b"]}'.encode("utf-16")  # json.loads detects UTF-16; so do we
    assert loads(utf16, max_depth=2) == {"a": ["\u225b"]}


def test_invalid_too_deep_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr(safejson.json, "loads", lambda *a, **k: called.append(1))
    for text, limit in (("[" * 100_000, 64), ('{"a":' * 65 + "1" + "}" * 65, 64), ("[" * 9 + "]" * 9, 8)):
        with pytest.raises(JsonTooDeep) as info:
            loads(text, max_depth=limit)
        assert isinstance(info.value, ValueError)
    assert not called


def test_invalid_too_large() -> None:
    with pytest.raises(JsonTooLarge):
        loads("[1, 2, 3]", max_depth=4, max_bytes=8)
    with pytest.raises(TypeError):
        loads({"a": 1}, max_depth=4)  # type: ignore[arg-type]


def test_brackets_in_strings_do_not_count() -> None:
    assert nesting_depth('{"a": "[[[[[["}') == 1
    assert nesting_depth('["\\\\", "[[[", "\\\\\\"[["]') == 1
    assert loads('["' + "[" * 10_000 + '"]', max_depth=2) == ["[" * 10_000]


def test_depth_check_survives_the_raised_recursion_limit() -> None:
    """py_ecc raises the recursion limit to 100000, so json.loads alone would segfault on
    this; the bounded loader refuses it (in a subprocess, so a crash would show)."""
    import subprocess

    code = (
        "import sys; sys.setrecursionlimit(100000)\n"
        "import safejson\n"
        "try:\n"
        "    safejson.loads('[' * 2_000_000, max_depth=64)\n"
        "except safejson.JsonTooDeep:\n"
        "    print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "refused", out


@pytest.mark.parametrize("text", ["[" * (16 << 20), "[" + "[]," * (5 << 20) + "1]", '["",' * (4 << 20), '"\\\\' * (4 << 20)])
def test_hostile_shapes_of_16_mib(text: str) -> None:
    """Frames as large as a peer may send, shaped against the scanner (all openers, many
    tiny strings, escapes): each is answered (a quadratic scan would hit the test timeout;
    bench/bench_rpc.py is the place for speed)."""
    try:
        value = loads(text, max_depth=64)
    except ValueError:
        return
    assert _depth(value) <= 64

"""State serialisation: round trips, hash, and refusal of every kind of bad blob."""
from __future__ import annotations

import random
import struct

import pytest
import torch
import blake3

from pouw.errors import StateError
from pouw.families import get_family
from pouw.spec import JobSpec
from pouw.state import (
    MAGIC,
    deserialize_state,
    encode_tensors,
    serialize_state,
    state_digest,
    state_hash,
)

DATASET = "0x" + "cd" * 32


def mlp_spec(**over: object) -> JobSpec:
    d: dict = dict(family="mlp", dataset=DATASET, input_shape=[12], num_classes=3, hidden=[5, 4],
                   batch_size=8, lr_shift=3, momentum_shift=None, steps=10)
    d.update(over)
    return JobSpec.from_dict(d)


def cnn_spec(**over: object) -> JobSpec:
    d: dict = dict(family="cnn", dataset=DATASET, input_shape=[2, 5, 5], num_classes=3, hidden=[3],
                   batch_size=4, lr_shift=3, momentum_shift=2, steps=10, stride=2)
    d.update(over)
    return JobSpec.from_dict(d)


SPECS = [mlp_spec(), mlp_spec(momentum_shift=3), cnn_spec()]


@pytest.mark.parametrize("spec", SPECS, ids=["mlp", "mlp-momentum", "cnn-momentum"])
def test_round_trip(spec: JobSpec) -> None:
    fam = get_family(spec.family)
    state = fam.init_state(spec, b"seed")
    assert [n for n, _, _ in fam.layout(spec)] == list(state)
    data = serialize_state(spec, state)
    assert len(data) == fam.state_bytes(spec)
    back = deserialize_state(spec, data)
    assert list(back) == list(state)
    for name in state:
        assert back[name].dtype == state[name].dtype
        assert torch.equal(back[name], state[name])
    assert state_hash(data) == blake3.blake3(data).digest() == state_hash(state) == state_hash(state, spec) == state_hash(back, spec)
    assert state_digest(state, spec) == state_hash(data)


def test_byte_layout() -> None:
    spec = mlp_spec(hidden=[])  # logistic regression: w0 [12, 3], b0 [3]
    state = get_family("mlp").init_state(spec, b"seed")
    data = serialize_state(spec, state)
    assert data[:4] == MAGIC and struct.unpack_from("<HH", data, 4) == (1, 2)
    assert data[8:11] == b"\x02w0" and data[11:13] == b"\x01\x02" and struct.unpack_from("<II", data, 13) == (12, 3)
    assert data[21 : 21 + 4] == struct.pack("<i", int(state["w0"][0, 0]))
    assert len(data) == 8 + (3 + 2 + 8 + 36 * 4) + (3 + 2 + 4 + 3 * 4)


def test_hash_uses_spec_order() -> None:
    spec = mlp_spec()
    state = get_family("mlp").init_state(spec, b"seed")
    reordered = dict(reversed(list(state.items())))
    assert state_hash(reordered, spec) == state_hash(state)
    assert state_hash(reordered) != state_hash(state)  # without a spec: the dict's own order


def test_invalid_truncated_and_extended() -> None:
    spec = mlp_spec()
    data = serialize_state(spec, get_family("mlp").init_state(spec, b"seed"))
    for cut in (0, 3, 8, 20, len(data) - 1):
        with pytest.raises(StateError):
            deserialize_state(spec, data[:cut])
    with pytest.raises(StateError):
        deserialize_state(spec, data + b"\x00")


def test_invalid_header_fields() -> None:
    spec = mlp_spec()
    data = bytearray(serialize_state(spec, get_family("mlp").init_state(spec, b"seed")))
    cases = {
        "magic": (0, b"XWST"),
        "version": (4, struct.pack("<H", 2)),
        "count": (6, struct.pack("<H", 3)),
        "name": (9, b"x"),
        "dtype": (11, b"\x02"),
        "rank": (12, b"\x01"),
        "dims": (13, struct.pack("<I", 13)),
    }
    for what, (pos, patch) in cases.items():
        bad = bytearray(data)
        bad[pos : pos + len(patch)] = patch
        with pytest.raises(StateError):
            deserialize_state(spec, bytes(bad))


def test_invalid_wrong_spec() -> None:
    data = serialize_state(mlp_spec(), get_family("mlp").init_state(mlp_spec(), b"seed"))
    for other in (mlp_spec(hidden=[4, 5]), mlp_spec(momentum_shift=2), cnn_spec()):
        with pytest.raises(StateError):
            deserialize_state(other, data)


@pytest.mark.parametrize("value", [-(2**31), 2**30, -(2**30), 2**31 - 1])
def test_invalid_value_outside_parameter_range(value: int) -> None:
    spec = mlp_spec()
    state = get_family("mlp").init_state(spec, b"seed")
    state["b1"] = state["b1"].clone()
    state["b1"][0] = value
    with pytest.raises(StateError):
        deserialize_state(spec, encode_tensors(list(state.items())))
    state["b1"][0] = 2**30 - 1
    deserialize_state(spec, encode_tensors(list(state.items())))


def test_invalid_serialize_mismatched_state() -> None:
    spec = mlp_spec()
    state = get_family("mlp").init_state(spec, b"seed")
    with pytest.raises(StateError):
        serialize_state(spec, {k: v for k, v in state.items() if k != "b0"})
    with pytest.raises(StateError):
        serialize_state(spec, {**state, "w0": state["w0"].to(torch.int64)})
    with pytest.raises(StateError):
        serialize_state(spec, {**state, "w0": state["w0"][:, :2]})
    with pytest.raises(StateError):
        serialize_state(spec, {**state, "w0": state["w0"].float()})


def test_corruption_fuzz_never_crashes() -> None:
    spec = cnn_spec()
    data = serialize_state(spec, get_family("cnn").init_state(spec, b"seed"))
    rng = random.Random(7)
    for _ in range(300):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        if rng.random() < 0.3:
            bad = bad[: rng.randrange(len(bad))]
        try:
            deserialize_state(spec, bytes(bad))
        except StateError:
            pass
    for n in (0, 1, 7, len(data)):
        try:
            deserialize_state(spec, bytes(rng.randrange(256) for _ in range(n)))
        except StateError:
            pass


def test_large_state_hash_straight_from_the_tensors() -> None:
    """A 1.6 MB state hashed from its tensors' memory equals BLAKE3 of its canonical bytes."""
    spec = JobSpec.from_dict({
        "family": "mlp", "dataset": "0x" + "ab" * 32, "input_shape": [784], "num_classes": 10,
        "hidden": [512], "batch_size": 8, "lr_shift": 3, "momentum_shift": None, "steps": 1,
    })
    state = get_family("mlp").init_state(spec, b"big")
    data = serialize_state(spec, state)
    assert len(data) > 1 << 20
    assert state_hash(state, spec) == state_digest(state, spec) == blake3.blake3(data).digest() == state_hash(data)

"""Job specs: canonical encoding, hash, and one test_invalid_* per validation rule."""
from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from eth_utils import keccak

from pouw.errors import SpecError
from pouw.spec import DEFAULT_LIMITS, JobSpec, Limits, validate_spec

DATASET = "0x" + "ab" * 32


def mlp_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = dict(
        family="mlp", dataset=DATASET, input_shape=[64], num_classes=10, hidden=[32],
        batch_size=16, lr_shift=3, momentum_shift=None, steps=100,
    )
    d.update(over)
    return d


def cnn_dict(**over: Any) -> dict[str, Any]:
    d = mlp_dict(family="cnn", input_shape=[1, 8, 8], hidden=[4, 8], stride=2)
    d.update(over)
    return d


def refused(d: dict[str, Any], field: str, limits: Limits = DEFAULT_LIMITS) -> SpecError:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict(d, limits)
    assert info.value.field == field, str(info.value)
    return info.value


def test_round_trip_and_defaults() -> None:
    spec = JobSpec.from_dict(mlp_dict())
    assert spec.input_shape == (64,) and spec.hidden == (32,)
    assert spec.weight_frac_bits == 24 and spec.act_frac_bits == 16 and spec.input_frac_bits == 7
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert JobSpec.from_dict(d) == spec
    cnn = JobSpec.from_dict(cnn_dict(momentum_shift=3))
    assert JobSpec.from_dict(cnn.to_dict()) == cnn


def test_canonical_bytes_and_hash() -> None:
    spec = JobSpec.from_dict(mlp_dict())
    raw = spec.canonical_bytes()
    assert raw == json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in raw and raw.startswith(b'{"act_frac_bits":16,"batch_size":16,')
    assert spec.spec_hash() == keccak(raw)
    # key order of the input does not matter; every field, defaults included, is hashed
    shuffled = dict(reversed(list(mlp_dict().items())))
    assert JobSpec.from_dict(shuffled).spec_hash() == spec.spec_hash()
    assert JobSpec.from_dict(mlp_dict(input_frac_bits=7)).spec_hash() == spec.spec_hash()
    assert JobSpec.from_dict(mlp_dict(lr_shift=4)).spec_hash() != spec.spec_hash()


def test_pinned_spec_hash() -> None:
    spec = JobSpec.from_dict(mlp_dict())
    assert spec.spec_hash().hex() == keccak(spec.canonical_bytes()).hex()
    assert spec.canonical_bytes() == (
        b'{"act_frac_bits":16,"batch_size":16,"dataset":"0x' + b"ab" * 32 + b'","family":"mlp",'
        b'"hidden":[32],"input_frac_bits":7,"input_shape":[64],"kernel_size":3,"lr_shift":3,'
        b'"momentum_shift":null,"num_classes":10,"steps":100,"stride":1,"weight_frac_bits":24}'
    )


def test_invalid_not_an_object() -> None:
    with pytest.raises(SpecError) as info:
        JobSpec.from_dict([1, 2])  # type: ignore[arg-type]
    assert info.value.field == "spec"


def test_invalid_unknown_field() -> None:
    refused(mlp_dict(activation="tanh"), "activation")


@pytest.mark.parametrize("field", ["family", "dataset", "input_shape", "num_classes", "hidden", "batch_size", "lr_shift", "momentum_shift", "steps"])
def test_invalid_missing_field(field: str) -> None:
    d = mlp_dict()
    del d[field]
    refused(d, field)


def test_invalid_family() -> None:
    refused(mlp_dict(family="transformer"), "family")
    refused(mlp_dict(family=1), "family")


@pytest.mark.parametrize("value", ["ab" * 32, "0x" + "ab" * 31, "0x" + "AB" * 32, "0x" + "zz" * 32, 5])
def test_invalid_dataset(value: Any) -> None:
    refused(mlp_dict(dataset=value), "dataset")


def test_invalid_input_shape() -> None:
    refused(mlp_dict(input_shape=[]), "input_shape")
    refused(mlp_dict(input_shape=[1, 2, 3, 4]), "input_shape")
    refused(mlp_dict(input_shape=[0]), "input_shape[0]")
    refused(mlp_dict(input_shape=[8, "8"]), "input_shape[1]")
    refused(mlp_dict(input_shape=[8, True]), "input_shape[1]")
    refused(mlp_dict(input_shape=64), "input_shape")
    refused(mlp_dict(input_shape=[2048, 1024]), "input_shape")  # too many elements


def test_invalid_num_classes() -> None:
    refused(mlp_dict(num_classes=1), "num_classes")
    refused(mlp_dict(num_classes=True), "num_classes")
    refused(mlp_dict(num_classes=10**6), "num_classes")


def test_invalid_hidden() -> None:
    refused(mlp_dict(hidden=[8] * 9), "hidden")
    refused(mlp_dict(hidden=[8, 0]), "hidden[1]")
    refused(mlp_dict(hidden=[8, 10**6]), "hidden[1]")
    refused(mlp_dict(hidden=[8.0]), "hidden[0]")
    refused(mlp_dict(hidden="32"), "hidden")


def test_invalid_batch_size() -> None:
    refused(mlp_dict(batch_size=0), "batch_size")
    refused(mlp_dict(batch_size=4097), "batch_size")
    refused(mlp_dict(batch_size=16.0), "batch_size")


def test_invalid_lr_shift() -> None:
    refused(mlp_dict(lr_shift=-1), "lr_shift")
    refused(mlp_dict(lr_shift=31), "lr_shift")


def test_invalid_momentum_shift() -> None:
    refused(mlp_dict(momentum_shift=0), "momentum_shift")
    refused(mlp_dict(momentum_shift=17), "momentum_shift")
    refused(mlp_dict(momentum_shift=False), "momentum_shift")


def test_invalid_steps() -> None:
    refused(mlp_dict(steps=0), "steps")
    refused(mlp_dict(steps=2**32 + 1), "steps")


def test_invalid_frac_bits() -> None:
    refused(mlp_dict(input_frac_bits=16), "input_frac_bits")
    refused(mlp_dict(weight_frac_bits=7), "weight_frac_bits")
    refused(mlp_dict(weight_frac_bits=29), "weight_frac_bits")
    refused(mlp_dict(act_frac_bits=25), "act_frac_bits")


def test_invalid_kernel_and_stride() -> None:
    refused(cnn_dict(kernel_size=2), "kernel_size")
    refused(cnn_dict(kernel_size=9), "kernel_size")
    refused(cnn_dict(stride=0), "stride")
    refused(cnn_dict(stride=5), "stride")


def test_invalid_cnn_shapes() -> None:
    refused(cnn_dict(input_shape=[64]), "input_shape")
    refused(cnn_dict(hidden=[]), "hidden")
    # batch x output positions must stay under the exact int32 accumulation bound
    refused(cnn_dict(stride=1, batch_size=4096, input_shape=[1, 16, 16]), "batch_size")


def test_invalid_state_too_large() -> None:
    small = Limits(max_state_bytes=10_000)
    refused(mlp_dict(hidden=[256]), "hidden", small)
    JobSpec.from_dict(mlp_dict(hidden=[8]), small)


def test_invalid_step_too_expensive() -> None:
    cheap = Limits(max_work_units_per_step=10_000)
    refused(mlp_dict(), "batch_size", cheap)


def test_validate_spec_on_constructed_spec() -> None:
    spec = JobSpec.from_dict(mlp_dict())
    validate_spec(spec)
    with pytest.raises(SpecError) as info:
        validate_spec(replace(spec, hidden=[32]))  # type: ignore[arg-type]  # a list, not a tuple
    assert info.value.field == "hidden"

"""Declarative job specs and the limits they are checked against (docs/protocol.md §2).

A job is data, never code: a task family from a fixed catalogue, its shape, its
hyperparameters, a dataset named by content hash and a step budget. ``JobSpec.from_dict``
is the only way a spec from the outside world becomes a ``JobSpec``; it checks every
field, then the family's own rules and the limits, and raises ``SpecError`` naming the
field on the first violation.

Canonical encoding: ``canonical_bytes()`` is compact JSON (``separators=(",", ":")``,
keys sorted, ASCII only) of ``to_dict()``, which lists **every** field, defaults
included; ``spec_hash() = keccak256(canonical_bytes())``.
"""
from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, fields
from typing import Any, Final

from eth_utils import keccak

import safejson
from pouw.errors import SpecError

__all__ = ["JobSpec", "Limits", "DEFAULT_LIMITS", "validate_spec", "FAMILIES", "loads_spec_json"]

MAX_SPEC_JSON_DEPTH: Final = 4
"""A spec is an object of scalars and flat lists (depth 2); deeper text is refused before
``json.loads`` sees it (a transaction's spec bytes are untrusted: see ``safejson``)."""


def loads_spec_json(raw: str | bytes) -> Any:
    """Parse a spec's JSON text from outside (a transaction, an RPC call) with its nesting
    bounded first; raises ``ValueError`` (bad or too deeply nested JSON)."""
    return safejson.loads(raw, max_depth=MAX_SPEC_JSON_DEPTH)

FAMILIES: Final = ("mlp", "cnn")
"""The task catalogue, in the order families were added."""

_DATASET_RE: Final = re.compile(r"^0x[0-9a-f]{64}$")


@dataclass(frozen=True)
class Limits:
    """Upper bounds a spec must respect. Defaults here; consensus takes them from genesis."""

    max_state_bytes: int = 64 * 1024 * 1024
    """Serialised model state (it travels in block work payloads)."""
    max_dataset_bytes: int = 128 * 1024 * 1024
    """Dataset blob size (checked by pouw.datasets when the blob is fetched)."""
    max_work_units_per_step: int = 1 << 40
    """Cost of one step (family.work_units): bounds a validator's recomputation time."""
    max_steps: int = 1 << 32
    """Step budget of one job."""
    max_batch_size: int = 4096
    """Examples per step."""
    max_layers: int = 8
    """Entries of ``hidden``."""
    max_width: int = 65536
    """Any hidden width, and the number of input features of a dense layer."""
    max_classes: int = 65536
    """Output classes."""
    max_input_elems: int = 1 << 20
    """Elements of one example (product of input_shape)."""


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True)
class JobSpec:
    """One training job. Every field is part of the canonical encoding and the spec hash."""

    family: str
    """Task family from the catalogue: "mlp" or "cnn"."""
    dataset: str
    """0x-prefixed lowercase keccak256 hex of the dataset blob (pouw.datasets)."""
    input_shape: tuple[int, ...]
    """Shape of one example: (features,) or any shape for mlp (flattened); (C, H, W) for cnn."""
    num_classes: int
    """Number of output classes (labels are 0..num_classes-1)."""
    hidden: tuple[int, ...]
    """mlp: widths of the hidden dense layers; cnn: output channels of each conv layer."""
    batch_size: int
    """Examples per step, drawn with replacement by the portable PRNG."""
    lr_shift: int
    """Learning rate 2**-lr_shift applied to the batch-mean gradient."""
    momentum_shift: int | None
    """None: plain SGD. m: heavy-ball momentum with beta = 1 - 2**-m."""
    steps: int
    """Step budget of the job."""
    input_frac_bits: int = 7
    """Fractional bits of the int8 inputs: example value = x * 2**-input_frac_bits."""
    weight_frac_bits: int = 24
    """Fractional bits of the int32 master weights, biases and momentum buffers."""
    act_frac_bits: int = 16
    """Fractional bits of the int32 activations and logits."""
    kernel_size: int = 3
    """cnn: odd square kernel size; padding is kernel_size // 2 ("same" at stride 1)."""
    stride: int = 1
    """cnn: stride of every conv layer."""

    # ---- encoding -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field (tuples become lists); round-trips via from_dict."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def canonical_bytes(self) -> bytes:
        """Compact sorted-key ASCII JSON of to_dict(): the bytes the spec hash commits to."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode(
            "ascii"
        )

    def spec_hash(self) -> bytes:
        """keccak256 of canonical_bytes()."""
        return keccak(self.canonical_bytes())

    @classmethod
    def from_dict(cls, d: Any, limits: Limits = DEFAULT_LIMITS) -> "JobSpec":
        """Parse and fully validate a spec; SpecError names the first bad field."""
        if not isinstance(d, dict):
            raise SpecError("spec", "must be a JSON object", got=type(d).__name__)
        known = {f.name: f for f in fields(cls)}
        for key in d:
            if key not in known:
                raise SpecError(str(key), "unknown field")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        for name in required:
            if name not in d:
                raise SpecError(name, "missing required field")
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            if name in ("input_shape", "hidden"):
                if not isinstance(value, (list, tuple)):
                    raise SpecError(name, "must be a list of integers", got=value)
                for i, item in enumerate(value):
                    if not _is_int(item):
                        raise SpecError(f"{name}[{i}]", "must be an integer", got=item)
                kwargs[name] = tuple(value)
            else:
                kwargs[name] = value
        spec = cls(**kwargs)
        validate_spec(spec, limits)
        return spec


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_int(field: str, value: Any, lo: int, hi: int) -> None:
    if not _is_int(value):
        raise SpecError(field, "must be an integer", got=value)
    if not lo <= value <= hi:
        raise SpecError(field, "out of range", expected=f"{lo}..{hi}", got=value)


def validate_spec(spec: JobSpec, limits: Limits = DEFAULT_LIMITS) -> None:
    """Every rule a spec must pass, cheapest first; raises SpecError naming the field.

    1. field types and ranges; 2. the family's shape rules; 3. state size and step cost
    against the limits.
    """
    if not isinstance(spec.family, str) or spec.family not in FAMILIES:
        raise SpecError("family", "unknown task family", expected=list(FAMILIES), got=spec.family)
    if not isinstance(spec.dataset, str) or not _DATASET_RE.match(spec.dataset):
        raise SpecError("dataset", "must be 0x + 64 lowercase hex digits", got=spec.dataset)
    if not isinstance(spec.input_shape, tuple) or not 1 <= len(spec.input_shape) <= 3:
        raise SpecError("input_shape", "must have 1 to 3 dimensions", got=spec.input_shape)
    elems = 1
    for i, dim in enumerate(spec.input_shape):
        _check_int(f"input_shape[{i}]", dim, 1, limits.max_input_elems)
        elems *= dim
    if elems > limits.max_input_elems:
        raise SpecError("input_shape", "too many elements per example", expected=f"<= {limits.max_input_elems}", got=elems)
    _check_int("num_classes", spec.num_classes, 2, limits.max_classes)
    if not isinstance(spec.hidden, tuple) or len(spec.hidden) > limits.max_layers:
        raise SpecError("hidden", "too many layers", expected=f"<= {limits.max_layers}", got=spec.hidden)
    for i, width in enumerate(spec.hidden):
        _check_int(f"hidden[{i}]", width, 1, limits.max_width)
    _check_int("batch_size", spec.batch_size, 1, limits.max_batch_size)
    _check_int("lr_shift", spec.lr_shift, 0, 30)
    if spec.momentum_shift is not None:
        _check_int("momentum_shift", spec.momentum_shift, 1, 16)
    _check_int("steps", spec.steps, 1, limits.max_steps)
    _check_int("input_frac_bits", spec.input_frac_bits, 0, 15)
    _check_int("weight_frac_bits", spec.weight_frac_bits, 8, 28)
    _check_int("act_frac_bits", spec.act_frac_bits, 8, 24)
    _check_int("kernel_size", spec.kernel_size, 1, 7)
    if spec.kernel_size % 2 == 0:
        raise SpecError("kernel_size", "must be odd", got=spec.kernel_size)
    _check_int("stride", spec.stride, 1, 4)

    from pouw.families import get_family  # families import this module

    family = get_family(spec.family)
    family.validate(spec, limits)
    state_bytes = family.state_bytes(spec)
    if state_bytes > limits.max_state_bytes:
        raise SpecError("hidden", "model state too large", expected=f"<= {limits.max_state_bytes} bytes", got=state_bytes)
    work = family.work_units(spec)
    if work > limits.max_work_units_per_step:
        raise SpecError(
            "batch_size", "step too expensive", expected=f"<= {limits.max_work_units_per_step} work units", got=work
        )

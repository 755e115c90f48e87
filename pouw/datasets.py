"""Datasets: int8 arrays in a format that cannot execute code, named by content hash.

A job names its dataset by ``content_hash(blob)`` = keccak256 of the blob's bytes, and a
node loads the blob only through :func:`dataset_from_bytes`, which checks, cheapest
first: size, hash, container format, tensor names, dtypes, shapes, label range.

Canonical container: **safetensors** with exactly four tensors

* ``x_train`` int8 ``[N, *input_shape]``, ``y_train`` int64 ``[N]``
* ``x_test``  int8 ``[M, *input_shape]``, ``y_test``  int64 ``[M]``

and a single metadata entry ``"pouw.dataset"`` holding canonical JSON
(``{"format":1,"name":...,"num_classes":...}``, sorted keys, no spaces). One key only:
the safetensors writer emits several metadata keys in a per-process random order,
which would make the content hash of one dataset differ between runs.

Alternative input: **npz** read with ``numpy.load(..., allow_pickle=False)`` with the
same four array names (integer labels of any width are widened to int64) and optional
``num_classes`` (integer scalar, default ``max label + 1``) and ``name`` (string).
An npz whose arrays need pickle is refused.

Quantisation to int8 happens once, at job creation (:func:`quantize_int8`), never on
the recomputed path: the content hash names the int8 data that validators use.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

import safejson
from pouw.errors import DatasetError
from pouw.prng import derive_key, keccak256, prng_bytes, uniform_below

__all__ = [
    "Dataset",
    "DEFAULT_MAX_DATASET_BYTES",
    "METADATA_KEY",
    "TENSOR_NAMES",
    "content_hash",
    "dataset_id",
    "dataset_to_bytes",
    "dataset_from_bytes",
    "quantize_int8",
    "make_dataset",
    "load_digits",
    "digits_split",
    "synthetic_blobs",
]

DEFAULT_MAX_DATASET_BYTES: Final = 128 * 1024 * 1024
METADATA_KEY: Final = "pouw.dataset"
FORMAT_VERSION: Final = 1
TENSOR_NAMES: Final = ("x_test", "x_train", "y_test", "y_train")
MAX_CLASSES: Final = 65536
MAX_NAME_LEN: Final = 256
DIGITS_TEST_SIZE: Final = 297
DIGITS_SPLIT_LABEL: Final = b"pouw/digits-split"

_SAFETENSORS_MAX_HEADER: Final = 100 * 1024 * 1024
_HEADER_JSON_DEPTH: Final = 8
"""A safetensors header nests 3 deep (header, tensor, shape); our metadata 1."""
_ZIP_MAGIC: Final = b"PK\x03\x04"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset as the engine consumes it (CPU tensors).

    Compared and hashed by identity (tensors have no cheap value equality); compare
    datasets by :func:`content_hash` of their blobs.
    """

    x_train: torch.Tensor  # int8 [N, *input_shape]
    y_train: torch.Tensor  # int64 [N]
    x_test: torch.Tensor  # int8 [M, *input_shape]
    y_test: torch.Tensor  # int64 [M]
    num_classes: int
    name: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __len__(self) -> int:
        return int(self.x_train.shape[0])


# --------------------------------------------------------------------------- hashes


def content_hash(blob: bytes) -> bytes:
    """keccak256 of the blob's bytes: the dataset's name on chain (32 bytes)."""
    return keccak256(bytes(blob))


def dataset_id(blob: bytes) -> str:
    """``"0x" + hex(content_hash(blob))``, the form a ``JobSpec.dataset`` field takes."""
    return "0x" + content_hash(blob).hex()


def _hash_bytes(expected: bytes | str) -> bytes:
    if isinstance(expected, str):
        text = expected[2:] if expected.startswith(("0x", "0X")) else expected
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise DatasetError(f"expected hash is not hex: {expected!r}") from exc
    else:
        raw = bytes(expected)
    if len(raw) != 32:
        raise DatasetError("expected hash must be 32 bytes", expected=32, got=len(raw))
    return raw


# --------------------------------------------------------------------------- encode


def _metadata(num_classes: int, name: str) -> dict[str, str]:
    doc = {"format": FORMAT_VERSION, "name": name, "num_classes": num_classes}
    return {METADATA_KEY: json.dumps(doc, sort_keys=True, separators=(",", ":"))}


def dataset_to_bytes(ds: Dataset) -> bytes:
    """The canonical safetensors blob of ``ds`` (deterministic: same dataset, same bytes)."""
    _validate(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes, ds.name)
    tensors = {
        "x_train": ds.x_train.contiguous().cpu(),
        "y_train": ds.y_train.contiguous().cpu(),
        "x_test": ds.x_test.contiguous().cpu(),
        "y_test": ds.y_test.contiguous().cpu(),
    }
    return bytes(st_save(tensors, metadata=_metadata(ds.num_classes, ds.name)))


# --------------------------------------------------------------------------- decode


def dataset_from_bytes(
    blob: bytes,
    expected_hash: bytes | str | None = None,
    max_bytes: int = DEFAULT_MAX_DATASET_BYTES,
) -> Dataset:
    """Parse and check a dataset blob (safetensors, or npz without pickle).

    Raises :class:`DatasetError` on: a blob over ``max_bytes``; a content hash other
    than ``expected_hash``; an unknown or corrupt container; missing or extra tensors;
    a dtype other than int8 for inputs or integer for labels; inconsistent shapes;
    labels outside ``[0, num_classes)``.
    """
    blob = bytes(blob)
    if len(blob) > max_bytes:
        raise DatasetError("dataset blob too large", expected=f"<= {max_bytes} bytes", got=len(blob))
    if expected_hash is not None:
        want = _hash_bytes(expected_hash)
        found = content_hash(blob)
        if found != want:
            raise DatasetError("dataset content hash mismatch", expected=want, got=found)
    if blob.startswith(_ZIP_MAGIC):
        return _from_npz(blob, max_bytes)
    return _from_safetensors(blob)


def _from_safetensors(blob: bytes) -> Dataset:
    if len(blob) < 8:
        raise DatasetError("dataset blob is neither safetensors nor npz (too short)")
    header_len = int.from_bytes(blob[:8], "little")
    if header_len > min(len(blob) - 8, _SAFETENSORS_MAX_HEADER) or blob[8:9] != b"{":
        raise DatasetError("dataset blob is neither safetensors nor npz (bad header)")
    try:
        # Depth-bounded before parsing (safejson): the header is untrusted bytes.
        meta_raw = safejson.loads(blob[8 : 8 + header_len], max_depth=_HEADER_JSON_DEPTH).get("__metadata__") or {}
        tensors = st_load(blob)
    except Exception as exc:  # any parser failure on untrusted bytes is a bad blob
        raise DatasetError(f"corrupt safetensors dataset: {exc}") from exc
    if not isinstance(meta_raw, dict) or set(meta_raw) != {METADATA_KEY}:
        raise DatasetError(
            "safetensors metadata must hold exactly one key",
            expected=[METADATA_KEY],
            got=sorted(meta_raw) if isinstance(meta_raw, dict) else meta_raw,
        )
    try:
        meta = safejson.loads(meta_raw[METADATA_KEY], max_depth=_HEADER_JSON_DEPTH)
        fmt, name, num_classes = meta["format"], meta["name"], meta["num_classes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"bad {METADATA_KEY} metadata: {exc}") from exc
    if fmt != FORMAT_VERSION:
        raise DatasetError("unknown dataset format version", expected=FORMAT_VERSION, got=fmt)
    if set(meta) != {"format", "name", "num_classes"}:
        raise DatasetError("unexpected metadata fields", expected=["format", "name", "num_classes"], got=sorted(meta))
    if sorted(tensors) != sorted(TENSOR_NAMES):
        raise DatasetError("wrong tensor names", expected=sorted(TENSOR_NAMES), got=sorted(tensors))
    for label in ("y_train", "y_test"):
        if tensors[label].dtype != torch.int64:
            raise DatasetError(f"{label} must be int64", expected="int64", got=str(tensors[label].dtype))
    return _validate(
        tensors["x_train"], tensors["y_train"], tensors["x_test"], tensors["y_test"], num_classes, name
    )


def _from_npz(blob: bytes, max_bytes: int) -> Dataset:
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DatasetError(f"corrupt npz dataset: {exc}") from exc
    if declared > max_bytes:
        # a small compressed npz can expand to gigabytes: check before reading
        raise DatasetError("npz dataset expands too large", expected=f"<= {max_bytes} bytes", got=declared)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            names = set(npz.files)
            allowed = set(TENSOR_NAMES) | {"num_classes", "name"}
            if not set(TENSOR_NAMES) <= names or not names <= allowed:
                raise DatasetError(
                    "wrong npz array names", expected=sorted(TENSOR_NAMES) + ["[name]", "[num_classes]"], got=sorted(names)
                )
            for key in sorted(names):
                arrays[key] = npz[key]
    except DatasetError:
        raise
    except ValueError as exc:  # includes "Object arrays cannot be loaded when allow_pickle=False"
        raise DatasetError(f"npz dataset refused (pickle is never loaded): {exc}") from exc
    except Exception as exc:  # any parser failure on untrusted bytes is a bad blob
        raise DatasetError(f"corrupt npz dataset: {exc}") from exc

    labels = {}
    for label in ("y_train", "y_test"):
        y = arrays[label]
        if y.dtype.kind not in "iu" or y.dtype.itemsize > 8 or (y.dtype.kind == "u" and y.dtype.itemsize == 8):
            raise DatasetError(f"{label} must be an integer array", expected="int8..int64/uint8..uint32", got=str(y.dtype))
        labels[label] = torch.from_numpy(np.ascontiguousarray(y.astype(np.int64)))
    xs = {}
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype != np.int8:
            raise DatasetError(
                f"{key} must be int8 (quantise at job creation with quantize_int8)", expected="int8", got=str(x.dtype)
            )
        xs[key] = torch.from_numpy(np.ascontiguousarray(x))
    name = ""
    if "name" in arrays:
        arr = arrays["name"]
        if arr.dtype.kind != "U" or arr.ndim != 0:
            raise DatasetError("npz 'name' must be a string scalar", got=str(arr.dtype))
        name = str(arr[()])
    if "num_classes" in arrays:
        arr = arrays["num_classes"]
        if arr.dtype.kind not in "iu" or arr.ndim != 0:
            raise DatasetError("npz 'num_classes' must be an integer scalar", got=str(arr.dtype))
        num_classes = int(arr[()])
    else:
        tops = [int(y.max()) for y in labels.values() if y.numel() > 0]
        num_classes = max(tops) + 1 if tops else 0
    return _validate(xs["x_train"], labels["y_train"], xs["x_test"], labels["y_test"], num_classes, name)


def _validate(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: object,
    name: object,
) -> Dataset:
    if not isinstance(name, str) or len(name) > MAX_NAME_LEN:
        raise DatasetError("name must be a string of at most 256 characters", got=name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or not 2 <= num_classes <= MAX_CLASSES:
        raise DatasetError("num_classes out of range", expected=f"2..{MAX_CLASSES}", got=num_classes)
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.dtype != torch.int8:
            raise DatasetError(f"{key} must be int8", expected="int8", got=str(x.dtype))
        if x.dim() < 2:
            raise DatasetError(f"{key} must be [N, *input_shape]", expected="ndim >= 2", got=x.dim())
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.dtype != torch.int64:
            raise DatasetError(f"{key} must be int64", expected="int64", got=str(y.dtype))
        if y.dim() != 1:
            raise DatasetError(f"{key} must be 1-D", expected=1, got=y.dim())
    if x_train.shape[0] < 1:
        raise DatasetError("training set is empty", expected=">= 1 example", got=0)
    if x_test.shape[1:] != x_train.shape[1:]:
        raise DatasetError("x_test and x_train input shapes differ", expected=tuple(x_train.shape[1:]), got=tuple(x_test.shape[1:]))
    if any(d < 1 for d in x_train.shape[1:]):
        raise DatasetError("input shape has an empty dimension", got=tuple(x_train.shape[1:]))
    for xk, x, yk, y in (("x_train", x_train, "y_train", y_train), ("x_test", x_test, "y_test", y_test)):
        if y.shape[0] != x.shape[0]:
            raise DatasetError(f"{yk} length differs from {xk}", expected=x.shape[0], got=y.shape[0])
        if y.numel() > 0:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= num_classes:
                bad = lo if lo < 0 else hi
                raise DatasetError(f"label in {yk} out of range", expected=f"0..{num_classes - 1}", got=bad)
    return Dataset(x_train, y_train, x_test, y_test, num_classes, name)


# --------------------------------------------------------------------------- job creation


def quantize_int8(x: np.ndarray, scale_from: np.ndarray | None = None) -> np.ndarray:
    """Deterministic quantisation of raw features to int8 (job creation only).

    * int8: unchanged.
    * uint8 (e.g. pixels 0..255): ``x >> 1`` (0..127), exact integer arithmetic.
    * any other integer or float dtype: in float64, ``m = max |v|`` over ``scale_from``
      (default ``x``; pass the training set so train and test share one scale);
      ``q = clip(rint(x * (127 / m)), -127, 127)`` with round-half-to-even (IEEE-754
      float64 multiply and ``rint`` give the same result on every platform); ``m == 0``
      gives zeros. NaN or infinity is refused.
    """
    x = np.asarray(x)
    if x.dtype == np.int8:
        return x.copy()
    if x.dtype == np.uint8:
        return (x >> 1).astype(np.int8)
    if x.dtype.kind not in "iuf":
        raise DatasetError("cannot quantise features of this dtype", expected="integer or float", got=str(x.dtype))
    ref = np.asarray(x if scale_from is None else scale_from).astype(np.float64)
    xf = x.astype(np.float64)
    if not (np.isfinite(xf).all() and np.isfinite(ref).all()):
        raise DatasetError("features contain NaN or infinity")
    m = float(np.abs(ref).max()) if ref.size else 0.0
    if m == 0.0:
        return np.zeros(x.shape, dtype=np.int8)
    q = np.rint(xf * (127.0 / m))
    return np.clip(q, -127, 127).astype(np.int8)


def make_dataset(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int | None = None,
    name: str = "",
) -> Dataset:
    """Build a checked :class:`Dataset` from raw arrays, quantising features with one scale
    taken from the training set (:func:`quantize_int8`)."""
    x_train = np.asarray(x_train)
    qx_train = quantize_int8(x_train)
    qx_test = quantize_int8(np.asarray(x_test), scale_from=x_train)
    y_tr = np.asarray(y_train).astype(np.int64)
    y_te = np.asarray(y_test).astype(np.int64)
    if num_classes is None:
        num_classes = int(max(y_tr.max(initial=0), y_te.max(initial=0))) + 1
    return _validate(
        torch.from_numpy(np.ascontiguousarray(qx_train)),
        torch.from_numpy(np.ascontiguousarray(y_tr)),
        torch.from_numpy(np.ascontiguousarray(qx_test)),
        torch.from_numpy(np.ascontiguousarray(y_te)),
        num_classes,
        name,
    )


def digits_split(n: int = 1797, test_size: int = DIGITS_TEST_SIZE) -> tuple[list[int], list[int]]:
    """The fixed train/test split of the digits: ``(train rows, test rows)``, each ascending.

    Rows are ranked by ``keccak256(b"pouw/digits-split" || uint32_be(row))``; the
    ``test_size`` lowest-ranked rows are the test set. (The file's own tail is not used:
    its last 297 images come from other writers and cap any model near 92%.)
    """
    ranked = sorted(range(n), key=lambda r: keccak256(DIGITS_SPLIT_LABEL + r.to_bytes(4, "big")))
    test = sorted(ranked[:test_size])
    chosen = set(test)
    return [r for r in range(n) if r not in chosen], test


def load_digits(input_shape: tuple[int, ...] = (64,)) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, offline), quantised to int8.

    Split by :func:`digits_split`: 1500 train, 297 test. Pixels 0..16 become
    ``rint(v * 127/16)`` (0..127). ``input_shape`` is ``(64,)`` for an MLP or
    ``(1, 8, 8)`` for a CNN.
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    if int(np.prod(input_shape)) != x.shape[1]:
        raise DatasetError("digits input_shape must have 64 elements", expected=64, got=input_shape)
    train, test = digits_split(x.shape[0])
    ds = make_dataset(x[train], y[train], x[test], y[test], num_classes=10, name="sklearn-digits")
    return Dataset(
        ds.x_train.reshape(-1, *input_shape),
        ds.y_train,
        ds.x_test.reshape(-1, *input_shape),
        ds.y_test,
        ds.num_classes,
        ds.name,
    )


def synthetic_blobs(
    seed: bytes | int,
    n_train: int,
    n_test: int,
    input_shape: tuple[int, ...] = (64,),
    num_classes: int = 10,
    spread: int = 24,
) -> Dataset:
    """Gaussian-like class blobs from the keccak PRNG only: deterministic on any machine.

    Per class a centre with coordinates uniform in ``[-64, 64]``; each example is its
    class centre plus, per coordinate, ``floor((b0 + b1 + b2 + b3 - 510) * spread / 255)``
    with ``b0..b3`` the coordinate's four bytes of the noise stream (bell-shaped
    Irwin-Hall noise in ``[-2*spread, 2*spread]``), clipped to ``[-127, 127]``;
    labels are uniform in ``[0, num_classes)``. Streams are keyed by
    ``derive_key(seed32, b"synthetic/<part>")`` with ``seed32`` the seed bytes (an int
    seed becomes 32-byte big-endian).
    """
    key = seed.to_bytes(32, "big") if isinstance(seed, int) else bytes(seed)
    dim = int(np.prod(input_shape))
    centres = np.asarray(uniform_below(derive_key(key, b"synthetic/centres"), 129, num_classes * dim), dtype=np.int64)
    centres = centres.reshape(num_classes, dim) - 64

    def part(label: bytes, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = np.asarray(uniform_below(derive_key(key, b"synthetic/y/" + label), num_classes, n), dtype=np.int64)
        raw = np.frombuffer(prng_bytes(derive_key(key, b"synthetic/noise/" + label), 4 * n * dim), dtype=np.uint8)
        byte_sums = raw.astype(np.int64).reshape(n, dim, 4).sum(axis=2)  # 0..1020, bell-shaped
        noise = ((byte_sums - 510) * spread) // 255
        x = np.clip(centres[y] + noise, -127, 127).astype(np.int8).reshape(n, *input_shape)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    x_tr, y_tr = part(b"train", n_train)
    x_te, y_te = part(b"test", n_test)
    return _validate(x_tr, y_tr, x_te, y_te, num_classes, f"synthetic-blobs-{num_classes}x{dim}")

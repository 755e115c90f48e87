"""Datasets: int8 arrays in a format that cannot execute code, named by content hash.

A job names its dataset by ``content_hash(blob)`` = keccak256 of the blob's bytes, and a
node loads the blob only through :func:`dataset_from_bytes`, which checks, cheapest
first: size, hash, container format, tensor names, dtypes, shapes, label range.

Canonical container: **safetensors** with exactly four tensors

* ``x_train`` int8 ``[N, *input_shape]``, ``y_train`` int64 ``[N]``
* ``x_test``  int8 ``[M, *input_shape]``, ``y_test``  int64 ``[M]``

and a single metadata entry ``"pouw.dataset"`` holding canonical JSON
(``{"format":1,"name":...,"num_classes":...}``, sorted keys, no spaces, plus
``"feature_scale"`` when the dataset records how its features were quantised). One key
only: the safetensors library writes several metadata keys in a per-process random
order, which would make the content hash of one dataset differ between runs.

The dataset id is keccak256 of the exact bytes, so :func:`dataset_to_bytes` writes them
itself (:func:`canonical_safetensors`, docs/protocol.md §8 specifies every byte) rather
than through the safetensors library: another writer, or another version of the
library, cannot change the id of a dataset. The bytes are those the safetensors library
writes for the same tensors (tested), so any safetensors reader loads them.

Alternative input: **npz** read with ``numpy.load(..., allow_pickle=False)`` with the
same four array names (integer labels of any width are widened to int64) and optional
``num_classes`` (integer scalar, default ``max label + 1``), ``name`` (string) and
``feature_scale`` (float scalar). An npz whose arrays need pickle is refused.

Quantisation to int8 happens once, at job creation (:func:`quantize_int8`), never on
the recomputed path: the content hash names the int8 data that validators use. A
dataset made from float features by :func:`dataset_from_float_arrays` (``pouw-node
dataset make``) records the scale it used, ``feature_scale``: one number ``s`` for every
feature, or one ``s_j`` per feature element (the default of ``dataset make``: features
in different units each keep their resolution), with ``q_j = clip(rint(x_j * s_j), -127,
127)``: a trained model can then be applied to new float features
(``pouw.evaluate.export_torch(..., feature_scale=...)``).
"""
from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

import safejson
from pouw.errors import DatasetError
from pouw.prng import derive_key, keccak256, prng_bytes, uniform_below

if TYPE_CHECKING:
    import torch
# torch is imported where a dataset's tensors are made or read, not here: the job
# registry reads dataset ids and blob sizes through this module, and a development
# node (which never trains) serves its RPC without loading torch.

__all__ = [
    "Dataset",
    "DEFAULT_MAX_DATASET_BYTES",
    "METADATA_KEY",
    "TENSOR_NAMES",
    "content_hash",
    "dataset_id",
    "dataset_to_bytes",
    "canonical_safetensors",
    "dataset_from_bytes",
    "quantize_int8",
    "quantization_scale",
    "feature_scales",
    "quantize_features",
    "make_dataset",
    "dataset_from_float_arrays",
    "split_train_test",
    "read_feature_table",
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
    feature_scale: float | tuple[float, ...] | None = None
    """How the int8 features were made from the original ones, when the dataset records
    it: ``q = clip(rint(x * feature_scale), -127, 127)``, with one number for all features
    or a tuple of one per feature element (``x`` flattened per example). None: not
    recorded (the built-in sets, and every dataset file from before this field)."""

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


def _metadata(num_classes: int, name: str, feature_scale: float | tuple[float, ...] | None = None) -> dict[str, str]:
    doc: dict[str, object] = {"format": FORMAT_VERSION, "name": name, "num_classes": num_classes}
    if isinstance(feature_scale, tuple):
        doc["feature_scale"] = [float(v) for v in feature_scale]  # repr: the shortest text that reads back exactly
    elif feature_scale is not None:
        doc["feature_scale"] = float(feature_scale)
    return {METADATA_KEY: json.dumps(doc, sort_keys=True, separators=(",", ":"))}


def dataset_to_bytes(ds: Dataset) -> bytes:
    """The canonical safetensors blob of ``ds`` (deterministic: same dataset, same bytes)."""
    _validate(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes, ds.name, ds.feature_scale)
    tensors = {"x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}
    return canonical_safetensors(tensors, _metadata(ds.num_classes, ds.name, ds.feature_scale))


_ST_DTYPES: Final = {"torch.int64": ("I64", 0), "torch.int8": ("I8", 1)}
"""safetensors dtype string of each tensor dtype a dataset holds, and its rank in the
tensor order (the safetensors library orders tensors by dtype, widest first, then name)."""
_ST_ALIGN: Final = 8


def canonical_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The exact bytes of a dataset blob (docs/protocol.md §8, "Exact bytes").

    ``uint64_le(len(header)) || header || data``. The header is compact JSON: first
    ``"__metadata__"`` (string values, JSON-escaped), then one entry per tensor
    ``{"dtype":D,"shape":[...],"data_offsets":[begin,end]}`` in tensor order (int64
    tensors before int8 ones, each group by name), then spaces up to a multiple of 8
    bytes. ``data`` is the tensors' row-major little-endian bytes, concatenated in the same
    order. These are the bytes the safetensors library (0.8, tested) writes for the
    same arguments; writing them here keeps dataset ids independent of the library.
    """
    order = sorted(tensors, key=lambda name: (_ST_DTYPES[str(tensors[name].dtype)][1], name))
    entries = []
    chunks = []
    offset = 0
    for name in order:
        t = tensors[name].detach().cpu().contiguous()
        arr = t.numpy()
        raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()  # row-major, little-endian
        entries.append(
            json.dumps(name) + ':{"dtype":"' + _ST_DTYPES[str(t.dtype)][0] + '","shape":['
            + ",".join(str(int(d)) for d in t.shape) + '],"data_offsets":[' + f"{offset},{offset + len(raw)}" + "]}"
        )
        chunks.append(raw)
        offset += len(raw)
    for text in (*metadata, *metadata.values()):
        if not all(" " <= ch <= "~" for ch in text):  # then JSON escapes only '"' and '\\', as every writer does
            raise ValueError(f"metadata must be printable ASCII: {text!r}")
    meta = ",".join(json.dumps(key) + ":" + json.dumps(value) for key, value in sorted(metadata.items()))
    header = ('{"__metadata__":{' + meta + "}," + ",".join(entries) + "}").encode("ascii")
    header += b" " * (-len(header) % _ST_ALIGN)
    return len(header).to_bytes(8, "little") + header + b"".join(chunks)


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
    import torch
    from safetensors.torch import load as st_load

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
    if not {"format", "name", "num_classes"} <= set(meta) <= {"format", "name", "num_classes", "feature_scale"}:
        raise DatasetError(
            "unexpected metadata fields", expected=["[feature_scale]", "format", "name", "num_classes"], got=sorted(meta)
        )
    feature_scale = meta.get("feature_scale")
    if "feature_scale" in meta and feature_scale is None:
        raise DatasetError("feature_scale must be a number or a list of numbers when present", got=feature_scale)
    if isinstance(feature_scale, list):
        feature_scale = tuple(feature_scale)
    if sorted(tensors) != sorted(TENSOR_NAMES):
        raise DatasetError("wrong tensor names", expected=sorted(TENSOR_NAMES), got=sorted(tensors))
    for label in ("y_train", "y_test"):
        if tensors[label].dtype != torch.int64:
            raise DatasetError(f"{label} must be int64", expected="int64", got=str(tensors[label].dtype))
    return _validate(
        tensors["x_train"], tensors["y_train"], tensors["x_test"], tensors["y_test"], num_classes, name, feature_scale
    )


def _from_npz(blob: bytes, max_bytes: int) -> Dataset:
    import torch

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
            allowed = set(TENSOR_NAMES) | {"num_classes", "name", "feature_scale"}
            if not set(TENSOR_NAMES) <= names or not names <= allowed:
                raise DatasetError(
                    "wrong npz array names",
                    expected=sorted(TENSOR_NAMES) + ["[feature_scale]", "[name]", "[num_classes]"], got=sorted(names),
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
    feature_scale: object = None
    if "feature_scale" in arrays:
        arr = arrays["feature_scale"]
        if arr.dtype.kind != "f" or arr.ndim > 1:
            raise DatasetError("npz 'feature_scale' must be a float scalar or 1-D float array", got=str(arr.dtype))
        feature_scale = float(arr[()]) if arr.ndim == 0 else tuple(float(v) for v in arr)
    return _validate(
        xs["x_train"], labels["y_train"], xs["x_test"], labels["y_test"], num_classes, name, feature_scale
    )


def _validate(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    num_classes: object,
    name: object,
    feature_scale: object = None,
) -> Dataset:
    import torch

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
    scale = _check_scale(feature_scale, int(np.prod(tuple(x_train.shape[1:]))))
    return Dataset(x_train, y_train, x_test, y_test, num_classes, name, scale)


def _check_scale(value: object, features: int) -> float | tuple[float, ...] | None:
    """A recorded feature scale: None, a finite number >= 0, or one such number per
    feature element."""
    if value is None:
        return None

    def number(v: object) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise DatasetError("feature_scale must be a finite number >= 0 (or a list of them)", got=v)
        return float(v)

    if isinstance(value, (list, tuple)):
        if len(value) != features:
            raise DatasetError("feature_scale needs one number per feature element", expected=features, got=len(value))
        return tuple(number(v) for v in value)
    return number(value)


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


def quantization_scale(x: np.ndarray) -> float:
    """The ``feature_scale`` that :func:`quantize_int8` uses for float (or wide integer)
    features whose training set is ``x``: ``127 / max|x|`` in float64 (0.0 when every
    feature is 0), so that ``q = clip(rint(x * scale), -127, 127)``."""
    ref = np.asarray(x).astype(np.float64)
    if not np.isfinite(ref).all():
        raise DatasetError("features contain NaN or infinity")
    m = float(np.abs(ref).max()) if ref.size else 0.0
    return 0.0 if m == 0.0 else 127.0 / m


def split_train_test(n: int, test_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """A reproducible split of rows ``0..n-1``: ``(train rows, test rows)``, each ascending.

    Rows are ranked by ``keccak256(b"pouw/dataset-split" || uint64_be(seed) || uint32_be(row))``
    and the ``round(n * test_fraction)`` lowest-ranked rows are the test set (at least one
    training row is kept). Same inputs, same split, on any machine."""
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetError("test fraction must be in [0, 1)", got=test_fraction)
    if not 0 <= seed < 2**64:
        raise DatasetError("split seed must be in [0, 2**64)", got=seed)
    n_test = min(n - 1, int(round(n * test_fraction))) if n > 1 else 0
    label = b"pouw/dataset-split" + seed.to_bytes(8, "big")
    ranked = sorted(range(n), key=lambda r: keccak256(label + r.to_bytes(4, "big")))
    test = sorted(ranked[:n_test])
    chosen = set(test)
    return [r for r in range(n) if r not in chosen], test


def feature_scales(x: np.ndarray) -> tuple[float, ...]:
    """One scale per feature element of the training set ``x`` [N, ...]: ``127 / max_n |x_nj|``
    in float64 (0.0 for an element that is 0 everywhere)."""
    ref = np.asarray(x).astype(np.float64).reshape(np.asarray(x).shape[0], -1)
    if not np.isfinite(ref).all():
        raise DatasetError("features contain NaN or infinity")
    tops = np.abs(ref).max(axis=0) if ref.shape[0] else np.zeros(ref.shape[1])
    return tuple(0.0 if m == 0.0 else 127.0 / float(m) for m in tops)


def quantize_features(x: np.ndarray, scale: float | tuple[float, ...]) -> np.ndarray:
    """``clip(rint(x * scale), -127, 127)`` as int8, in float64 with round half to even;
    a tuple scale applies one number per feature element (``x`` flattened per example)."""
    xf = np.asarray(x).astype(np.float64)
    if not np.isfinite(xf).all():
        raise DatasetError("features contain NaN or infinity")
    flat = xf.reshape(xf.shape[0], -1)
    factors = np.asarray(scale, dtype=np.float64)
    q = np.clip(np.rint(flat * factors), -127, 127).astype(np.int8)
    return q.reshape(xf.shape)


def dataset_from_float_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int | None = None,
    name: str = "",
    input_shape: tuple[int, ...] | None = None,
    per_feature: bool = True,
) -> Dataset:
    """A dataset from float (or any numeric) features that records its quantisation.

    Features are read as float64 and quantised to int8 with scales taken from the
    training set only (test features beyond its range are clipped): one per feature
    element (``per_feature``, the default: features in different units each use the
    whole int8 range) or one for all (:func:`quantize_int8`'s rule). The dataset keeps
    them as ``feature_scale``: a model trained on it takes the original float features
    (``export_torch(..., feature_scale=...)``). ``input_shape`` reshapes each example
    (e.g. ``(1, 8, 8)`` for a CNN); default: as given. Labels must be integers in
    ``[0, num_classes)``."""
    import torch

    xf_train = np.asarray(x_train)
    xf_test = np.asarray(x_test)
    for key, x in (("x_train", xf_train), ("x_test", xf_test)):
        if x.dtype.kind not in "iuf" or x.dtype == np.bool_:
            raise DatasetError(f"{key}: features must be numbers", expected="integer or float", got=str(x.dtype))
    xf_train = xf_train.astype(np.float64)
    xf_test = xf_test.astype(np.float64)
    if xf_train.ndim < 2 or xf_train.shape[0] < 1:
        raise DatasetError("x_train must be [N, features...] with N >= 1", got=tuple(xf_train.shape))
    shape = tuple(xf_train.shape[1:]) if input_shape is None else tuple(int(d) for d in input_shape)
    per_example = int(np.prod(shape))
    for key, x in (("x_train", xf_train), ("x_test", xf_test)):
        if x.size and int(np.prod(x.shape[1:])) != per_example:
            raise DatasetError(f"{key}: features per example differ from the input shape",
                               expected=f"{per_example} ({shape})", got=int(np.prod(x.shape[1:])))
    xf_train = xf_train.reshape(-1, *shape)
    xf_test = xf_test.reshape(-1, *shape)
    scale: float | tuple[float, ...] = feature_scales(xf_train) if per_feature else quantization_scale(xf_train)
    labels = []
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        y = np.asarray(y)
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or not (y == np.rint(y)).all():
                raise DatasetError(f"{key}: labels must be whole numbers (class ids)")
        elif y.dtype.kind not in "iu":
            raise DatasetError(f"{key}: labels must be integers (class ids)", got=str(y.dtype))
        labels.append(y.astype(np.int64).reshape(-1))
    if num_classes is None:
        num_classes = int(max(labels[0].max(initial=0), labels[1].max(initial=0))) + 1
    return _validate(
        torch.from_numpy(np.ascontiguousarray(quantize_features(xf_train, scale))),
        torch.from_numpy(np.ascontiguousarray(labels[0])),
        torch.from_numpy(np.ascontiguousarray(quantize_features(xf_test, scale))),
        torch.from_numpy(np.ascontiguousarray(labels[1])),
        num_classes, name, scale,
    )


def read_feature_table(
    path: str, label_column: str | int | None = None, max_bytes: int = DEFAULT_MAX_DATASET_BYTES * 8,
) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Features and labels from a CSV file: ``(x float64 [N, F], y int64 [N], class names)``.

    One example per row, comma-separated numbers; a first row that is not all numbers is
    a header. ``label_column`` is a header name or a 0-based index (default: the last
    column); the other columns are the features. Labels that are all integers are the
    class ids; otherwise each distinct label becomes a class, in sorted order, and the
    names are returned (else None)."""
    import csv
    import os

    size = os.path.getsize(path)
    if size > max_bytes:
        raise DatasetError("CSV file too large", expected=f"<= {max_bytes} bytes", got=size)
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetError(f"{path}: no rows")

    def numeric(cell: str) -> bool:
        try:
            float(cell)
            return True
        except ValueError:
            return False

    header: list[str] | None = None
    if not all(numeric(cell) for i, cell in enumerate(rows[0]) if i != _label_index(rows[0], label_column, None)):
        header = [cell.strip() for cell in rows[0]]
        rows = rows[1:]
    if not rows:
        raise DatasetError(f"{path}: a header and no data")
    width = len(rows[0])
    if width < 2:
        raise DatasetError(f"{path}: need at least one feature column and a label column", got=width)
    label = _label_index(rows[0], label_column, header)
    features: list[list[float]] = []
    raw_labels: list[str] = []
    for line, row in enumerate(rows, start=2 if header else 1):
        if len(row) != width:
            raise DatasetError(f"{path}: row {line} has {len(row)} columns", expected=width, got=len(row))
        try:
            features.append([float(cell) for i, cell in enumerate(row) if i != label])
        except ValueError:
            raise DatasetError(f"{path}: row {line}: a feature is not a number") from None
        raw_labels.append(row[label].strip())
    x = np.asarray(features, dtype=np.float64)
    if not np.isfinite(x).all():
        raise DatasetError(f"{path}: features contain NaN or infinity")
    try:
        as_ints = [int(v) for v in raw_labels]
        if min(as_ints) < 0:
            raise ValueError
        return x, np.asarray(as_ints, dtype=np.int64), None
    except ValueError:
        names = sorted(set(raw_labels))
        index = {name: i for i, name in enumerate(names)}
        return x, np.asarray([index[v] for v in raw_labels], dtype=np.int64), names


def _label_index(row: list[str], label_column: str | int | None, header: list[str] | None) -> int:
    if label_column is None:
        return len(row) - 1
    if isinstance(label_column, int) or (isinstance(label_column, str) and label_column.lstrip("-").isdigit()):
        index = int(label_column)
        index = index + len(row) if index < 0 else index
        if not 0 <= index < len(row):
            raise DatasetError("label column out of range", expected=f"0..{len(row) - 1}", got=label_column)
        return index
    if header is None:
        return len(row) - 1  # deciding whether row 0 is a header: a named column implies one
    if label_column not in header:
        raise DatasetError("no such label column in the CSV header", expected=header, got=label_column)
    return header.index(label_column)


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
    import torch

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

    import torch

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

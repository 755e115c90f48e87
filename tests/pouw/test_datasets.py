"""pouw.datasets: canonical blobs, content hashes, and every refusal of a bad blob."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from pouw.datasets import (
    METADATA_KEY,
    Dataset,
    content_hash,
    dataset_from_bytes,
    dataset_id,
    dataset_to_bytes,
    digits_split,
    load_digits,
    make_dataset,
    quantize_int8,
    synthetic_blobs,
)
from pouw.errors import DatasetError


@pytest.fixture(scope="module")
def small() -> Dataset:
    return synthetic_blobs(b"\x05" * 32, 64, 16, (12,), num_classes=4)


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _st(tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> bytes:
    if meta is None:
        meta = {METADATA_KEY: json.dumps({"format": 1, "name": "t", "num_classes": 4}, separators=(",", ":"), sort_keys=True)}
    return bytes(st_save(tensors, metadata=meta))


def _tensors(ds: Dataset) -> dict[str, torch.Tensor]:
    return {"x_train": ds.x_train, "y_train": ds.y_train, "x_test": ds.x_test, "y_test": ds.y_test}


def test_round_trip(small: Dataset) -> None:
    blob = dataset_to_bytes(small)
    back = dataset_from_bytes(blob, expected_hash=content_hash(blob))
    for name in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(back, name), getattr(small, name))
    assert back.num_classes == 4 and back.name == small.name
    assert dataset_to_bytes(back) == blob
    assert dataset_id(blob) == "0x" + content_hash(blob).hex()
    assert dataset_from_bytes(blob, expected_hash=dataset_id(blob)).num_classes == 4


def test_blob_bytes_are_stable_across_processes(small: Dataset) -> None:
    # safetensors writes several metadata keys in a per-process random order; one key fixes it
    code = (
        "from pouw.datasets import synthetic_blobs, dataset_to_bytes, dataset_id;"
        "print(dataset_id(dataset_to_bytes(synthetic_blobs(b'\\x05' * 32, 64, 16, (12,), num_classes=4))))"
    )
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)}
    assert ids == {dataset_id(dataset_to_bytes(small))}


def test_synthetic_known_answer() -> None:
    ds = synthetic_blobs(b"\x05" * 32, 64, 16, (12,), num_classes=4)
    assert dataset_id(dataset_to_bytes(ds)) == SYNTHETIC_ID


SYNTHETIC_ID = "0xa551a93cccf78f37bfff3e5dc48746bbfcb5364fd5f7a1273a4ba5856de0f283"


def test_digits() -> None:
    ds = load_digits()
    assert ds.x_train.shape == (1500, 64) and ds.x_test.shape == (297, 64)
    assert ds.x_train.dtype == torch.int8 and int(ds.x_train.min()) >= 0 and int(ds.x_train.max()) == 127
    assert ds.num_classes == 10
    assert dataset_id(dataset_to_bytes(ds)) == DIGITS_ID
    assert load_digits((1, 8, 8)).x_train.shape == (1500, 1, 8, 8)


def test_digits_split_is_fixed_and_disjoint() -> None:
    train, test = digits_split()
    assert len(train) == 1500 and len(test) == 297 and not set(train) & set(test)
    assert test[:5] == DIGITS_TEST_HEAD


DIGITS_ID = "0x1862800dac09a3a7375c1a6b5de0d97294b95d6384439cbef84e73551e078232"


def test_quantize_rules() -> None:
    assert quantize_int8(np.array([0, 255, 128, 3], dtype=np.uint8)).tolist() == [0, 127, 64, 1]
    assert quantize_int8(np.array([-2.0, 0.5, 1.0, 2.0])).tolist() == [-127, 32, 64, 127]  # 31.75 -> 32
    assert quantize_int8(np.array([0.25, 0.75]), scale_from=np.array([1.0])).tolist() == [32, 95]
    assert quantize_int8(np.zeros(3)).tolist() == [0, 0, 0]
    assert quantize_int8(np.array([5.0]), scale_from=np.array([1.0])).tolist() == [127]  # clipped
    # ties round half to even: 1 * 127/254 = 0.5 -> 0, 3 * 127/254 = 1.5 -> 2
    assert quantize_int8(np.array([1.0]), scale_from=np.array([254.0])).tolist() == [0]  # 0.5 -> 0 (even)
    assert quantize_int8(np.array([3.0]), scale_from=np.array([254.0])).tolist() == [2]  # 1.5 -> 2


def test_invalid_quantize_nan() -> None:
    with pytest.raises(DatasetError):
        quantize_int8(np.array([1.0, np.nan]))


def test_make_dataset_uses_train_scale() -> None:
    ds = make_dataset(np.array([[2.0], [-4.0]]), [0, 1], np.array([[8.0]]), [1])
    assert ds.x_train.flatten().tolist() == [64, -127]
    assert ds.x_test.flatten().tolist() == [127]
    assert ds.num_classes == 2


def test_npz_input(small: Dataset) -> None:
    blob = _npz(
        x_train=small.x_train.numpy(),
        y_train=small.y_train.numpy().astype(np.int32),
        x_test=small.x_test.numpy(),
        y_test=small.y_test.numpy().astype(np.uint8),
        num_classes=np.array(4),
        name=np.array("blobs"),
    )
    ds = dataset_from_bytes(blob)
    assert torch.equal(ds.x_train, small.x_train) and ds.y_train.dtype == torch.int64
    assert ds.name == "blobs" and ds.num_classes == 4


def test_invalid_hash_mismatch(small: Dataset) -> None:
    blob = dataset_to_bytes(small)
    with pytest.raises(DatasetError, match="hash mismatch"):
        dataset_from_bytes(blob, expected_hash=b"\x00" * 32)
    with pytest.raises(DatasetError, match="hash"):
        dataset_from_bytes(blob, expected_hash="0x1234")


def test_invalid_oversize(small: Dataset) -> None:
    blob = dataset_to_bytes(small)
    with pytest.raises(DatasetError, match="too large"):
        dataset_from_bytes(blob, max_bytes=len(blob) - 1)


def test_invalid_npz_zip_bomb() -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x_train=np.zeros((4000, 1000), np.int8), y_train=np.zeros(4000, np.int64),
                        x_test=np.zeros((1, 1000), np.int8), y_test=np.zeros(1, np.int64))
    blob = buf.getvalue()
    assert len(blob) < 100_000
    with pytest.raises(DatasetError, match="expands too large"):
        dataset_from_bytes(blob, max_bytes=1_000_000)


def test_invalid_npz_needs_pickle(small: Dataset) -> None:
    objs = np.empty(2, dtype=object)
    objs[0], objs[1] = {"a": 1}, [1, 2]
    blob = _npz(x_train=small.x_train.numpy(), y_train=objs, x_test=small.x_test.numpy(), y_test=small.y_test.numpy())
    with pytest.raises(DatasetError, match="pickle"):
        dataset_from_bytes(blob)


def test_invalid_raw_pickle() -> None:
    import pickle

    with pytest.raises(DatasetError):
        dataset_from_bytes(pickle.dumps({"x_train": [1, 2, 3]}))


def test_invalid_garbage() -> None:
    for blob in (b"", b"\x01", b"\xff" * 64, b"PK\x03\x04garbage", (10).to_bytes(8, "little") + b"{not json!}"):
        with pytest.raises(DatasetError):
            dataset_from_bytes(blob)


def test_invalid_dtype(small: Dataset) -> None:
    t = _tensors(small)
    with pytest.raises(DatasetError, match="x_train must be int8"):
        dataset_from_bytes(_st({**t, "x_train": small.x_train.float()}))
    with pytest.raises(DatasetError, match="y_train must be int64"):
        dataset_from_bytes(_st({**t, "y_train": small.y_train.int()}))
    with pytest.raises(DatasetError, match="int8"):
        dataset_from_bytes(_npz(**{k: v.numpy() for k, v in {**t, "x_test": small.x_test.float()}.items()}))
    with pytest.raises(DatasetError, match="integer"):
        dataset_from_bytes(_npz(**{k: v.numpy() for k, v in {**t, "y_test": small.y_test.float()}.items()}))


def test_invalid_shapes(small: Dataset) -> None:
    t = _tensors(small)
    with pytest.raises(DatasetError, match="input shapes differ"):
        dataset_from_bytes(_st({**t, "x_test": torch.zeros(16, 11, dtype=torch.int8)}))
    with pytest.raises(DatasetError, match="length differs"):
        dataset_from_bytes(_st({**t, "y_train": small.y_train[:-1].clone()}))
    with pytest.raises(DatasetError, match="ndim"):
        dataset_from_bytes(_st({**t, "x_train": torch.zeros(64, dtype=torch.int8), "x_test": torch.zeros(16, dtype=torch.int8)}))


def test_invalid_labels_out_of_range(small: Dataset) -> None:
    t = _tensors(small)
    y = small.y_train.clone()
    y[3] = 4
    with pytest.raises(DatasetError, match="out of range"):
        dataset_from_bytes(_st({**t, "y_train": y}))
    y[3] = -1
    with pytest.raises(DatasetError, match="out of range"):
        dataset_from_bytes(_st({**t, "y_train": y}))


def test_invalid_tensor_names_and_metadata(small: Dataset) -> None:
    t = _tensors(small)
    with pytest.raises(DatasetError, match="tensor names"):
        dataset_from_bytes(_st({**t, "extra": torch.zeros(1)}))
    with pytest.raises(DatasetError, match="metadata"):
        dataset_from_bytes(_st(t, meta={"name": "x", "num_classes": "4"}))
    with pytest.raises(DatasetError, match="num_classes"):
        dataset_from_bytes(_st(t, meta={METADATA_KEY: '{"format":1,"name":"t","num_classes":1}'}))
    with pytest.raises(DatasetError, match="format"):
        dataset_from_bytes(_st(t, meta={METADATA_KEY: '{"format":2,"name":"t","num_classes":4}'}))
    with pytest.raises(DatasetError, match="nested deeper"):  # bounded before json.loads
        dataset_from_bytes(_st(t, meta={METADATA_KEY: "[" * 100_000}))


def test_invalid_deeply_nested_safetensors_header(small: Dataset) -> None:
    blob = bytearray(_st(_tensors(small)))
    header_len = int.from_bytes(blob[:8], "little")
    deep = b'{"__metadata__":' + b"[" * (header_len - 20)
    deep = deep[:header_len].ljust(header_len, b" ")
    with pytest.raises(DatasetError, match="nested deeper"):
        dataset_from_bytes(bytes(blob[:8]) + deep + bytes(blob[8 + header_len :]))


def test_invalid_npz_names(small: Dataset) -> None:
    with pytest.raises(DatasetError, match="names"):
        dataset_from_bytes(_npz(x_train=small.x_train.numpy(), y_train=small.y_train.numpy()))


def test_zip_that_is_not_npz() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil.txt", "hello")
    with pytest.raises(DatasetError):
        dataset_from_bytes(buf.getvalue())


DIGITS_TEST_HEAD = [4, 14, 21, 32, 37]


# --- float features with their recorded scale (pouw-node dataset make) ----------------------------

from pouw.datasets import (  # noqa: E402
    dataset_from_float_arrays, feature_scales, quantization_scale, quantize_features, read_feature_table,
    split_train_test,
)


def _floats(n: int = 200, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 5)) * 0.3 + y[:, None] * np.array([1.5, -2.0, 0.5, 3.0, -0.25])
    return x, y


def test_float_features_record_one_scale_per_feature() -> None:
    x, y = _floats()
    x = x * np.array([1.0, 1000.0, 0.001, 1.0, 50.0])  # features in very different units
    ds = dataset_from_float_arrays(x[:150], y[:150], x[150:], y[150:], name="floats")
    scales = feature_scales(x[:150])
    assert ds.feature_scale == scales and len(scales) == 5
    assert scales == tuple(127.0 / np.abs(x[:150]).max(axis=0))
    assert torch.equal(ds.x_train, torch.from_numpy(quantize_features(x[:150], scales)))
    for j in range(5):  # every feature uses the whole int8 range on the training set
        assert int(ds.x_train[:, j].abs().max()) == 127
    blob = dataset_to_bytes(ds)
    meta = json.loads(json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])["__metadata__"][METADATA_KEY])
    assert meta["feature_scale"] == list(scales)
    back = dataset_from_bytes(blob)
    assert back.feature_scale == scales and dataset_to_bytes(back) == blob
    with pytest.raises(DatasetError, match="one number per feature"):
        dataset_to_bytes(Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, 3, "x", scales[:4]))


def test_float_features_with_one_scale() -> None:
    x, y = _floats()
    ds = dataset_from_float_arrays(x[:150], y[:150], x[150:], y[150:], name="floats", per_feature=False)
    scale = quantization_scale(x[:150])
    assert ds.feature_scale == scale == 127.0 / np.abs(x[:150]).max()
    assert torch.equal(ds.x_train, torch.from_numpy(quantize_int8(x[:150])))
    assert torch.equal(ds.x_test, torch.from_numpy(np.clip(np.rint(x[150:] * scale), -127, 127).astype(np.int8)))
    blob = dataset_to_bytes(ds)
    meta = json.loads(json.loads(blob[8:8 + int.from_bytes(blob[:8], "little")])["__metadata__"][METADATA_KEY])
    assert meta == {"feature_scale": scale, "format": 1, "name": "floats", "num_classes": 3}
    back = dataset_from_bytes(blob)
    assert back.feature_scale == scale and dataset_to_bytes(back) == blob  # exact round trip of the float


def test_a_scaled_dataset_is_the_same_bytes_in_every_process() -> None:
    code = (
        "import numpy as np;from pouw.datasets import dataset_from_float_arrays, dataset_to_bytes, dataset_id;"
        "x=np.linspace(-3.3,7.1,120).reshape(30,4);y=np.arange(30)%3;"
        "print(dataset_id(dataset_to_bytes(dataset_from_float_arrays(x[:20],y[:20],x[20:],y[20:]))))"
    )
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
           for _ in range(2)}
    assert len(ids) == 1


def _library_bytes(ds: Dataset) -> bytes:
    """What the safetensors library writes for the dataset's tensors and metadata."""
    from pouw.datasets import _metadata

    tensors = {k: v.contiguous() for k, v in _tensors(ds).items()}
    return bytes(st_save(tensors, metadata=_metadata(ds.num_classes, ds.name, ds.feature_scale)))


@pytest.mark.parametrize("case", ["small", "digits", "cnn-shape", "no-test", "odd-name", "one-scale", "scales"])
def test_the_canonical_bytes_are_what_the_safetensors_library_writes(small: Dataset, case: str) -> None:
    """dataset_to_bytes writes the bytes of docs/protocol.md §8 itself; they equal the
    library's for every kind of dataset, so ids did not change and any reader loads them."""
    x, y = small.x_train, small.y_train
    ds = {
        "small": small,
        "digits": load_digits(),
        "cnn-shape": Dataset(x.reshape(-1, 3, 2, 2), y, small.x_test.reshape(-1, 3, 2, 2), small.y_test, 4, "c"),
        "no-test": Dataset(x[:3], y[:3], small.x_test[:0], small.y_test[:0], 4, ""),
        "odd-name": Dataset(x, y, small.x_test, small.y_test, 4, 'q"\\/\n\t\x01\x7f\u00e9\U0001f600' + "x" * 200),
        "one-scale": Dataset(x, y, small.x_test, small.y_test, 4, "s", 1e-7),
        "scales": Dataset(x, y, small.x_test, small.y_test, 4, "s", tuple(float(v) for v in np.geomspace(1e-6, 1e17, 12))),
    }[case]
    blob = dataset_to_bytes(ds)
    assert blob == _library_bytes(ds)
    header_len = int.from_bytes(blob[:8], "little")
    assert header_len % 8 == 0 and dataset_to_bytes(dataset_from_bytes(blob)) == blob


def test_invalid_canonical_metadata_not_printable_ascii(small: Dataset) -> None:
    from pouw.datasets import canonical_safetensors

    with pytest.raises(ValueError, match="printable ASCII"):
        canonical_safetensors(_tensors(small), {METADATA_KEY: "caf\u00e9"})


def test_datasets_without_a_scale_keep_their_ids(small: Dataset) -> None:
    assert small.feature_scale is None and dataset_id(dataset_to_bytes(small)) == SYNTHETIC_ID
    assert load_digits().feature_scale is None  # and test_digits pins its id


def test_npz_may_carry_the_scale(small: Dataset) -> None:
    arrays = {k: v.numpy() for k, v in _tensors(small).items()}
    ds = dataset_from_bytes(_npz(**arrays, feature_scale=np.float64(0.25)))
    assert ds.feature_scale == 0.25
    per = dataset_from_bytes(_npz(**arrays, feature_scale=np.linspace(0.5, 1.5, 12)))
    assert per.feature_scale == tuple(np.linspace(0.5, 1.5, 12))
    with pytest.raises(DatasetError, match="feature_scale"):
        dataset_from_bytes(_npz(**arrays, feature_scale=np.int64(2)))
    with pytest.raises(DatasetError, match="one number per feature"):
        dataset_from_bytes(_npz(**arrays, feature_scale=np.ones(3)))


@pytest.mark.parametrize("scale", ["-1.0", "\"x\"", "true", "1e400", "null", "[1.0]", "[]", "{}",
                                   "[1,1,1,1,1,1,1,1,1,1,1,-1]", "[1,1,1,1,1,1,1,1,1,1,1,null]"])
def test_invalid_recorded_scale(small: Dataset, scale: str) -> None:
    meta = {METADATA_KEY: '{"feature_scale":' + scale + ',"format":1,"name":"t","num_classes":4}'}
    with pytest.raises(DatasetError, match="feature_scale|metadata"):
        dataset_from_bytes(_st(_tensors(small), meta=meta))


def test_split_is_reproducible_and_disjoint() -> None:
    train, test = split_train_test(100, 0.25, seed=7)
    assert len(test) == 25 and len(train) == 75 and not set(train) & set(test)
    assert (train, test) == split_train_test(100, 0.25, seed=7)
    assert test != split_train_test(100, 0.25, seed=8)[1]
    assert split_train_test(1, 0.5) == ([0], [])
    with pytest.raises(DatasetError):
        split_train_test(10, 1.0)


def test_csv_tables(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,species\n1.5,2,setosa\n-0.5,3e-1,virginica\n4,5,setosa\n")
    x, y, names = read_feature_table(str(path))
    assert x.tolist() == [[1.5, 2.0], [-0.5, 0.3], [4.0, 5.0]] and y.tolist() == [0, 1, 0]
    assert names == ["setosa", "virginica"]
    path.write_text("label,f1,f2\n2,1.0,2.0\n0,3.0,4.0\n")
    x, y, names = read_feature_table(str(path), "label")  # by header name
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.tolist() == [2, 0] and names is None
    path.write_text("0,1.0,2.0\n1,3.0,4.0\n")
    x, y, names = read_feature_table(str(path), "0")
    assert x.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.tolist() == [0, 1] and names is None


def test_invalid_csv_tables(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    for text, message in (("", "no rows"), ("a,b\n", "no data"), ("1,2\n3\n", "columns"), ("1\n2\n", "feature column"),
                          ("1,2,0\n2,x,1\n", "not a number"), ("nan,1\n2,0\n", "NaN")):
        path.write_text(text)
        with pytest.raises(DatasetError, match=message):
            read_feature_table(str(path))
    path.write_text("a,b\n1,0\n")
    with pytest.raises(DatasetError, match="label column"):
        read_feature_table(str(path), "zzz")
    with pytest.raises(DatasetError, match="label column"):
        read_feature_table(str(path), "5")


def test_invalid_float_arrays() -> None:
    x, y = _floats(20)
    with pytest.raises(DatasetError, match="whole numbers"):
        dataset_from_float_arrays(x, y + 0.5, x, y)
    with pytest.raises(DatasetError, match="NaN"):
        dataset_from_float_arrays(np.full((4, 2), np.nan), np.zeros(4), x[:0, :2], y[:0])
    with pytest.raises(DatasetError, match="input shape"):
        dataset_from_float_arrays(x, y, x, y, input_shape=(2, 2))
    with pytest.raises(DatasetError, match="numbers"):
        dataset_from_float_arrays(np.array([["a", "b"]]), np.zeros(1), np.array([["a", "b"]]), np.zeros(1))

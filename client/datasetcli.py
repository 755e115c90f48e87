"""``pouw-node dataset make``: a dataset file from your own float features.

Reads a CSV file (one example per row, the label in the last column or
``--label-column``), an ``.npz`` (arrays ``x``, ``y``, or already split ``x_train``,
``y_train``, ``x_test``, ``y_test``) or two ``.npy`` files (``--x``, ``--y``); splits off a
held-out test set (``--test-fraction``, reproducible: ``--seed``); quantises the features
to int8 with scales taken from the training set and writes the dataset in the
canonical safetensors container (docs/protocol.md §8) with those scales recorded as
``feature_scale`` (one per feature by default, each from its own range over the training
set; ``--global-scale`` for one). A model trained on it then takes the original float features
(``w3.pouw.load_model``). Local only: no node is contacted. Upload the file with
``pouw-node job submit --dataset FILE`` or ``w3.pouw.put_dataset``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

from client.clitools import EXIT_ERROR, EXIT_OK, command_group, describe_os_error


class DatasetCliError(Exception):
    """Reported as one ``error: ...`` line."""


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any, Optional[tuple[Any, Any]], Optional[list[str]]]:
    """(x, y, optional (x_test, y_test) already split, class names) from the chosen input."""
    import numpy as np

    from pouw.datasets import read_feature_table

    chosen = [name for name in ("csv", "npz", "x") if getattr(args, name) is not None]
    if len(chosen) != 1:
        raise DatasetCliError("give one input: --csv FILE, --npz FILE, or --x FILE.npy with --y FILE.npy")
    if args.csv is not None:
        x, y, names = read_feature_table(str(args.csv), args.label_column)
        return x, y, None, names
    if args.npz is not None:
        with np.load(args.npz, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        if {"x_train", "y_train", "x_test", "y_test"} <= set(arrays):
            return arrays["x_train"], arrays["y_train"], (arrays["x_test"], arrays["y_test"]), None
        if {"x", "y"} <= set(arrays):
            return arrays["x"], arrays["y"], None, None
        raise DatasetCliError(
            f"{args.npz}: expected arrays x and y (or x_train, y_train, x_test, y_test), found {sorted(arrays)}"
        )
    if args.y is None:
        raise DatasetCliError("--x needs --y (the labels, one per example)")
    return np.load(args.x, allow_pickle=False), np.load(args.y, allow_pickle=False), None, None


def make(args: argparse.Namespace) -> dict[str, Any]:
    """Build and write the dataset; returns what to report."""
    import numpy as np

    from pouw.datasets import dataset_from_float_arrays, dataset_id, dataset_to_bytes, split_train_test

    x, y, test, names = _load_inputs(args)
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 2:
        x = x.reshape(-1, 1)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DatasetCliError(f"labels: expected one per example ({x.shape[0]}), got shape {tuple(y.shape)}")
    if test is None:
        train_rows, test_rows = split_train_test(int(x.shape[0]), args.test_fraction, args.seed)
        x_train, y_train, x_test, y_test = x[train_rows], y[train_rows], x[test_rows], y[test_rows]
    else:
        x_train, y_train, (x_test, y_test) = x, y, test
    shape = None if args.input_shape is None else tuple(args.input_shape)
    name = args.name if args.name is not None else (Path(args.out).stem)
    ds = dataset_from_float_arrays(x_train, y_train, np.asarray(x_test), np.asarray(y_test),
                                   num_classes=args.num_classes, name=name, input_shape=shape,
                                   per_feature=not args.global_scale)
    blob = dataset_to_bytes(ds)
    tmp = args.out.with_name(args.out.name + ".tmp")
    try:
        tmp.write_bytes(blob)
        tmp.replace(args.out)
    except OSError as exc:
        raise DatasetCliError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    return {
        "file": str(args.out), "id": dataset_id(blob), "bytes": len(blob), "name": ds.name,
        "trainExamples": len(ds), "testExamples": int(ds.y_test.shape[0]), "inputShape": list(ds.input_shape),
        "numClasses": ds.num_classes, "classNames": names,
        "featureScale": list(ds.feature_scale) if isinstance(ds.feature_scale, tuple) else ds.feature_scale,
    }


def cmd_dataset_make(args: argparse.Namespace) -> int:
    from pouw.errors import PouwError

    try:
        report = make(args)
    except (DatasetCliError, PouwError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(report))
        return EXIT_OK
    shape = "x".join(str(d) for d in report["inputShape"])
    print(f"dataset: {report['file']} ({report['bytes']} bytes)")
    print(f"id: {report['id']}")
    print(f"examples: {report['trainExamples']} train, {report['testExamples']} test; input {shape}; "
          f"{report['numClasses']} classes")
    if report["classNames"]:
        print("classes: " + ", ".join(f"{i}={n}" for i, n in enumerate(report["classNames"])))
    scale = report["featureScale"]
    if isinstance(scale, list):
        shown = ", ".join(f"{v:.6g}" for v in scale[:8]) + (", ..." if len(scale) > 8 else "")
        print(f"feature scales (one per feature): {shown}")
    else:
        print(f"feature scale: {scale!r}")
    print("  (int8 = clip(rint(x * scale), -127, 127), recorded in the file: the trained model takes the original "
          "float features)")
    print(f"spec: \"dataset\": \"{report['id']}\", \"input_shape\": {report['inputShape']}, "
          f"\"num_classes\": {report['numClasses']}")
    return EXIT_OK


def _shape(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected dimensions like 64 or 1,8,8, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dimensions, got {text!r}")
    return dims


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError("expected a seed in [0, 2**64)")
    return value


def add_dataset_commands(subparsers: Any) -> argparse.ArgumentParser:
    """``pouw-node dataset make`` on ``pouw-node``'s subparsers."""
    dataset, commands = command_group(
        subparsers, "dataset", "make dataset files for jobs from your own data",
        "Dataset files (docs/protocol.md §8) for jobs, made from your own features.",
    )
    help = "write a dataset file from float features (CSV, npz or npy), with a held-out test split"
    make_ = commands.add_parser("make", help=help, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = make_.add_argument_group("input (one of)")
    source.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="one example per row: numbers, the label in the last column (or --label-column)")
    source.add_argument("--npz", type=Path, default=None, metavar="FILE",
                        help="arrays x and y, or x_train, y_train, x_test and y_test (read without pickle)")
    source.add_argument("--x", type=Path, default=None, metavar="FILE.npy", help="features [N, ...] (with --y)")
    source.add_argument("--y", type=Path, default=None, metavar="FILE.npy", help="integer labels [N] (with --x)")
    make_.add_argument("--out", type=Path, required=True, metavar="FILE", help="the dataset file to write (safetensors)")
    make_.add_argument("--label-column", default=None, metavar="NAME|INDEX",
                       help="CSV: the label column, by header name or 0-based index (default: the last)")
    make_.add_argument("--test-fraction", type=_fraction, default=0.2, metavar="F",
                       help="share of the examples held out as the test set (default 0.2; ignored when the npz is split)")
    make_.add_argument("--seed", type=_seed, default=0, help="seed of the reproducible test split (default 0)")
    make_.add_argument("--input-shape", type=_shape, default=None, metavar="DIMS",
                       help="shape of one example, e.g. 1,8,8 for a CNN (default: as given, e.g. the CSV's feature count)")
    make_.add_argument("--num-classes", type=int, default=None, metavar="N", help="number of classes (default: max label + 1)")
    make_.add_argument("--global-scale", action="store_true",
                       help="one quantisation scale for every feature (default: one per feature, from its own range)")
    make_.add_argument("--name", default=None, help="the dataset's name (default: the output file's stem)")
    make_.add_argument("--json", action="store_true", help="print the report as JSON")
    make_.set_defaults(func=cmd_dataset_make)
    return dataset


__all__ = ["add_dataset_commands", "make"]

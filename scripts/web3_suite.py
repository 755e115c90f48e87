"""Run web3.py 8's node test classes against our dev node and anvil, in both modes,
and compare.

    python scripts/web3_suite.py [--modes automine,interval] [--nodes pouw,anvil] [--out DIR]

Each (node, mode) runs tests/rpc/web3_suite with WEB3_SUITE_RAW=1 (no known failure
marked), writes a JUnit file, and the script prints passed/failed counts per run, then
per mode the tests that fail on our node but pass on anvil (with the first line of the
error) and those that fail on both. anvil comes from PATH or
``npm install @foundry-rs/anvil-linux-amd64`` (node_modules/); without it only our node runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.rpc.devnode import find_anvil  # noqa: E402


def run(node: str, mode: str, out: Path) -> Path:
    report = out / f"{node}-{mode}.xml"
    env = {**os.environ, "WEB3_SUITE_NODE": node, "WEB3_SUITE_MODE": mode, "WEB3_SUITE_RAW": "1"}
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/rpc/web3_suite",
         f"--junitxml={report}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return report


def outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """test id -> (outcome, first line of the failure message)."""
    results: dict[str, tuple[str, str]] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            results[name] = ("failed", (failure.get("message") or "").splitlines()[0][:160] if failure.get("message") else "")
        elif case.find("skipped") is not None:
            results[name] = ("skipped", "")
        else:
            results[name] = ("passed", "")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="automine,interval")
    parser.add_argument("--nodes", default="pouw,anvil")
    parser.add_argument("--out", type=Path, default=Path("/tmp/web3_suite"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    nodes = [n for n in args.nodes.split(",") if n]
    if "anvil" in nodes and find_anvil() is None:
        print("anvil not available: running our node only")
        nodes.remove("anvil")
    results: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for mode in args.modes.split(","):
        for node in nodes:
            results[node, mode] = outcomes(run(node, mode, args.out))
            counts = {k: sum(1 for o, _ in results[node, mode].values() if o == k) for k in ("passed", "failed", "skipped")}
            print(f"{node:6} {mode:9} passed {counts['passed']:4}  failed {counts['failed']:4}  skipped {counts['skipped']:3}")
    for mode in args.modes.split(","):
        ours = results.get(("pouw", mode))
        theirs = results.get(("anvil", mode))
        if ours is None or theirs is None:
            continue
        print(f"\n== {mode}: fail on pouw-node, pass on anvil")
        for name, (outcome, message) in sorted(ours.items()):
            if outcome == "failed" and theirs.get(name, ("",))[0] == "passed":
                print(f"  {name}: {message}")
        print(f"== {mode}: pass on pouw-node, fail on anvil")
        for name, (outcome, message) in sorted(theirs.items()):
            if outcome == "failed" and ours.get(name, ("",))[0] == "passed":
                print(f"  {name}: {message}")
        print(f"== {mode}: fail on both")
        for name, (outcome, message) in sorted(ours.items()):
            if outcome == "failed" and theirs.get(name, ("",))[0] == "failed":
                print(f"  {name}: {message}")


if __name__ == "__main__":
    main()

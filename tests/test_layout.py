"""The package map (docs/layout.md) holds in the code: imports go down the layers only,
mypy is clean on every package, and explicit ``Any`` goes down, never up.

The layers are read from docs/layout.md, so the document and this check cannot drift.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYOUT = ROOT / "docs" / "layout.md"
ANY_BASELINE = ROOT / "tests" / "any_baseline.json"


def layers() -> dict[str, int]:
    """``package -> layer`` from the ``layer N  pkg pkg`` lines of docs/layout.md."""
    found: dict[str, int] = {}
    for line in LAYOUT.read_text().splitlines():
        m = re.match(r"^layer (\d+)\s+(.+?)\s*(?:#.*)?$", line)
        if m:
            for pkg in m.group(2).split():
                found[pkg] = int(m.group(1))
    return found


PACKAGES = layers()


def modules(pkg: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / pkg).rglob("*.py")):
        rel = path.relative_to(ROOT)
        yield str(rel), ast.parse(path.read_text(), filename=str(rel))


def imported(rel: str, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module an import statement names, anywhere in the file (module level and
    inside functions: lazy imports count too), relative imports resolved."""
    here = rel[:-3].replace(os.sep, ".").split(".")
    if here[-1] == "__init__":
        here = here[:-1] + ["__init__"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.lineno, node.module


def test_the_layout_names_every_package() -> None:
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench", "scripts"}
    assert set(PACKAGES) == on_disk, "docs/layout.md must place every package in a layer"
    installed = (ROOT / "pyproject.toml").read_text()
    assert all(f'"{pkg}*"' in installed for pkg in PACKAGES), "every package is installed (pyproject's packages.find)"


def back_edges(pkg: str, rel: str, tree: ast.Module) -> list[str]:
    level = PACKAGES[pkg]
    found = []
    for line, name in imported(rel, tree):
        top = name.split(".")[0]
        if top == "tests":
            found.append(f"{rel}:{line} imports {name} (tests are not a library)")
        elif top in PACKAGES and top != pkg and PACKAGES[top] >= level:
            found.append(f"{rel}:{line} imports {name}: layer {level} -> layer {PACKAGES[top]}")
    return found


def test_imports_only_go_down_the_layers() -> None:
    found = [edge for pkg in PACKAGES for rel, tree in modules(pkg) for edge in back_edges(pkg, rel, tree)]
    assert not found, "imports against docs/layout.md:\n" + "\n".join(found)


def test_the_check_sees_lazy_and_sideways_edges() -> None:
    source = (
        "import chain.db\n"                            # down: fine
        "from . import peer\n"                         # own package: fine
        "def f():\n    from node.cli import main\n"   # lazy, up
        "from rpc import server\n"                     # sideways
        "import tests.p2p.helpers\n"                   # tests are not a library
    )
    edges = back_edges("p2p", "p2p/service.py", ast.parse(source))
    assert len(edges) == 3 and all(name in "".join(edges) for name in ("node.cli", "rpc", "tests.p2p")), edges


def test_no_import_hidden_in_strings() -> None:
    """``importlib.import_module`` / ``__import__`` would hide edges from the check above."""
    hidden = []
    for pkg in PACKAGES:
        for rel, tree in modules(pkg):
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
                    if name in ("import_module", "__import__"):
                        hidden.append(f"{rel}:{node.lineno}")
    assert not hidden, f"dynamic imports: {hidden}"


def explicit_any() -> Counter[str]:
    counts: Counter[str] = Counter()
    for pkg in PACKAGES:
        for _, tree in modules(pkg):
            for node in ast.walk(tree):
                if (isinstance(node, ast.Name) and node.id == "Any") or (
                    isinstance(node, ast.Attribute) and node.attr == "Any"
                ):
                    counts[pkg] += 1
    return counts


def test_explicit_any_only_goes_down() -> None:
    """A ratchet: each package's count of ``Any`` may fall, never rise; when it falls,
    the baseline must be lowered with it (so it cannot silently rise back)."""
    baseline: dict[str, int] = json.loads(ANY_BASELINE.read_text())
    counts = explicit_any()
    risen = {p: (baseline.get(p, 0), n) for p, n in counts.items() if n > baseline.get(p, 0)}
    fallen = {p: (baseline[p], counts.get(p, 0)) for p in baseline if counts.get(p, 0) < baseline[p]}
    assert not risen, f"explicit Any rose (baseline, now): {risen}; type it instead"
    assert not fallen, f"explicit Any fell (baseline, now): {fallen}; lower tests/any_baseline.json to match"


@pytest.mark.slow
def test_mypy_is_clean_on_every_package() -> None:
    """mypy (configured in pyproject.toml) over every package of the map."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *sorted(PACKAGES)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_serving_json_rpc_does_not_load_torch(tmp_path: Path) -> None:
    """A node on a development chain opens its datadir, is assembled and serves its RPC
    (an eth_call into the job registry included) without torch (about 2 s of imports):
    what needs it (the pouw engine, the pouw_ namespace on a proof-of-work chain, the
    auditor) loads it on first use."""
    code = f"""
import asyncio, sys
from pathlib import Path
import node.cli, rpc.server, rpc.audit_methods, rpc.accounts
from node.node import Node, NodeConfig, init_datadir, open_datadir, read_genesis
from rpc.server import create_app
datadir = Path({str(tmp_path / "dev")!r})
init_datadir(datadir, read_genesis("dev"))
with open_datadir(datadir) as opened:
    node = Node(opened, NodeConfig(automine=True))
    create_app(node.backend)
    from consensus.params import REGISTRY_ADDRESS
    node.chain.call(REGISTRY_ADDRESS, b"")
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
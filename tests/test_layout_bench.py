"""Product code never imports the tests.

Benchmarks (``bench/``) and every package ship in the repository and must run from a
clone without ``tests/`` on the path; what they share with the tests lives in the
development kit (``devnet/kit/``). This walks every module's syntax tree, so an import
inside a function (a lazy one) counts as much as one at the top.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("bench", "common", "safejson", "pouw", "genesis", "chain", "consensus", "p2p", "rpc", "client", "node",
           "devnet")


def _is_tests(module: str) -> bool:
    return module == "tests" or module.startswith("tests.")


def imports_of_tests(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """(line, module) for each import of the ``tests`` package in ``source``: ``import``
    and ``from ... import`` statements at any depth, and ``importlib.import_module`` /
    ``__import__`` calls with a literal name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if _is_tests(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module is not None and _is_tests(node.module):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            first = node.args[0]
            if (name in ("import_module", "__import__") and isinstance(first, ast.Constant)
                    and isinstance(first.value, str) and _is_tests(first.value)):
                found.append((node.lineno, first.value))
    return found


def product_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("package", PRODUCT)
def test_product_code_does_not_import_tests(package: str) -> None:
    files = product_files(package)
    assert files, f"no Python files under {package}/: the walk would prove nothing"
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imports_of_tests(path.read_text(), str(path))
    ]
    assert not offenders, "product code imports the tests (move the shared piece to devnet/kit/):\n" + "\n".join(
        offenders)


@pytest.mark.parametrize("source", [
    "import tests",
    "import tests.chain.helpers as h",
    "import os, tests.p2p.helpers",
    "from tests.chain.helpers import ALICE",
    "from tests import chain",
    "def lazy():\n    from tests.consensus.helpers import mine_block\n",
    "class A:\n    def f(self):\n        if True:\n            import tests.rpc.devnode\n",
    "import importlib\nimportlib.import_module('tests.rpc.devnode')",
    "__import__('tests.rpc')",
])
def test_invalid_every_form_of_importing_tests_is_caught(source: str) -> None:
    assert imports_of_tests(source)


@pytest.mark.parametrize("source", [
    "import testsuite",
    "from pytest import tests",
    "from . import tests",
    "from .tests import x",
    "import devnet.kit.p2pnode",
    "name = 'tests.chain.helpers'",
])
def test_imports_that_are_not_the_tests_package_pass(source: str) -> None:
    assert imports_of_tests(source) == []

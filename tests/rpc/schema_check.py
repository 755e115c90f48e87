"""Validate method results against the execution-apis OpenRPC schemas.

The reference lives outside the repository, at ``../shared/reference/execution-apis``
relative to the repository root (CI has it there too). ``check_result`` does nothing
when the reference, pyyaml or jsonschema is absent, so the tests still run.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "execution-apis" / "src"


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(method name -> result schema, component schemas), or None if unavailable."""
    try:
        import yaml
    except ImportError:
        return None
    if not (REFERENCE / "eth").is_dir() or not (REFERENCE / "schemas").is_dir():
        return None
    components: dict[str, Any] = {}
    for path in sorted((REFERENCE / "schemas").glob("*.yaml")):
        components.update(yaml.safe_load(path.read_text()) or {})
    methods: dict[str, Any] = {}
    for path in sorted((REFERENCE / "eth").glob("*.yaml")):
        for method in yaml.safe_load(path.read_text()) or []:
            methods[method["name"]] = method["result"]["schema"]
    return _any_of(methods), _any_of(components)


def _any_of(node: Any) -> Any:
    """The spec writes ``oneOf`` where branches overlap (an empty array is both "logs"
    and "hashes"); read it as ``anyOf``, which is what it means."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


def available() -> bool:
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return _load() is not None


def has_schema(method: str) -> bool:
    loaded = _load()
    return loaded is not None and method in loaded[0]


def check_result(method: str, result: Any) -> None:
    """Raise jsonschema.ValidationError if ``result`` does not fit the method's schema."""
    if not available():
        return
    loaded = _load()
    assert loaded is not None
    methods, components = loaded
    if method not in methods:
        return
    import jsonschema

    schema = dict(methods[method])
    schema["components"] = {"schemas": components}
    jsonschema.Draft202012Validator(schema).validate(result)

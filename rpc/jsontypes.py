"""The type of a decoded JSON value, as a request's params carry it.

``Json`` is what ``safejson.loads`` can give (objects, arrays, strings, numbers, booleans,
null, nested to any depth): every param parser takes one and narrows it with
``isinstance`` before reading it, so a parser cannot touch a field it has not checked.
Answers are typed closer to their shape (``TypedDict``s beside their encoders:
``rpc/encoding.py``, ``rpc/pouw_methods.py``, ...) or as a :data:`JsonObject` where the
keys depend on the request.
"""
from __future__ import annotations

from typing import Union

Json = Union[None, bool, int, float, str, list["Json"], dict[str, "Json"]]
"""Any JSON value, as decoded."""

JsonObject = dict[str, Json]
"""A JSON object."""

__all__ = ["Json", "JsonObject"]

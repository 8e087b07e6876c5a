"""Where a query runs, and the typed key columns read back as JSON values (pure)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from .query import And, AnyOf, Compare, Node, Or

__all__ = ["decode_key", "named_experiment", "number"]


def named_experiment(node: Node) -> str | None:
    """The experiment a filter keeps to (``{"experiment": "x", ...}`` at the top, or
    within a top-level ``$and`` or a one-branch ``$or``), else None: the query goes to
    every shard group."""
    if isinstance(node, Compare) and node.path == ("experiment",) and node.op == "==":
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, AnyOf) and node.path == ("experiment",) and len(node.values) == 1:
        value = node.values[0]
        return value if isinstance(value, str) else None
    if isinstance(node, Or) and len(node.nodes) == 1:
        return named_experiment(node.nodes[0])
    if isinstance(node, And):
        for child in node.nodes:
            found = named_experiment(child)
            if found is not None:
                return found
    return None


def number(value: Any) -> Any:
    """A numeric from PostgreSQL as the JSON number it stands for (int if integral)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def decode_key(bracket: int, num: Any, text: str | None) -> Any:
    """The JSON value of a group key's three columns (see :func:`.build.key_columns`)."""
    if bracket == 2:
        return number(num)
    if bracket == 3:
        return text
    if bracket in (4, 5):
        return json.loads(text or "null")
    if bracket == 6:
        return text == "true"
    return None

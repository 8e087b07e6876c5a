"""The typed tree of a MongoDB-style filter, and the parser that builds it.

A filter document becomes a small tree of :class:`Compare`, :class:`AnyOf`,
:class:`IsNull`, :class:`Exists`, :class:`Not`, :class:`And` and :class:`Or` over
dotted :data:`Path` s; :mod:`.build` turns the tree into SQL. The semantics each node
stands for (MongoDB's, within the limits listed in :mod:`mlscale.core.experiments`):

- a path's *values*: descend the document key by key; a key applied to an array
  applies to each of its elements that is a document (one level, as MongoDB);
- a path's *candidates*: each value, or, for a value that is an array, its elements
  that are not arrays themselves;
- ``Compare(path, op, v)``: some candidate has ``v``'s type bracket (numbers, strings,
  booleans) and compares so (``true`` is not ``1``; ``"1"`` is not ``1``);
- ``IsNull(path)``: the path has no value at all, or some candidate is null;
- ``Exists(path)``: the path has some value (null included).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ExperimentError, UnsupportedQuery

__all__ = [
    "COMPARISONS",
    "FILTER_OPERATORS",
    "And",
    "AnyOf",
    "Compare",
    "Exists",
    "IsNull",
    "Node",
    "Not",
    "Or",
    "Path",
    "Scalar",
    "check_path",
    "parse_filter",
]

Path = tuple[str, ...]
Scalar = None | bool | int | float | str

COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
FILTER_OPERATORS = (
    "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not", "$and", "$or",
)  # fmt: skip


@dataclass(frozen=True)
class Compare:
    """Some candidate of ``path`` has ``value``'s type bracket and ``op`` holds
    (``op`` one of ``== > >= < <=``; ``value`` never None)."""

    path: Path
    op: str
    value: bool | int | float | str


@dataclass(frozen=True)
class AnyOf:
    """Some candidate of ``path`` equals one of ``values`` (none of them None)."""

    path: Path
    values: tuple[bool | int | float | str, ...]


@dataclass(frozen=True)
class IsNull:
    """``path`` has no value, or some candidate of it is null."""

    path: Path


@dataclass(frozen=True)
class Exists:
    """``path`` has some value (a null counts)."""

    path: Path


@dataclass(frozen=True)
class Not:
    """The document does not match ``node``."""

    node: Node


@dataclass(frozen=True)
class And:
    """The document matches every node (no nodes: every document)."""

    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """The document matches some node (no nodes: none)."""

    nodes: tuple[Node, ...]


Node = Compare | AnyOf | IsNull | Exists | Not | And | Or


def check_path(text: object, what: str = "path") -> Path:
    """A dotted path as its keys; UnsupportedQuery for forms not translated (array
    indexes such as ``a.0``, ``$`` keys), ExperimentError for malformed ones."""
    if not isinstance(text, str) or not text:
        raise ExperimentError(f"a {what} must be a non-empty string, not {text!r}")
    keys = tuple(text.split("."))
    for key in keys:
        if not key:
            raise ExperimentError(f"{what} {text!r} has an empty key")
        if key.startswith("$"):
            raise UnsupportedQuery(
                f"{what} {text!r}: key {key!r} (positional and $-keys are not supported)",
                operator=key,
            )
        if key.isdigit():
            raise UnsupportedQuery(
                f"{what} {text!r}: array index {key!r} in a path is not supported "
                "(a path applies to every element of an array it meets)",
                operator=f".{key}",
            )
    return keys


def parse_filter(document: Mapping[str, Any] | None) -> Node:
    """The tree of a filter document (None or ``{}``: every document). Raises
    :class:`UnsupportedQuery` naming an operator or form not supported."""
    if document is None:
        return And(())
    if not isinstance(document, Mapping):
        raise ExperimentError(f"a filter must be a document (dict), not {type(document).__name__}")
    nodes: list[Node] = []
    for key, value in document.items():
        if not isinstance(key, str):
            raise ExperimentError(f"filter keys are strings, not {key!r}")
        if key in ("$and", "$or"):
            if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
                raise ExperimentError(f"{key} takes a non-empty list of filter documents")
            parts = tuple(parse_filter(_filter_doc(key, v)) for v in value)
            nodes.append(And(parts) if key == "$and" else Or(parts))
        elif key.startswith("$"):
            raise UnsupportedQuery(
                f"unsupported query operator {key} (supported: {', '.join(FILTER_OPERATORS)})",
                operator=key,
            )
        else:
            nodes.append(_field(check_path(key), value))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _filter_doc(op: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ExperimentError(f"{op} takes filter documents, not {value!r}")
    return value


def _field(path: Path, value: Any) -> Node:
    if isinstance(value, Mapping):
        ops = list(value)
        if ops and all(isinstance(k, str) and k.startswith("$") for k in ops):
            nodes = [_operator(path, op, value[op]) for op in ops]
            return nodes[0] if len(nodes) == 1 else And(tuple(nodes))
        if any(isinstance(k, str) and k.startswith("$") for k in ops):
            raise ExperimentError(
                f"{'.'.join(path)}: a document mixing operators and fields is not a filter"
            )
        raise UnsupportedQuery(
            f"{'.'.join(path)}: $eq to a whole document is not supported "
            "(match its fields with dotted paths)",
            operator="$eq",
        )
    return _equal(path, value)


def _operator(path: Path, op: str, value: Any) -> Node:
    if op == "$eq":
        return _equal(path, value)
    if op == "$ne":
        return Not(_equal(path, value))
    if op in COMPARISONS:
        scalar = _scalar(path, op, value)
        if scalar is None:
            raise UnsupportedQuery(
                f"{'.'.join(path)}: {op} null is not supported (use $eq null or $exists)",
                operator=op,
            )
        return Compare(path, COMPARISONS[op], scalar)
    if op in ("$in", "$nin"):
        if not isinstance(value, Sequence) or isinstance(value, str | bytes):
            raise ExperimentError(f"{'.'.join(path)}: {op} takes a list, not {value!r}")
        scalars = [_scalar(path, op, v) for v in value]
        present = tuple(dict.fromkeys((type(v), v) for v in scalars if v is not None))
        parts: list[Node] = []
        if any(v is None for v in scalars):
            parts.append(IsNull(path))
        if present:
            parts.append(AnyOf(path, tuple(v for _, v in present)))
        node: Node = parts[0] if len(parts) == 1 else Or(tuple(parts))  # []: matches none
        return node if op == "$in" else Not(node)
    if op == "$exists":
        if not isinstance(value, bool | int) or isinstance(value, float):
            raise ExperimentError(f"{'.'.join(path)}: $exists takes true or false")
        return Exists(path) if value else Not(Exists(path))
    if op == "$not":
        if not isinstance(value, Mapping) or not value:
            raise UnsupportedQuery(
                f"{'.'.join(path)}: $not takes an operator document (regular expressions "
                "are not supported)",
                operator="$not",
            )
        inner = _field(path, value)
        return Not(inner)
    raise UnsupportedQuery(
        f"unsupported query operator {op} on {'.'.join(path)} "
        f"(supported: {', '.join(FILTER_OPERATORS)})",
        operator=op,
    )


def _equal(path: Path, value: Any) -> Node:
    scalar = _scalar(path, "$eq", value)
    return IsNull(path) if scalar is None else Compare(path, "==", scalar)


def _scalar(path: Path, op: str, value: Any) -> Scalar:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExperimentError(f"{'.'.join(path)}: {op} {value!r}: JSON has no such number")
        return value
    if isinstance(value, Mapping | Sequence):
        raise UnsupportedQuery(
            f"{'.'.join(path)}: {op} with an array or document value is not supported "
            "(values are null, booleans, numbers and strings)",
            operator=op,
        )
    raise ExperimentError(f"{'.'.join(path)}: {op} {value!r} is not a JSON value")

"""Metadata filters of vector queries: a small MongoDB-like dict translated into a
parameterized SQL condition on the ``metadata`` jsonb column, and the same semantics
evaluated in Python (:func:`matches`, for tests and for checking a result).

A filter is a dict of conditions, all of which must hold::

    {"lang": "en"}                                   containment (equality for scalars)
    {"user.country": "fr"}                           dotted paths into nested objects
    {"tags": ["a", "b"]}                             arrays: every element present
    {"lang": {"$in": ["en", "fr"]}}                   any of the values
    {"lang": {"$ne": "en"}}                          not contained (a missing field is not equal)
    {"price": {"$gte": 10, "$lt": 20}}               numbers or strings, compared in jsonpath
    {"score": {"$exists": True}}                     the path is there (any value, even null)
    {"$or": [{"lang": "en"}, {"n": {"$gt": 3}}]}     and "$and", "$not" over filters

Equality is jsonb containment (``metadata @> '{"lang": "en"}'``), which a GIN index
on ``metadata`` (``jsonb_path_ops``) serves; comparisons and ``$exists`` are jsonpath
predicates (``@@``/``@?``, lax mode: arrays on the way are looked into), NULL
(a type mismatch) counting as false. Values travel as bound parameters, never in
the SQL text. An operator not listed raises :class:`VectorError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import VectorError

__all__ = ["FILTER_OPERATORS", "SqlFilter", "matches", "to_sql"]

FILTER_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$exists")
_LOGICAL = ("$and", "$or", "$not")
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


@dataclass(frozen=True, slots=True)
class SqlFilter:
    """A condition on column ``metadata`` (``%s`` placeholders) and its parameters."""

    sql: str
    params: tuple[Any, ...]


def to_sql(flt: Mapping[str, Any] | None) -> SqlFilter | None:
    """The SQL condition of filter ``flt`` (None or empty: no condition)."""
    if not flt:
        return None
    parts: list[str] = []
    params: list[Any] = []
    _filter(flt, parts, params)
    return SqlFilter(" AND ".join(parts) if len(parts) > 1 else parts[0], tuple(params))


def _filter(flt: Any, parts: list[str], params: list[Any]) -> None:
    if not isinstance(flt, Mapping) or not flt:
        raise VectorError(f"a filter is a non-empty dict of conditions (got {flt!r})")
    for key, cond in flt.items():
        if not isinstance(key, str) or not key:
            raise VectorError(f"filter keys are field paths or $and/$or/$not (got {key!r})")
        if key.startswith("$"):
            parts.append(_logical(key, cond, params))
        else:
            parts.extend(_field(_path(key), cond, params))


def _logical(op: str, cond: Any, params: list[Any]) -> str:
    if op == "$not":
        inner: list[str] = []
        _filter(cond, inner, params)
        return f"NOT ({' AND '.join(inner)})"
    if op not in _LOGICAL:
        raise VectorError(
            f"filter operator {op!r} is not supported (supported: "
            f"{', '.join(FILTER_OPERATORS + _LOGICAL)})"
        )
    if not isinstance(cond, Sequence) or isinstance(cond, str) or not cond:
        raise VectorError(f"{op} takes a non-empty list of filters")
    terms = []
    for sub in cond:
        inner = []
        _filter(sub, inner, params)
        terms.append(" AND ".join(inner))
    glue = " AND " if op == "$and" else " OR "
    return "(" + glue.join(f"({t})" for t in terms) + ")"


def _field(path: tuple[str, ...], cond: Any, params: list[Any]) -> list[str]:
    if not (isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond)):
        return [_contains(path, cond, params)]
    out = []
    for op, value in cond.items():
        if op == "$eq":
            out.append(_contains(path, value, params))
        elif op == "$ne":
            out.append(f"NOT {_contains(path, value, params)}")
        elif op in ("$in", "$nin"):
            if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
                raise VectorError(f"{op} takes a non-empty list of values (got {value!r})")
            anyof = "(" + " OR ".join(_contains(path, v, params) for v in value) + ")"
            out.append(anyof if op == "$in" else f"NOT {anyof}")
        elif op in _COMPARE:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise VectorError(f"{op} compares with a number or a string (got {value!r})")
            params.append(f"{_jsonpath(path)} {_COMPARE[op]} {json.dumps(value)}")
            out.append("coalesce(metadata @@ %s::jsonpath, false)")
        elif op == "$exists":
            if not isinstance(value, bool):
                raise VectorError(f"$exists takes true or false (got {value!r})")
            params.append(_jsonpath(path))
            out.append("metadata @? %s::jsonpath" if value else "NOT metadata @? %s::jsonpath")
        else:
            raise VectorError(
                f"filter operator {op!r} is not supported (supported: "
                f"{', '.join(FILTER_OPERATORS + _LOGICAL)})"
            )
    return out


def _contains(path: tuple[str, ...], value: Any, params: list[Any]) -> str:
    doc: Any = value
    for key in reversed(path):
        doc = {key: doc}
    try:
        params.append(json.dumps(doc, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise VectorError(f"filter value {value!r} is not JSON: {exc}") from None
    return "metadata @> %s::jsonb"


def _path(key: str) -> tuple[str, ...]:
    path = tuple(key.split("."))
    if any(not p for p in path):
        raise VectorError(f"filter path {key!r} has an empty part")
    return path


def _jsonpath(path: tuple[str, ...]) -> str:
    """A lax jsonpath naming ``path`` (each key a quoted JSON string: any text is safe)."""
    return "$" + "".join("." + json.dumps(p) for p in path)


# -- the same semantics in Python ---------------------------------------------------


def matches(flt: Mapping[str, Any] | None, metadata: Any) -> bool:
    """Whether ``metadata`` (a JSON value as Python) satisfies filter ``flt``, as the
    SQL of :func:`to_sql` decides it (jsonb containment, lax jsonpath)."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(f, metadata) for f in cond)
        elif key == "$or":
            ok = any(matches(f, metadata) for f in cond)
        elif key == "$not":
            ok = not matches(cond, metadata)
        else:
            ok = _field_matches(_path(key), cond, metadata)
        if not ok:
            return False
    return True


def _field_matches(path: tuple[str, ...], cond: Any, doc: Any) -> bool:
    if not (isinstance(cond, Mapping) and cond and all(str(k).startswith("$") for k in cond)):
        return _contained(path, cond, doc)
    for op, value in cond.items():
        if op == "$eq":
            ok = _contained(path, value, doc)
        elif op == "$ne":
            ok = not _contained(path, value, doc)
        elif op == "$in":
            ok = any(_contained(path, v, doc) for v in value)
        elif op == "$nin":
            ok = not any(_contained(path, v, doc) for v in value)
        elif op in _COMPARE:
            ok = any(_compare(op, v, value) for v in _lax(path, doc, unwrap_last=True))
        elif op == "$exists":
            ok = bool(_lax(path, doc, unwrap_last=False)) == value
        else:
            raise VectorError(f"filter operator {op!r} is not supported")
        if not ok:
            return False
    return True


def _contained(path: tuple[str, ...], value: Any, doc: Any) -> bool:
    want: Any = value
    for key in reversed(path):
        want = {key: want}
    return _contains_json(doc, want)


def _contains_json(have: Any, want: Any) -> bool:
    """jsonb's ``@>`` below the top level (structures must match)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _contains_json(have[k], v) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(have, list) and all(
            any(_contains_json(h, w) if isinstance(w, dict | list) else _same(h, w) for h in have)
            for w in want
        )
    return _same(have, want)


def _same(a: Any, b: Any) -> bool:
    """JSON scalar equality: booleans are not numbers, 1 equals 1.0."""
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _lax(path: tuple[str, ...], doc: Any, *, unwrap_last: bool) -> list[Any]:
    """The values a lax jsonpath ``$.a.b`` yields: arrays met on the way are looked
    into (one level), and, for comparisons, an array at the end too."""
    items = [doc]
    for key in path:
        step = []
        for item in items:
            for obj in item if isinstance(item, list) else [item]:
                if isinstance(obj, dict) and key in obj:
                    step.append(obj[key])
        items = step
    if unwrap_last:
        items = [x for item in items for x in (item if isinstance(item, list) else [item])]
    return items


def _compare(op: str, have: Any, value: Any) -> bool:
    numbers = (int, float)
    if isinstance(have, bool) or isinstance(value, bool):
        return False
    if isinstance(have, numbers) and isinstance(value, numbers):
        pass
    elif not (isinstance(have, str) and isinstance(value, str)):
        return False
    if op == "$gt":
        return bool(have > value)
    if op == "$gte":
        return bool(have >= value)
    if op == "$lt":
        return bool(have < value)
    return bool(have <= value)

"""Filter translation: the SQL and parameters of each filter, refusals, and the Python
evaluator's semantics (the server agrees: tests/integration/test_vectors.py)."""

from __future__ import annotations

from typing import Any

import pytest

from mlscale.core.vectors.filters import matches, to_sql
from mlscale.errors import VectorError

C = "metadata @> %s::jsonb"
CMP = "coalesce(metadata @@ %s::jsonpath, false)"

TABLE: list[tuple[dict[str, Any], str, tuple[Any, ...]]] = [
    ({"lang": "en"}, C, ('{"lang": "en"}',)),
    ({"user.country": "fr"}, C, ('{"user": {"country": "fr"}}',)),
    ({"tags": ["a", "b"]}, C, ('{"tags": ["a", "b"]}',)),
    ({"a": 1, "b": True}, f"{C} AND {C}", ('{"a": 1}', '{"b": true}')),
    ({"a": {"$eq": None}}, C, ('{"a": null}',)),
    ({"a": {"$ne": 2}}, f"NOT {C}", ('{"a": 2}',)),
    ({"a": {"$in": [1, 2]}}, f"({C} OR {C})", ('{"a": 1}', '{"a": 2}')),
    ({"a": {"$nin": ["x"]}}, f"NOT ({C})", ('{"a": "x"}',)),
    ({"p": {"$gt": 1.5}}, CMP, ('$."p" > 1.5',)),
    ({"p": {"$gte": 1, "$lt": 3}}, f"{CMP} AND {CMP}", ('$."p" >= 1', '$."p" < 3')),
    ({"s.t": {"$lte": "m"}}, CMP, ('$."s"."t" <= "m"',)),
    ({"x": {"$exists": True}}, "metadata @? %s::jsonpath", ('$."x"',)),
    ({"x": {"$exists": False}}, "NOT metadata @? %s::jsonpath", ('$."x"',)),
    ({"$or": [{"a": 1}, {"b": 2}]}, f"(({C}) OR ({C}))", ('{"a": 1}', '{"b": 2}')),
    ({"$not": {"a": 1}}, f"NOT ({C})", ('{"a": 1}',)),
    # a key that looks like SQL or jsonpath stays inside a bound, quoted value
    ({"a') OR true --": {"$exists": True}}, "metadata @? %s::jsonpath", ('$."a\') OR true --"',)),
    ({'q"x': {"$gt": 0}}, CMP, ('$."q\\"x" > 0',)),
]


@pytest.mark.parametrize(("flt", "sql", "params"), TABLE)
def test_translation(flt: dict[str, Any], sql: str, params: tuple[Any, ...]) -> None:
    got = to_sql(flt)
    assert got is not None
    assert (got.sql, got.params) == (sql, params)
    assert got.sql.count("%s") == len(got.params)


def test_no_filter() -> None:
    assert to_sql(None) is None and to_sql({}) is None


@pytest.mark.parametrize(
    ("flt", "message"),
    [
        ({"a": {"$regex": "x"}}, r"\$regex"),
        ({"$nor": [{"a": 1}]}, r"\$nor"),
        ({"a": {"$in": "xy"}}, "non-empty list"),
        ({"a": {"$gt": True}}, "number or a string"),
        ({"a": {"$gt": [1]}}, "number or a string"),
        ({"a": {"$exists": 1}}, "true or false"),
        ({"a..b": 1}, "empty part"),
        ({"$or": []}, "non-empty list"),
        ({"a": float("nan")}, "not JSON"),
    ],
)
def test_refused(flt: dict[str, Any], message: str) -> None:
    with pytest.raises(VectorError, match=message):
        to_sql(flt)


DOC = {"a": 1, "s": "x", "n": {"b": 2}, "tags": ["p", "q"], "z": None, "arr": [{"b": 5}]}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"a": 1.0}, True),
        ({"a": True}, False),  # a boolean is not a number
        ({"n.b": 2}, True),
        ({"n": {}}, True),  # containment: an empty object is in every object
        ({"tags": ["q"]}, True),
        ({"tags": "p"}, False),  # below the top level, structures must match
        ({"z": None}, True),
        ({"missing": None}, False),
        ({"a": {"$ne": 2}}, True),
        ({"missing": {"$ne": 2}}, True),
        ({"s": {"$gt": "w"}}, True),
        ({"s": {"$gt": 0}}, False),  # a type mismatch is false
        ({"tags": {"$gte": "q"}}, True),  # lax: an array's elements are compared
        ({"arr.b": {"$gt": 4}}, True),  # lax: arrays on the way are looked into
        ({"z": {"$exists": True}}, True),
        ({"missing": {"$exists": False}}, True),
        ({"$or": [{"a": 2}, {"s": "x"}]}, True),
        ({"$and": [{"a": 1}, {"$not": {"s": "x"}}]}, False),
    ],
)
def test_python_semantics(flt: dict[str, Any], expected: bool) -> None:
    assert matches(flt, DOC) is expected

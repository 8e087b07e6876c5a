"""The table and the query generator of the cross-shard differential test
(test_scatter_differential.py).

:func:`table_rows` makes the seeded rows both databases hold; :func:`queries` is a
hypothesis strategy of SELECTs over them covering every merge of issue 12 item 3:
COUNT, SUM, MIN, MAX, AVG, BOOL_AND/OR, BIT_AND/OR, STDDEV/VARIANCE (sample and
population), COUNT(DISTINCT), SELECT DISTINCT, ARRAY_AGG/STRING_AGG (with and without
their ORDER BY), percentile_cont/percentile_disc, mode(), GROUP BY on 0-2 columns or
expressions, HAVING, expressions over aggregates, ORDER BY (ASC/DESC, NULLS FIRST/LAST)
with LIMIT/OFFSET, under WHERE filters.

Each :class:`Query` says how its result is compared: ``ordered`` only when it has an
ORDER BY ending in a unique key (the id, or every GROUP BY key, or every DISTINCT
column); ``unordered_values`` names the output columns whose value is an aggregate of
unspecified order (array_agg / string_agg without ORDER BY), compared as multisets.

The data is chosen so that one server's answer is deterministic: numerics that are
equal have the same scale (min, max, mode and percentile_disc return one of several
equal values, and PostgreSQL shows the scale), floats are dyadic (sums are exact in any
order, so float8 differences come only from division and the variance combine), and no
text holds the ``|`` that unordered string_agg calls use as delimiter.
"""

# ruff: noqa: S608 -- the SQL is assembled from this module's fixed pieces, no outside input

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

TABLE = "scatter_t"
COLUMNS = ("id", "k", "i2", "i4", "i8", "n", "f", "s", "ts", "b")
DDL = (
    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, k int4, i2 int2, i4 int4, i8 int8, "
    "n numeric, f float8, s text, ts timestamptz, b boolean)"
)
UNORDERED_DELIMITER = "|"
TEXTS = ("", "a", "A", "ab", "a b", "b", "B", "m", "M", "x,y", "z", "zz", "Z", "é", "É",
         "😀", "0", "10", "9", "~")
_BASE_TS = datetime(2024, 3, 1, tzinfo=UTC)

# What each generated query is tagged with, for the per-construct minimum.
CONSTRUCTS = (
    "count", "sum", "min", "max", "avg", "bool_and", "bool_or", "bit_and", "bit_or",
    "stddev", "variance", "count_distinct", "distinct", "array_agg", "string_agg",
    "percentile_cont", "percentile_disc", "mode", "group_by", "group_by_expr", "having",
    "agg_expr", "order_by", "limit_offset", "where",
)


@dataclass(frozen=True)
class Query:
    """One generated SELECT and how to compare its result."""

    sql: str
    ordered: bool
    unordered_values: tuple[tuple[int, str], ...]  # (output index, "array" | "text")
    constructs: frozenset[str]


def _numeric_pool(rng: random.Random, size: int) -> list[Decimal]:
    """Distinct numeric values, each with one scale (equal values never differ in scale)."""
    seen: dict[Decimal, Decimal] = {}
    while len(seen) < size:
        digits = rng.choice([1, 3, 6, 12, 20])
        value = Decimal(rng.randint(-10**digits, 10**digits)).scaleb(-rng.randint(0, 6))
        seen.setdefault(value.normalize(), value)
    return list(seen.values())


def _float(rng: random.Random) -> float | None:
    roll = rng.random()
    if roll < 0.04:
        return None
    if roll < 0.10:
        special: float = rng.choice([math.nan, math.inf, -math.inf, 0.0, -0.0])
        return special
    # Dyadic and below 2**27: any sum of a few thousand is exact in float8.
    return math.ldexp(rng.randint(-2**20, 2**20), -rng.randint(0, 6))


def table_rows(seed: int = 12, count: int = 2000) -> list[tuple[Any, ...]]:
    """``count`` rows in COLUMNS order: NULLs in every column but id, float8 NaN and
    +/-Infinity, int2/int4 extremes, duplicates and ties (small domains, repeated floats)."""
    rng = random.Random(seed)
    ids = rng.sample(range(1, 10**9), count)
    numerics = _numeric_pool(rng, 300)
    floats = [_float(rng) for _ in range(600)]
    rows = []
    for ident in ids:
        i4_choices = [rng.randint(-5, 5), rng.randint(-2**31, 2**31 - 1), None]
        rows.append((
            ident,
            None if rng.random() < 0.08 else rng.randint(0, 9),
            rng.choice([None, -3, -2, -1, 0, 1, 2, 3, 3, 1, -32768, 32767]
                       if rng.random() < 0.1 else [None, -3, -2, -1, 0, 1, 2, 3]),
            rng.choices(i4_choices, weights=[6, 3, 1])[0],
            rng.choice([None, rng.randint(-2**63, 2**63 - 1), rng.randint(-1000, 1000)]),
            None if rng.random() < 0.1 else rng.choice(numerics),
            rng.choice(floats),
            None if rng.random() < 0.1 else rng.choice(TEXTS),
            None if rng.random() < 0.1 else _BASE_TS + timedelta(
                seconds=rng.choice([0, 3600 * 12, rng.randint(0, 20 * 86400)])
                + 86400 * rng.randint(0, 19)),
            rng.choice([True, False, None]),
        ))
    return rows


# -- the pieces of a query --------------------------------------------------------------

_INT_COLS = ("i2", "i4", "i8")
_NUM_COLS = ("i2", "i4", "i8", "n", "f")
_ORDERABLE = ("k", "i2", "i4", "i8", "n", "f", "s", "ts")
_ANY_COLS = ("k", "i2", "i4", "i8", "n", "f", "s", "ts", "b")
# GROUP BY keys / DISTINCT columns: (expression, is_an_expression); never n (equal
# numerics of different scales would make one server's shown key arbitrary).
_GROUP_KEYS = (
    ("k", False), ("b", False), ("s", False), ("i2", False),
    ("i4 % 7", True), ("date_trunc('day', ts)", True), ("s IS NULL", True),
    ("k % 3", True), ("f > 0", True),
)


@dataclass(frozen=True)
class _Item:
    sql: str
    constructs: frozenset[str]
    unordered: str | None = None  # "array" | "text": value of unspecified element order
    sortable: bool = True  # fit for ORDER BY (not an array)


def _item(sql: str, *constructs: str, unordered: str | None = None,
          sortable: bool = True) -> _Item:
    return _Item(sql, frozenset(constructs), unordered, sortable)


@st.composite
def _aggregate(draw: st.DrawFn) -> _Item:
    kind = draw(st.sampled_from((
        "count", "count", "sum", "min", "max", "avg", "bool", "bool", "bit", "bit", "stddev",
        "variance",
        "count_distinct", "array_agg", "string_agg", "percentile_cont", "percentile_disc",
        "mode", "agg_expr", "agg_expr",
    )))
    if kind == "count":
        col = draw(st.sampled_from(("*", *_ANY_COLS)))
        return _item(f"count({col})", "count")
    if kind in ("sum", "avg"):
        return _item(f"{kind}({draw(st.sampled_from(_NUM_COLS))})", kind)
    if kind in ("min", "max"):
        return _item(f"{kind}({draw(st.sampled_from(_ORDERABLE))})", kind)
    if kind == "bool":
        name = draw(st.sampled_from(("bool_and", "bool_or")))
        arg = draw(st.sampled_from(("b", "b", "i4 > 0", "f < 0", "s < 'm'")))
        return _item(f"{name}({arg})", name)
    if kind == "bit":
        name = draw(st.sampled_from(("bit_and", "bit_or")))
        return _item(f"{name}({draw(st.sampled_from(_INT_COLS))})", name)
    if kind == "stddev":
        name = draw(st.sampled_from(("stddev", "stddev_samp", "stddev_pop")))
        return _item(f"{name}({draw(st.sampled_from(_NUM_COLS))})", "stddev")
    if kind == "variance":
        name = draw(st.sampled_from(("variance", "var_samp", "var_pop")))
        return _item(f"{name}({draw(st.sampled_from(_NUM_COLS))})", "variance")
    if kind == "count_distinct":
        return _item(f"count(DISTINCT {draw(st.sampled_from(_ANY_COLS))})", "count_distinct")
    if kind == "array_agg":
        col = draw(st.sampled_from(_ANY_COLS))
        if draw(st.booleans()):
            direction = draw(st.sampled_from(("", " DESC", " NULLS FIRST", " DESC NULLS LAST")))
            return _item(f"array_agg({col} ORDER BY {col}{direction}, id)", "array_agg",
                         sortable=False)
        return _item(f"array_agg({col})", "array_agg", unordered="array", sortable=False)
    if kind == "string_agg":
        if draw(st.booleans()):
            direction = draw(st.sampled_from(("", " DESC")))
            return _item(f"string_agg(s, ',' ORDER BY s{direction}, id)", "string_agg")
        return _item(f"string_agg(s, '{UNORDERED_DELIMITER}')", "string_agg", unordered="text",
                     sortable=False)
    if kind == "percentile_cont":
        fraction = draw(st.sampled_from(("0", "0.25", "0.5", "0.9", "1")))
        col = draw(st.sampled_from(("f", "i4", "i2", "n")))
        direction = draw(st.sampled_from(("", " DESC")))
        return _item(f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY {col}{direction})",
                     "percentile_cont")
    if kind == "percentile_disc":
        fraction = draw(st.sampled_from(("0", "0.1", "0.5", "0.75", "1")))
        col = draw(st.sampled_from(_ORDERABLE))
        return _item(f"percentile_disc({fraction}) WITHIN GROUP (ORDER BY {col})",
                     "percentile_disc")
    if kind == "mode":
        col = draw(st.sampled_from(("k", "i2", "s", "b", "f", "ts", "n")))
        return _item(f"mode() WITHIN GROUP (ORDER BY {col})", "mode")
    template, names = draw(st.sampled_from((
        ("sum(i4) / count(i8)", ("sum", "count")),
        ("round(avg({c}), 2)", ("avg",)),
        ("round(avg(n), 0)", ("avg",)),
        ("100.0 * count(n) / count(*)", ("count",)),
        ("sum(n) / count(*)", ("sum", "count")),
        ("max(i4) - min(i4)", ("max", "min")),
        ("count(*) * 2 + 1", ("count",)),
        ("-sum(i2)", ("sum",)),
        ("sum(f) / count(f)", ("sum", "count")),
        ("round(stddev(i4), 3)", ("stddev",)),
        ("var_pop(n) * 2", ("variance",)),
        ("max(f) - min(f)", ("max", "min")),
        # PostgreSQL's integer types overflow with an error, and a literal past int4 is
        # an int8: what the merger computes must keep the type and the error.
        ("-min(i2)", ("min",)),
        ("max(i2) + max(i2)", ("max",)),
        ("sum(i4) * sum(i4)", ("sum",)),
        ("sum(i2) * 100000000000", ("sum",)),
        ("sum(f) / 0", ("sum",)),
        ("avg(i4) * 1.5", ("avg",)),
        ("count(*) / 3.0", ("count",)),
    )))
    sql = template.format(c=draw(st.sampled_from(("i2", "i4", "i8", "n"))))
    return _item(sql, "agg_expr", *names)


_WHERE_ATOMS = st.one_of(
    st.builds("i4 > {}".format, st.sampled_from((-2**30, -3, 0, 2, 2**30))),
    st.builds("i2 <= {}".format, st.integers(-3, 3)),
    st.builds("k = {}".format, st.integers(0, 9)),
    st.just("k IN (1, 3, 5, 7)"),
    st.builds("f < {}".format, st.sampled_from(("0", "1000.5", "-1e5"))),
    st.builds("f > {}".format, st.sampled_from(("0", "-1000.5", "1e5"))),
    st.sampled_from(("f = 'NaN'", "f <> 'Infinity'", "f = f")),
    st.builds("n >= {}".format, st.sampled_from(("0", "-1.5", "1000"))),
    st.builds("s < '{}'".format, st.sampled_from(("a", "m", "Z", "é"))),
    st.just("s LIKE 'a%'"),
    st.sampled_from(("b", "NOT b", "b IS NULL", "b IS NOT NULL")),
    st.builds("{} IS NULL".format, st.sampled_from(_ANY_COLS)),
    st.builds("{} IS NOT NULL".format, st.sampled_from(_ANY_COLS)),
    st.builds("ts >= '2024-03-{:02d} 00:00:00+00'".format, st.integers(2, 20)),
    st.builds("id % {} = 0".format, st.integers(2, 5)),
    st.just("id < 0"),  # no row: empty groups, one NULL row for an ungrouped aggregate
)


@st.composite
def _where(draw: st.DrawFn) -> str:
    atoms = draw(st.lists(_WHERE_ATOMS, min_size=0, max_size=2))
    if not atoms:
        return ""
    joiner = draw(st.sampled_from((" AND ", " OR ")))
    return " WHERE " + joiner.join(f"({a})" for a in atoms)


_DIRECTIONS = ("", " ASC", " DESC", " NULLS FIRST", " NULLS LAST", " DESC NULLS LAST",
               " ASC NULLS FIRST", " DESC NULLS FIRST")


@st.composite
def _page(draw: st.DrawFn) -> str:
    limit = draw(st.one_of(st.none(), st.integers(0, 30)))
    offset = draw(st.one_of(st.none(), st.integers(0, 15)))
    return (f" LIMIT {limit}" if limit is not None else "") + (
        f" OFFSET {offset}" if offset is not None else "")


_HAVING = st.one_of(
    st.builds("count(*) > {}".format, st.sampled_from((0, 1, 5, 20, 100))),
    st.sampled_from((
        "sum(i4) > 0", "max(s) IS NOT NULL", "avg(i2) < 0.5", "bool_or(b)", "min(f) < 0",
        "count(DISTINCT s) > 2", "stddev(i2) > 1.5", "sum(n) > 0 AND count(f) > 3",
        "max(i8) > 0 OR min(k) = 0", "NOT bool_and(b)", "count(n) * 2 > count(*)",
    )),
)


@st.composite
def _grouped(draw: st.DrawFn) -> Query:
    keys = draw(st.lists(st.sampled_from(_GROUP_KEYS), min_size=0, max_size=2,
                         unique_by=lambda key: key[0]))
    aggs = draw(st.lists(_aggregate(), min_size=1, max_size=4, unique_by=lambda a: a.sql))
    constructs = set().union(*(a.constructs for a in aggs))
    show_keys = not keys or draw(st.integers(0, 4)) > 0  # sometimes GROUP BY keys not shown
    selected = [k for k, _ in keys] if show_keys else []
    items = selected + [a.sql for a in aggs]
    unordered = tuple((len(selected) + i, a.unordered) for i, a in enumerate(aggs)
                      if a.unordered)
    sql = "SELECT " + ", ".join(items) + f" FROM {TABLE}"
    where = draw(_where())
    sql += where
    if where:
        constructs.add("where")
    if keys:
        constructs.add("group_by")
        if any(is_expr for _, is_expr in keys):
            constructs.add("group_by_expr")
        by_position = show_keys and draw(st.booleans())
        sql += " GROUP BY " + ", ".join(
            str(i + 1) if by_position else key for i, (key, _) in enumerate(keys))
    if draw(st.integers(0, 2)) == 0:
        sql += " HAVING " + draw(_HAVING)
        constructs.add("having")
    ordered = False
    if keys and draw(st.integers(0, 3)) > 0:
        # ORDER BY [an aggregate,] then every group key: a unique key of the output.
        sort: list[str] = []
        sortable = [i for i, a in enumerate(aggs) if a.sortable]
        if len(sortable) > 0 and draw(st.booleans()):
            i = draw(st.sampled_from(sortable))
            sort.append((str(len(selected) + i + 1) if draw(st.booleans()) else aggs[i].sql)
                        + draw(st.sampled_from(_DIRECTIONS)))
        for i, (key, _) in enumerate(keys):
            ref = str(i + 1) if show_keys and draw(st.booleans()) else key
            sort.append(ref + draw(st.sampled_from(_DIRECTIONS)))
        sql += " ORDER BY " + ", ".join(sort)
        ordered = True
        constructs.add("order_by")
        page = draw(_page())
        if page:
            sql += page
            constructs.add("limit_offset")
    elif not keys and draw(st.integers(0, 5)) == 0:
        sql += draw(st.sampled_from((" LIMIT 1", " OFFSET 1", " LIMIT 0", " LIMIT 5 OFFSET 0")))
        constructs.add("limit_offset")
    return Query(sql, ordered, unordered, frozenset(constructs))


@st.composite
def _distinct(draw: st.DrawFn) -> Query:
    columns = draw(st.lists(st.sampled_from(_GROUP_KEYS), min_size=1, max_size=3,
                            unique_by=lambda key: key[0]))
    sql = "SELECT DISTINCT " + ", ".join(c for c, _ in columns) + f" FROM {TABLE}"
    constructs = {"distinct"}
    where = draw(_where())
    if where:
        sql += where
        constructs.add("where")
    ordered = draw(st.booleans())
    if ordered:
        sql += " ORDER BY " + ", ".join(
            (str(i + 1) if draw(st.booleans()) else c) + draw(st.sampled_from(_DIRECTIONS))
            for i, (c, _) in enumerate(columns))
        constructs.add("order_by")
        page = draw(_page())
        if page:
            sql += page
            constructs.add("limit_offset")
    return Query(sql, ordered, (), frozenset(constructs))


# Nothing that can overflow: a server may compute a row's expression before LIMIT
# drops the row, so an overflow error would depend on the plan.
_ROW_EXPRS = (*COLUMNS, "i2 + 1", "f * 2", "s || '.'", "n * 10", "k % 3", "ts + interval '1 day'")


@st.composite
def _rows(draw: st.DrawFn) -> Query:
    constructs: set[str] = set()
    if draw(st.integers(0, 5)) == 0:
        selected = ["*"]
    else:
        selected = draw(st.lists(st.sampled_from(_ROW_EXPRS), min_size=1, max_size=4,
                                 unique=True))
    sql = "SELECT " + ", ".join(selected) + f" FROM {TABLE}"
    where = draw(_where())
    if where:
        sql += where
        constructs.add("where")
    ordered = draw(st.integers(0, 4)) > 0
    if ordered:
        sort = [c + draw(st.sampled_from(_DIRECTIONS))
                for c in draw(st.lists(st.sampled_from((*_ORDERABLE, "b")), max_size=2,
                                       unique=True))]
        sort.append("id" + draw(st.sampled_from(("", " DESC"))))  # the unique key, last
        sql += " ORDER BY " + ", ".join(sort)
        constructs.add("order_by")
        page = draw(_page())
        if page:
            sql += page
            constructs.add("limit_offset")
    return Query(sql, ordered, (), frozenset(constructs))


def queries() -> st.SearchStrategy[Query]:
    """SELECTs over TABLE: mostly aggregates (grouped or not), some DISTINCT, some rows."""
    return st.one_of(_grouped(), _grouped(), _grouped(), _grouped(), _distinct(), _rows())

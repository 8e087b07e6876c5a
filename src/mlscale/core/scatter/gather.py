"""Aggregates merged by gathering their inputs: COUNT/SUM/AVG(DISTINCT), ARRAY_AGG,
STRING_AGG, percentile_cont, percentile_disc and mode().

No partial value summarises these, so each group returns, per merged group key, the
distinct combinations of the aggregate's inputs (argument, ORDER BY keys, FILTER
condition) with how many rows had each (``count(*)``). The merger then computes the
aggregate from those rows as PostgreSQL 15 would:

- NULL arguments are skipped (ARRAY_AGG keeps them), a FILTER that is not true drops
  the row, DISTINCT keeps one of equal values (PostgreSQL's equality: 1.0 = 1.00,
  0 = -0, NaN = NaN); no input row gives NULL (COUNT gives 0).
- SUM/AVG(DISTINCT) add the distinct values in ascending order, as PostgreSQL does
  after sorting them; each value arrives already typed as PostgreSQL's sum
  (``sum(DISTINCT x)`` over one value), so bigint/numeric/float8 results match.
- percentile_cont: ``first + f*(second - first)`` between the rows at ``floor`` and
  ``ceil`` of ``f*(N-1)`` (orderedsetaggs.c), over float8; percentile_disc: the
  value at row ``ceil(f*N)`` (the first row when that is 0); mode(): the most frequent
  value, ties to the first in sort order.
- Order: ARRAY_AGG/STRING_AGG follow their ORDER BY. Where PostgreSQL leaves the
  order unspecified (no ORDER BY, or ties in it), the merger sorts by the value
  itself, ascending with NULLs last (text in the C collation), so the result is
  deterministic; a reference server may return another order of the same values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import cmp_to_key
from typing import Any

from mlscale.core.scatter.pgtypes import FLOAT8, INT8, number_type
from mlscale.core.scatter.pgvalues import MergeArithmeticError, compare, group_key, sort_compare

__all__ = ["GATHERED", "GatherSpec", "combine_gathered", "gathered_type"]

# The aggregates merged by gathering (COUNT, SUM and AVG only with DISTINCT).
GATHERED = frozenset(
    {
        "count",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "percentile_cont",
        "percentile_disc",
        "mode",
    }
)


@dataclass(frozen=True, slots=True)
class GatherSpec:
    """How one gathered aggregate reads its columns and computes its value.

    Its columns, in order: the argument; its text form when ``texted`` (ARRAY_AGG
    keeps 1.0 and 1.00 apart: the argument alone would group them); one column per
    ORDER BY key (``order``: descending, NULLs first); the FILTER condition when
    ``filtered``; the PostgreSQL-typed ``sum(DISTINCT x)`` when ``typed``; the
    multiplicity. ``descending``: the direction of a WITHIN GROUP (ORDER BY x).
    ``delimiter``: STRING_AGG's. ``fractions``: the percentiles asked for (None for a
    NULL fraction); ``array``: given as an array, returned as one.
    """

    kind: str
    descending: bool = False
    distinct: bool = False
    texted: bool = False
    order: tuple[tuple[bool, bool], ...] = ()
    filtered: bool = False
    typed: bool = False
    delimiter: str | None = None
    fractions: tuple[float | None, ...] = ()
    array: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "kind": self.kind,
            "distinct": self.distinct,
            "descending": self.descending,
            "order": [{"descending": d, "nulls_first": n} for d, n in self.order],
            "filtered": self.filtered,
            "delimiter": self.delimiter,
            "fractions": list(self.fractions),
            "array": self.array,
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    text: Any
    keys: tuple[Any, ...]
    typed: Any
    count: int


def _entries(spec: GatherSpec, partials: Sequence[Sequence[Any]]) -> list[_Entry]:
    index = 1
    texts = partials[index] if spec.texted else None
    index += int(spec.texted)
    keys = partials[index : index + len(spec.order)]
    index += len(spec.order)
    conditions = partials[index] if spec.filtered else None
    index += int(spec.filtered)
    typed = partials[index] if spec.typed else None
    counts = partials[-1]
    entries = []
    for row, value in enumerate(partials[0]):
        if conditions is not None and conditions[row] is not True:
            continue
        if value is None and spec.kind != "array_agg":
            continue
        entries.append(
            _Entry(
                value=value,
                text=None if texts is None else texts[row],
                keys=tuple(column[row] for column in keys),
                typed=None if typed is None else typed[row],
                count=int(counts[row]),
            )
        )
    return entries


def _distinct(entries: list[_Entry]) -> list[_Entry]:
    kept: dict[Any, _Entry] = {}
    for entry in entries:
        kept.setdefault(group_key(entry.value), entry)
    return [_Entry(e.value, e.text, e.keys, e.typed, 1) for e in kept.values()]


def _value_compare(a: _Entry, b: _Entry) -> int:
    try:
        result = sort_compare(a.value, b.value, descending=False, nulls_first=False)
    except TypeError:  # values Python cannot order (json objects): by their text
        result = 0
    if result or a.text is None or b.text is None:
        return result
    return -1 if a.text < b.text else int(a.text > b.text)


def _sorted(entries: list[_Entry], spec: GatherSpec) -> list[_Entry]:
    def by(a: _Entry, b: _Entry) -> int:
        for i, (descending, nulls_first) in enumerate(spec.order):
            result = sort_compare(
                a.keys[i], b.keys[i], descending=descending, nulls_first=nulls_first
            )
            if result:
                return result
        return _value_compare(a, b)

    return sorted(entries, key=cmp_to_key(by))


def _expanded(entries: list[_Entry]) -> list[Any]:
    return [e.value for e in entries for _ in range(e.count)]


def _delimited(values: list[Any], delimiter: str | None) -> Any:
    if not values:
        return None
    if isinstance(values[0], bytes | bytearray | memoryview):
        joiner = b"" if delimiter is None else _bytea_literal(delimiter)
        return joiner.join(bytes(v) for v in values)
    return ("" if delimiter is None else delimiter).join(values)


def _bytea_literal(literal: str) -> bytes:
    # A string literal coerced to bytea: hex format, or text without escapes.
    if literal.startswith("\\x"):
        return bytes.fromhex(literal[2:])
    if "\\" in literal:
        raise TypeError("string_agg over bytea with an escaped delimiter is not merged")
    return literal.encode()


def _float8(value: Any) -> float:
    if isinstance(value, timedelta):
        raise TypeError("percentile_cont over interval is not merged across groups")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise TypeError(f"percentile_cont over {type(value).__name__} is not merged")
    return float(value)


def _check_fraction(fraction: float) -> None:
    if not 0.0 <= fraction <= 1.0:  # NaN fails both comparisons
        raise MergeArithmeticError(f"percentile value {fraction:g} is not between 0 and 1")


def _nth(entries: list[_Entry], row: int) -> Any:
    """The value at 0-based ``row`` of the expanded, sorted entries."""
    for entry in entries:
        if row < entry.count:
            return entry.value
        row -= entry.count
    raise IndexError(row)


def _percentile(spec: GatherSpec, entries: list[_Entry]) -> Any:
    for fraction in spec.fractions:
        if fraction is not None:
            _check_fraction(fraction)
    if spec.kind == "percentile_cont":
        entries = [_Entry(_float8(e.value), None, e.keys, None, e.count) for e in entries]
    sign = -1 if spec.descending else 1

    def by_value(a: _Entry, b: _Entry) -> int:
        return compare(a.value, b.value) * sign

    entries = sorted(entries, key=cmp_to_key(by_value))
    total = sum(e.count for e in entries)
    if total == 0:
        return None
    results: list[Any] = []
    for fraction in spec.fractions:
        if fraction is None:
            results.append(None)
        elif spec.kind == "percentile_disc":
            row = math.ceil(fraction * total)
            results.append(_nth(entries, max(row - 1, 0)))
        else:
            position = fraction * (total - 1)
            first, second = math.floor(position), math.ceil(position)
            low = _nth(entries, first)
            if first == second:
                results.append(low)
            else:
                high = _nth(entries, second)
                results.append(low + (position - first) * (high - low))
    return results if spec.array else results[0]


def _mode(spec: GatherSpec, entries: list[_Entry]) -> Any:
    counts: dict[Any, tuple[Any, int]] = {}
    for entry in entries:
        value, count = counts.get(group_key(entry.value), (entry.value, 0))
        counts[group_key(entry.value)] = (value, count + entry.count)
    if not counts:
        return None
    sign = -1 if spec.descending else 1

    def by_value(a: tuple[Any, int], b: tuple[Any, int]) -> int:
        return compare(a[0], b[0]) * sign

    ordered = sorted(counts.values(), key=cmp_to_key(by_value))
    best = ordered[0]
    for candidate in ordered[1:]:
        if candidate[1] > best[1]:  # strictly: a tie keeps the first in sort order
            best = candidate
    return best[0]


def gathered_type(spec: GatherSpec, types: Sequence[int | None]) -> int | None:
    """The PostgreSQL type (OID, None if unknown) of the gathered aggregate ``spec``
    from its columns' types: count is bigint, sum/avg(DISTINCT) as the typed
    ``sum(DISTINCT x)`` column says, percentile_cont float8 over numbers,
    percentile_disc and mode() their argument's type; arrays and strings unknown."""
    from mlscale.core.scatter.aggregates import mean_type

    if spec.kind == "count":
        return INT8
    if spec.kind in ("sum", "avg"):
        return types[-2] if spec.kind == "sum" else mean_type(types[-2])
    if spec.array or spec.kind not in ("percentile_cont", "percentile_disc", "mode"):
        return None
    if spec.kind == "percentile_cont":
        return FLOAT8 if number_type(types[0]) is not None else None
    return types[0]


def combine_gathered(spec: GatherSpec, partials: Sequence[Sequence[Any]]) -> Any:
    """The value of the gathered aggregate ``spec`` from its columns' values over the
    rows of one merged group key (``partials[column][row]``)."""
    entries = _entries(spec, partials)
    if spec.distinct:
        entries = _distinct(entries)
    return _COMBINERS[spec.kind](spec, entries)


def _count(spec: GatherSpec, entries: list[_Entry]) -> Any:
    return sum(e.count for e in entries)


def _distinct_sum(spec: GatherSpec, entries: list[_Entry]) -> Any:
    # Imported here: aggregates.py's rules are the plain merges this module sits beside.
    from mlscale.core.scatter.aggregates import add_values

    def by_value(a: _Entry, b: _Entry) -> int:
        return compare(a.value, b.value)

    ordered = sorted(entries, key=cmp_to_key(by_value))
    return add_values([e.typed for e in ordered])


def _distinct_avg(spec: GatherSpec, entries: list[_Entry]) -> Any:
    from mlscale.core.scatter.aggregates import average

    total = _distinct_sum(spec, entries)
    return average(total, len(entries))


def _array_agg(spec: GatherSpec, entries: list[_Entry]) -> Any:
    values = _expanded(_sorted(entries, spec))
    return values or None


def _string_agg(spec: GatherSpec, entries: list[_Entry]) -> Any:
    return _delimited(_expanded(_sorted(entries, spec)), spec.delimiter)


_COMBINERS: dict[str, Callable[[GatherSpec, list[_Entry]], Any]] = {
    "count": _count,
    "sum": _distinct_sum,
    "avg": _distinct_avg,
    "array_agg": _array_agg,
    "string_agg": _string_agg,
    "percentile_cont": _percentile,
    "percentile_disc": _percentile,
    "mode": _mode,
}

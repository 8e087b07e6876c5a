"""Points made rows of the points' table: a row per series and time, a column per
field; points of one series and time merged (a field given again: the last value
given wins, other fields kept), as InfluxDB merges them; mixed types refused."""

from __future__ import annotations

import numpy as np
import pytest

from mlscale.core.timeseries.batch import KIND_FLOAT, KIND_INT, KIND_STR, as_rows, field_kinds
from mlscale.core.timeseries.lineproto import parse_lines
from mlscale.errors import MetricsError


def test_rows_a_series_and_time_each_sorted() -> None:
    b = parse_lines(
        'm,h=b a=1,s="x" 20\nm,h=a a=2 10\nm,h=b n=3i 10\nm,h=a a=4 20\n', precision="us"
    )
    rows = as_rows(b)
    keys = [(b.keys[s], int(t)) for s, t in zip(rows.series, rows.ts, strict=True)]
    # sorted by series (first seen first), then time
    assert keys == [("m,h=b", 10), ("m,h=b", 20), ("m,h=a", 10), ("m,h=a", 20)]
    assert len(rows) == 4 and rows.merged == 0
    cols = {c.name: c for c in rows.fields}
    assert {n: c.kind for n, c in cols.items()} == {"a": KIND_FLOAT, "s": KIND_STR, "n": KIND_INT}
    at = {(b.keys[s], int(t)): i for i, (s, t) in enumerate(zip(rows.series, rows.ts, strict=True))}
    assert cols["a"].valid is not None and not cols["a"].valid[at[("m,h=b", 10)]]
    assert cols["a"].values[at[("m,h=a", 20)]] == 4.0
    assert cols["n"].values[at[("m,h=b", 10)]] == 3 and cols["n"].values.dtype == np.int64
    assert cols["s"].values[at[("m,h=b", 20)]] == "x"


def test_points_of_one_series_and_time_merge_last_wins() -> None:
    b = parse_lines("m a=1,b=1 5\nm a=2 5\nm c=3 5\nm a=9,b=8 6\n", precision="us")
    rows = as_rows(b)
    assert len(rows) == 2 and rows.merged == 2
    cols = {c.name: c for c in rows.fields}
    assert cols["a"].values.tolist() == [2.0, 9.0]
    assert cols["b"].values.tolist() == [1.0, 8.0]
    assert cols["c"].valid is not None and cols["c"].valid.tolist() == [True, False]


def test_a_field_of_two_types_is_refused() -> None:
    b = parse_lines("m a=1 5\nm a=1i 6\n", precision="us")
    with pytest.raises(MetricsError, match="both float and integer"):
        field_kinds(b, "m")
    with pytest.raises(MetricsError, match="both float and integer"):
        as_rows(b)

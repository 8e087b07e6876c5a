"""The InfluxDB 1.x line-protocol parser: a table of lines and what they hold
(escaping in measurements, tag keys and values and field keys; quoted strings with
escaped quotes; integers, booleans, floats with exponents; precisions), a table of
bad lines and the error naming their line number, and typed points."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pytest

from mlscale.core.timeseries.batch import Point, PointBatch, batch_of_points, series_key
from mlscale.core.timeseries.lineproto import parse_lines
from mlscale.errors import LineProtocolError, MetricsError

NOW_NS = 1_700_000_000_123_456_789

# (line, precision, measurement, tags, fields, time in microseconds)
GOOD: list[tuple[str, str, str, dict[str, str], dict[str, Any], int]] = [
    ("cpu value=1", "ns", "cpu", {}, {"value": 1.0}, NOW_NS // 1000),
    ("cpu value=1 1000", "ns", "cpu", {}, {"value": 1.0}, 1),
    ("cpu value=1 1999", "ns", "cpu", {}, {"value": 1.0}, 1),  # ns truncated to us
    ("cpu value=1 -1999", "ns", "cpu", {}, {"value": 1.0}, -2),  # toward the past
    ("cpu value=1 5", "us", "cpu", {}, {"value": 1.0}, 5),
    ("cpu value=1 5", "u", "cpu", {}, {"value": 1.0}, 5),
    ("cpu value=1 5", "ms", "cpu", {}, {"value": 1.0}, 5_000),
    ("cpu value=1 5", "s", "cpu", {}, {"value": 1.0}, 5_000_000),
    ("cpu value=1 2", "m", "cpu", {}, {"value": 1.0}, 120_000_000),
    ("cpu value=1 1", "h", "cpu", {}, {"value": 1.0}, 3_600_000_000),
    ("cpu,host=a,region=eu v=0.5 7000", "ns", "cpu", {"host": "a", "region": "eu"}, {"v": 0.5}, 7),
    # types
    ("m i=42i,n=-7i,z=0i 1000", "ns", "m", {}, {"i": 42, "n": -7, "z": 0}, 1),
    ("m big=9223372036854775807i 1000", "ns", "m", {}, {"big": 2**63 - 1}, 1),
    (
        "m a=t,b=T,c=true,d=True,e=TRUE 1000",
        "ns",
        "m",
        {},
        {"a": True, "b": True, "c": True, "d": True, "e": True},
        1,
    ),
    (
        "m a=f,b=F,c=false,d=False,e=FALSE 1000",
        "ns",
        "m",
        {},
        {"a": False, "b": False, "c": False, "d": False, "e": False},
        1,
    ),
    (
        "m a=1e3,b=-1.5E-2,c=.5,d=1.,e=-0.0,f=2e+2 1000",
        "ns",
        "m",
        {},
        {"a": 1000.0, "b": -0.015, "c": 0.5, "d": 1.0, "e": -0.0, "f": 200.0},
        1,
    ),
    ('m s="hello" 1000', "ns", "m", {}, {"s": "hello"}, 1),
    ('m s="" 1000', "ns", "m", {}, {"s": ""}, 1),
    ('m s="a \\"quoted\\" word" 1000', "ns", "m", {}, {"s": 'a "quoted" word'}, 1),
    ('m s="back\\\\slash" 1000', "ns", "m", {}, {"s": "back\\slash"}, 1),
    ('m s="spaces, commas=and equals" 1000', "ns", "m", {}, {"s": "spaces, commas=and equals"}, 1),
    ('m s="other \\n escapes kept" 1000', "ns", "m", {}, {"s": "other \\n escapes kept"}, 1),
    ('m s="x",v=2i 1000', "ns", "m", {}, {"s": "x", "v": 2}, 1),
    # escaping in names
    ("my\\ cpu,host=a v=1 1000", "ns", "my cpu", {"host": "a"}, {"v": 1.0}, 1),
    ("my\\,cpu v=1 1000", "ns", "my,cpu", {}, {"v": 1.0}, 1),
    ("cpu=x v=1 1000", "ns", "cpu=x", {}, {"v": 1.0}, 1),  # "=" needs no escape there
    ("cpu,ho\\ st=a\\ b v=1 1000", "ns", "cpu", {"ho st": "a b"}, {"v": 1.0}, 1),
    ("cpu,k\\,1=v\\,2 v=1 1000", "ns", "cpu", {"k,1": "v,2"}, {"v": 1.0}, 1),
    ("cpu,k\\=1=v\\=2 v=1 1000", "ns", "cpu", {"k=1": "v=2"}, {"v": 1.0}, 1),
    ("cpu,path=C:\\dir v=1 1000", "ns", "cpu", {"path": "C:\\dir"}, {"v": 1.0}, 1),
    ("cpu f\\ 1=1,f\\,2=2,f\\=3=3 1000", "ns", "cpu", {}, {"f 1": 1.0, "f,2": 2.0, "f=3": 3.0}, 1),
    ("cpu,b=2,a=1 v=1 1000", "ns", "cpu", {"a": "1", "b": "2"}, {"v": 1.0}, 1),
    ("cpu v=1 1000\r", "ns", "cpu", {}, {"v": 1.0}, 1),
    ("cpu v=1 1000 ", "ns", "cpu", {}, {"v": 1.0}, 1),
    ("ünïcode,tag=ß v=1 1000", "ns", "ünïcode", {"tag": "ß"}, {"v": 1.0}, 1),
]


def _points(batch: PointBatch) -> list[tuple[str, dict[str, str], dict[str, Any], int]]:
    """The batch read back point by point (values typed as written)."""
    out: dict[tuple[int, int], tuple[str, dict[str, str], dict[str, Any], int]] = {}
    for row in range(len(batch)):
        s = int(batch.series[row])
        ts = int(batch.ts[row])
        kind = int(batch.kind[row])
        value: Any = (
            float(batch.value[row]),
            int(batch.ival[row]),
            bool(batch.value[row]),
            batch.sval[row],
        )[kind]
        point = out.setdefault((s, ts), (batch.measurements[s], dict(batch.tags[s]), {}, ts))
        point[2][batch.field[row]] = value
    return list(out.values())


@pytest.mark.parametrize(("line", "precision", "measurement", "tags", "fields", "ts"), GOOD)
def test_good_lines(
    line: str,
    precision: str,
    measurement: str,
    tags: dict[str, str],
    fields: dict[str, Any],
    ts: int,
) -> None:
    batch = parse_lines(line, precision, now_ns=NOW_NS)
    assert batch.points == 1
    ((m, t, f, when),) = _points(batch)
    assert (m, t, when) == (measurement, tags, ts)
    assert f == fields
    for name, value in fields.items():  # types as written (True is not 1, 1.0 is not 1)
        assert type(f[name]) is type(value), name
        if isinstance(value, float):
            assert math.copysign(1, f[name]) == math.copysign(1, value)


BAD: list[tuple[str, str]] = [
    ("cpu", "missing fields"),
    ("cpu ", "missing fields"),
    (",host=a v=1", "missing measurement"),
    ("cpu,host v=1", "invalid tag"),
    ("cpu,host= v=1", "empty key or value"),
    ("cpu,=a v=1", "empty key or value"),
    ("cpu v", "invalid field"),
    ("cpu =1", "invalid field"),
    ("cpu v=", "invalid field"),
    ("cpu v=abc", "invalid field value"),
    ("cpu v=1.2.3", "invalid field value"),
    ("cpu v=nan", "invalid field value"),
    ("cpu v=inf", "invalid field value"),
    ("cpu v=1e999", "invalid number"),
    ("cpu v=1_000", "invalid field value"),
    ("cpu v=+1", "invalid field value"),
    ("cpu v=1.5i", "invalid integer"),
    ("cpu v=9223372036854775808i", "out of int64 range"),
    ("cpu v=yes", "invalid field value"),
    ('cpu v="open', "unbalanced quotes"),
    ('cpu v="a"b', "unterminated string"),
    ("cpu v=1,v=2", "a field named twice"),
    ("cpu v=1 12x", "invalid timestamp"),
    ("cpu v=1 1.5", "invalid timestamp"),
    ("cpu v=1 99999999999999999999", "out of int64 range"),
    ("cpu v=1 1 2", "unexpected text"),
]


@pytest.mark.parametrize(("line", "why"), BAD)
def test_bad_lines_name_their_number_and_return_nothing(line: str, why: str) -> None:
    text = f"ok v=1 1000\n\n# a comment\nok v=2 2000\n{line}\nok v=3 3000"
    with pytest.raises(LineProtocolError, match=f"line 5: .*{why}") as info:
        parse_lines(text)
    assert info.value.line == 5


def test_bad_timestamp_and_integer_found_after_the_fact() -> None:
    # Timestamps and integers are checked all at once at the end: still named exactly.
    text = "\n".join([f"m v={i}i {i}" for i in range(1, 50)] + ["m v=1i -x"])
    with pytest.raises(LineProtocolError, match="line 50: invalid timestamp"):
        parse_lines(text)
    text = "\n".join([f"m v={i}i {i}" for i in range(1, 50)] + ["m a=1,v=1-2i 5"])
    with pytest.raises(LineProtocolError, match="line 50: invalid integer"):
        parse_lines(text)


def test_unknown_precision() -> None:
    with pytest.raises(LineProtocolError, match="unknown precision 'ps'"):
        parse_lines("cpu v=1", "ps")


def test_many_lines_columns_and_series() -> None:
    text = "\n".join(
        f"train,run=r{i % 3},host=h{i % 2} loss={i / 10},step={i}i,ok={'t' if i % 2 else 'f'} "
        f"{i * 1_000_000_000}"
        for i in range(100)
    )
    b = parse_lines(text)
    assert b.points == 100 and len(b) == 300
    assert len(b.keys) == 6  # 3 runs x 2 hosts
    assert b.keys[0] == "train,host=h0,run=r0"
    loss = b.field == "loss"
    assert b.value[loss].tolist() == [i / 10 for i in range(100)]
    step = b.field == "step"
    assert b.ival[step].tolist() == list(range(100))
    assert (b.kind[step] == 1).all() and (b.kind[b.field == "ok"] == 2).all()
    assert b.ts[loss].tolist() == [i * 1_000_000 for i in range(100)]


def test_series_key_is_canonical_and_escaped() -> None:
    assert series_key("c pu", [("b", "x,y"), ("a", "1=2")]) == "c\\ pu,a=1\\=2,b=x\\,y"
    a = parse_lines("cpu,b=2,a=1 v=1 1").keys[0]
    b = parse_lines("cpu,a=1,b=2 v=1 1").keys[0]
    assert (
        a == b
        and parse_lines("cpu,b=2,a=1 v=1 1").sids[0] == parse_lines("cpu,a=1,b=2 v=1 1").sids[0]
    )


def test_typed_points() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    b = batch_of_points(
        [
            Point("m", {"f": 1.5, "i": 3, "b": True, "s": "x"}, {"run": "a"}, when),
            Point("m", {"f": 2.0}, {"run": "a"}, 1_000_999),
            Point("m", {"f": 3.0}),
        ],
        now_us=42,
    )
    assert b.points == 3 and len(b) == 6
    assert b.ts.tolist() == [int(when.timestamp() * 1e6)] * 4 + [1000, 42]
    assert b.kind.tolist() == [0, 1, 2, 3, 0, 0]
    assert b.sval[3] == "x" and b.ival[1] == 3
    with pytest.raises(MetricsError, match=r"point 0: .*not a finite number"):
        batch_of_points([Point("m", {"f": math.nan})], 0)
    with pytest.raises(MetricsError, match="point 1: a point needs at least one field"):
        batch_of_points([Point("m", {"f": 1.0}), Point("m", {})], 0)
    with pytest.raises(MetricsError, match="not a float, int, bool or str"):
        batch_of_points([Point("m", {"f": [1]})], 0)  # type: ignore[dict-item]

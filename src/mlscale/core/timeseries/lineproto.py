"""InfluxDB 1.x line protocol to a :class:`~.batch.PointBatch`. No I/O.

    measurement[,tag=value...] field=value[,field=value...] [timestamp]

- Measurement names escape ``,`` and space with a backslash; tag keys, tag values
  and field keys escape ``,``, ``=`` and space. Any other backslash is kept as is.
- Field values: floats (``1``, ``-1.5``, ``1e-3``, ``.5``), integers with an ``i``
  suffix (``42i``), booleans (``t T true True TRUE f F false False FALSE``) and
  double-quoted strings in which ``\\"`` and ``\\\\`` are escapes (spaces, commas and
  equals signs need none inside quotes). NaN and infinities are refused, as InfluxDB
  does, and so is a field named twice in one line.
- The timestamp is an integer in ``precision`` units (``ns`` default, ``us`` (or
  ``u``), ``ms``, ``s``, ``m``, ``h``); none: the time of the call. Stored as
  microseconds: nanoseconds are truncated toward the past.
- Empty lines and lines starting with ``#`` are skipped; ``\\r\\n`` line ends are
  accepted.

A bad line raises :class:`~mlscale.errors.LineProtocolError` naming its number
(1-based) and what is wrong; nothing of the text is returned (so nothing is written).

Speed: a line without backslashes or quotes (nearly all of them) is split with
``str.split`` and its head looked up in a cache of heads already seen; only new
series have their tags parsed. Values are collected in lists and typed in numpy.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ...errors import LineProtocolError
from .batch import KIND_BOOL, KIND_INT, KIND_STR, BatchBuilder, PointBatch

__all__ = ["PRECISIONS", "parse_lines"]

# Microseconds per unit, or (for ns) a divisor.
PRECISIONS: dict[str, int] = {
    "ns": -1000,
    "n": -1000,
    "us": 1,
    "u": 1,
    "ms": 1000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
}
_BOOLS = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}
_FLOAT_START = frozenset("0123456789-.")
_FLOAT_END = frozenset("0123456789.")
_DIGITS = frozenset("0123456789")
_INT_START = frozenset("0123456789-")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _Bad(Exception):
    """A line's fault, in words (turned into a LineProtocolError with its number)."""


def _float(text: str) -> float:
    """A float field value, or _Bad. Python's float() alone would take "nan", "inf",
    "1_000" and surrounding whitespace, which InfluxDB refuses."""
    if not text or text[0] not in _FLOAT_START or text[-1] not in _FLOAT_END or "_" in text:
        raise _Bad(f"invalid field value {text!r}")
    try:
        value = float(text)
    except ValueError:
        raise _Bad(f"invalid field value {text!r}") from None
    if not math.isfinite(value):
        raise _Bad(f"invalid number {text!r}")
    return value


def _int(text: str) -> int:
    """An integer field value without its ``i``, or _Bad."""
    digits = text[1:] if text[:1] == "-" else text
    if not digits or not set(digits) <= _DIGITS:
        raise _Bad(f"invalid integer {text + 'i'!r}")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Bad(f"integer {text}i out of int64 range")
    return value


def _timestamp(text: str, unit: int) -> int:
    """A timestamp in the precision's units as microseconds, or _Bad."""
    digits = text[1:] if text[:1] == "-" else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise _Bad(f"invalid timestamp {text!r}")
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _Bad(f"timestamp {text} out of int64 range")
    return value // -unit if unit < 0 else value * unit


def _split(text: str, sep: str, quotes: bool = False) -> list[str]:
    """``text`` split at each ``sep`` not escaped by a backslash (nor, with ``quotes``,
    inside double quotes); the pieces keep their escapes."""
    out: list[str] = []
    start = 0
    i = 0
    n = len(text)
    quoted = False
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            i += 2
            continue
        if quotes and c == '"':
            quoted = not quoted
        elif c == sep and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise _Bad("unbalanced quotes")
    out.append(text[start:])
    return out


def _unescape(text: str, chars: str) -> str:
    """``text`` with ``\\c`` made ``c`` for each c in ``chars``; other backslashes kept."""
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in chars:
            out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _string_value(text: str) -> str:
    """A double-quoted field value's text (``\\"`` and ``\\\\`` unescaped)."""
    if len(text) < 2 or text[-1] != '"' or (text[-2] == "\\" and not text.endswith('\\\\"')):
        raise _Bad(f"unterminated string {text!r}")
    inner = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and i + 1 < len(inner) and inner[i + 1] in '"\\':
            out.append(inner[i + 1])
            i += 2
            continue
        if c == '"':
            raise _Bad(f"unescaped quote in string {text!r}")
        out.append(c)
        i += 1
    return "".join(out)


def _head(head: str) -> tuple[str, list[tuple[str, str]]]:
    """Measurement and tags of a line's head (escapes allowed)."""
    parts = _split(head, ",")
    measurement = _unescape(parts[0], ", \\")
    if not measurement:
        raise _Bad("missing measurement")
    tags: list[tuple[str, str]] = []
    for raw in parts[1:]:
        kv = _split(raw, "=")
        if len(kv) != 2:
            raise _Bad(f"invalid tag {raw!r} (want key=value)")
        key, value = _unescape(kv[0], ",= \\"), _unescape(kv[1], ",= \\")
        if not key or not value:
            raise _Bad(f"invalid tag {raw!r} (empty key or value)")
        tags.append((key, value))
    return measurement, tags


def _sections(line: str) -> tuple[str, str, str | None]:
    """A line's head, fields and timestamp text (escape- and quote-aware)."""
    i, n = 0, len(line)
    while i < n and line[i] != " ":
        i += 2 if line[i] == "\\" else 1
    head = line[:i]
    if i >= n:
        raise _Bad("missing fields")
    j = start = i + 1
    quoted = False
    while j < n:
        c = line[j]
        if c == "\\" and quoted:
            j += 2
            continue
        if c == "\\" and not quoted:
            j += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == " " and not quoted:
            break
        j += 1
    if quoted:
        raise _Bad("unbalanced quotes")
    fields = line[start:j]
    rest = line[j + 1 :].strip(" ") if j < n else ""
    if " " in rest:
        raise _Bad(f"unexpected text after the timestamp: {rest!r}")
    return head, fields, rest or None


def _value(text: str) -> tuple[int, object]:
    """A field value's kind and value."""
    if not text:
        raise _Bad("missing field value")
    c = text[0]
    if c == '"':
        return KIND_STR, _string_value(text)
    last = text[-1]
    if last == "i":
        return KIND_INT, _int(text[:-1])
    b = _BOOLS.get(text)
    if b is not None:
        return KIND_BOOL, b
    return 0, _float(text)


def parse_lines(text: str, precision: str = "ns", now_ns: int | None = None) -> PointBatch:
    """The points of ``text`` (see the module docstring). ``now_ns``: the time given to
    lines without a timestamp (default: now)."""
    unit = PRECISIONS.get(precision)
    if unit is None:
        raise LineProtocolError(
            f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})", line=0
        )
    now_us = (time.time_ns() if now_ns is None else now_ns) // 1000
    b = BatchBuilder()
    heads: dict[str, int] = {}  # a head as written -> its series
    fields_out = b.fields
    values_out = b.values
    ints_at, ints, bools_at = b.ints_at, b.ints, b.bools_at
    p_series = b.point_series
    p_fields = b.point_fields
    # Timestamps and integers are checked and converted all at once at the end; a
    # point's line number is kept to name a bad one.
    ts_texts: list[str] = []
    int_texts: list[str] = []
    p_line: list[int] = []
    bools = _BOOLS
    fstart, fend, istart = _FLOAT_START, _FLOAT_END, _INT_START
    isfinite: Callable[[float], bool] = math.isfinite
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line[0] == "#" or line == "\r":
            continue
        if line[-1] == "\r":
            line = line[:-1]
        mark = len(values_out)
        try:
            if "\\" in line or '"' in line:
                head, fields_text, ts_text = _sections(line)
                raw_fields = _split(fields_text, ",", quotes=True)
                simple = False
            else:
                parts = line.split(" ")
                if len(parts) == 2:
                    head, fields_text = parts
                    ts_text = None
                elif len(parts) == 3 and parts[2]:
                    head, fields_text, ts_text = parts
                else:
                    head, fields_text, ts_text = _sections(line)
                raw_fields = fields_text.split(",")
                simple = True
            series = heads.get(head)
            if series is None:
                measurement, tags = _head(head)
                series = heads[head] = b.series(measurement, tags)
            if not fields_text:
                raise _Bad("missing fields")
            for kv in raw_fields:
                if simple:
                    key, eq, v = kv.partition("=")
                    if not eq or not key or not v:
                        raise _Bad(f"invalid field {kv!r} (want key=value)")
                    # The common cases inline: a plain float, an integer, a boolean.
                    c = v[-1]
                    if c in fend and v[0] in fstart and "_" not in v:
                        try:
                            f = float(v)
                        except ValueError:
                            raise _Bad(f"invalid field value {v!r}") from None
                        if not isfinite(f):
                            raise _Bad(f"invalid number {v!r}")
                        fields_out.append(key)
                        values_out.append(f)
                        continue
                    if c == "i" and v[0] in istart:
                        ints_at.append(len(values_out))
                        int_texts.append(v[:-1])
                        fields_out.append(key)
                        values_out.append(0.0)
                        continue
                    bv = bools.get(v)
                    if bv is not None:
                        bools_at.append(len(values_out))
                        fields_out.append(key)
                        values_out.append(1.0 if bv else 0.0)
                        continue
                else:
                    pair = _split(kv, "=", quotes=True)
                    if len(pair) < 2:
                        raise _Bad(f"invalid field {kv!r} (want key=value)")
                    key = _unescape(pair[0], ",= \\")
                    v = "=".join(pair[1:])
                    if not key:
                        raise _Bad(f"invalid field {kv!r} (empty key)")
                kind, value = _value(v)
                row = len(values_out)
                if kind == KIND_STR:
                    assert isinstance(value, str)
                    b.strs_at.append(row)
                    b.strs.append(value)
                    values_out.append(math.nan)
                elif kind == KIND_INT:
                    assert isinstance(value, int)
                    ints_at.append(row)
                    int_texts.append(str(value))
                    values_out.append(0.0)
                elif kind == KIND_BOOL:
                    bools_at.append(row)
                    values_out.append(1.0 if value else 0.0)
                else:
                    assert isinstance(value, float)
                    values_out.append(value)
                fields_out.append(key)
            count = len(values_out) - mark
            if count > 1 and len(set(fields_out[mark:])) != count:
                raise _Bad("a field named twice")
        except _Bad as exc:
            raise LineProtocolError(f"line {number}: {exc}: {_clip(line)}", line=number) from None
        p_series.append(series)
        p_fields.append(count)
        p_line.append(number)
        ts_texts.append(ts_text or "")
    lines = text.split("\n") if (ts_texts or int_texts) else []
    b.ts_array = _times(ts_texts, unit, now_us, p_line, lines)
    ints[:] = _ints(int_texts, ints_at, p_fields, p_line, lines)
    return b.build()


_TIMES = re.compile(r"(?:-?[0-9]+|)(?:\n(?:-?[0-9]+|))*")
_INTS = re.compile(r"-?[0-9]+(?:\n-?[0-9]+)*")


def _times(
    texts: list[str], unit: int, now_us: int, p_line: list[int], lines: list[str]
) -> npt.NDArray[np.int64]:
    """The points' timestamps (texts, "" for none) as microseconds, checked at once;
    a bad one raises naming its line."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    joined = "\n".join(texts)
    if _TIMES.fullmatch(joined) is not None:
        try:
            if "" not in texts:
                raw = np.fromiter(map(int, texts), np.int64, len(texts))
            else:
                raw = np.array([int(t) if t else 0 for t in texts], dtype=np.int64)
        except OverflowError:
            pass
        else:
            us = raw // -unit if unit < 0 else raw * unit
            if "" in texts:
                us[np.array([not t for t in texts])] = now_us
            return us
    for i, t in enumerate(texts):
        try:
            if t:
                _timestamp(t, unit)
        except _Bad as exc:
            number = p_line[i]
            raise LineProtocolError(
                f"line {number}: {exc}: {_clip(lines[number - 1])}", line=number
            ) from None
    return np.array([now_us if not t else _timestamp(t, unit) for t in texts], np.int64)


def _ints(
    texts: list[str], rows: list[int], p_fields: list[int], p_line: list[int], lines: list[str]
) -> list[int]:
    """The integer field values (texts without their ``i``), checked at once; a bad
    one raises naming its line."""
    if not texts:
        return []
    if _INTS.fullmatch("\n".join(texts)) is not None:
        values = list(map(int, texts))
        if min(values) >= _INT64_MIN and max(values) <= _INT64_MAX:
            return values
    ends = np.cumsum(np.asarray(p_fields, dtype=np.int64))
    for t, row in zip(texts, rows, strict=True):
        try:
            _int(t)
        except _Bad as exc:
            number = p_line[int(np.searchsorted(ends, row, side="right"))]
            raise LineProtocolError(
                f"line {number}: {exc}: {_clip(lines[number - 1])}", line=number
            ) from None
    raise AssertionError("unreachable: a bad integer was not found")


def _clip(line: str, width: int = 120) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."

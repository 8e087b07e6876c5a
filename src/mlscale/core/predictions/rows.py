"""Predictions and labels, checked and put in columns: :class:`PredictionBatch`,
:class:`LabelBatch`.

Rows come one at a time (:func:`check_prediction`, checked in Python, a few
microseconds) or as a batch (a pandas DataFrame, a pyarrow Table, a dict of columns
or a list of dicts: :func:`to_predictions`, checked in numpy). Every check runs
before anything is queued, and each failure is a :class:`PredictionError` naming the
column and rows, so nothing is dropped silently:

- a missing entity, ``model`` or ``model_version`` (the required columns), or a
  column the log does not have;
- an entity key of the wrong type or out of its type's range;
- a ``prediction_id`` that is not a uuid (a missing one is made: uuid4), a ``ts``
  that is not a time (missing: now; naive times are UTC);
- a ``score`` that is not a number, a ``predicted`` class that is not text, an
  ``extra`` that is not JSON-able;
- text PostgreSQL cannot store, in a text column, a text key or inside ``extra``: a
  NUL character, or a lone surrogate (not UTF-8); a ``ts`` outside years 1 to 9999;
- a prediction with neither a score nor a predicted class.

A batch encodes itself as one binary COPY payload (:mod:`mlscale.core.copybinary`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import PredictionError
from ..copybinary import CopyColumn, PgType, encode_copy, encode_copy_split
from ..keycolumns import INT_RANGES, integer_keys, rows_text
from ..slots import KeyType
from .spec import PredictionLog

__all__ = [
    "LabelBatch",
    "PredictionBatch",
    "check_label",
    "check_prediction",
    "labels_from_rows",
    "new_ids",
    "predictions_from_rows",
    "to_labels",
    "to_predictions",
]

_KEY_COPY = {
    KeyType.INT8: PgType.INT8,
    KeyType.INT4: PgType.INT4,
    KeyType.INT2: PgType.INT2,
    KeyType.TEXT: PgType.TEXT,
    KeyType.UUID: PgType.UUID,
}
_PREDICTION_FIELDS = (
    "prediction_id",
    "ts",
    "score",
    "model",
    "model_version",
    "predicted",
    "extra",
)
_LABEL_FIELDS = ("prediction_id", "label_ts", "outcome", "label")


def _now_us() -> int:
    return time.time_ns() // 1000


# The times a row may carry (us since 1970): Python's dates, years 1 to 9999, in
# which day partitions are named (PostgreSQL's own range is wider).
_TS_MIN_US = (dt.datetime(1, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // (
    dt.timedelta(microseconds=1)
)
_TS_END_US = (
    dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
) // (dt.timedelta(microseconds=1)) + 86_400_000_000
# A \u0000 escape in JSON text (after an even run of backslashes: not "\\u0000"),
# which PostgreSQL's jsonb refuses (22P05).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store ``text`` (a NUL character, a lone surrogate), or None."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (not valid UTF-8)"
    return None


# -- one row at a time --------------------------------------------------------------------


def _key_value(log: PredictionLog, value: Any, where: str) -> Any:
    kt = log.key_type
    if value is None:
        raise PredictionError(f"{where}: the entity {log.entity!r} is missing")
    if kt in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise PredictionError(
                f"{where}: entity {log.entity!r} is {kt}; got {type(value).__name__} {value!r}"
            )
        lo, hi = INT_RANGES[kt]
        if not lo <= int(value) <= hi:
            raise PredictionError(f"{where}: entity {value!r} is out of range for {kt}")
        return int(value)
    if kt is KeyType.TEXT:
        if not isinstance(value, str):
            raise PredictionError(f"{where}: entity {log.entity!r} is text; got {value!r}")
        why = unstorable(value)
        if why is not None:
            raise PredictionError(f"{where}: the text entity holds {why}")
        return value
    return _uuid(value, where, "entity").bytes


def _uuid(value: Any, where: str, what: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        if isinstance(value, bytes) and len(value) == 16:
            return uuid.UUID(bytes=value)
        return uuid.UUID(str(value))
    except ValueError:
        raise PredictionError(f"{where}: {what} {value!r} is not a uuid") from None


def _time_us(value: Any, where: str, what: str) -> int:
    if value is None:
        return _now_us()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int((value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1))
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    if isinstance(value, str):
        try:
            return _time_us(dt.datetime.fromisoformat(value), where, what)
        except ValueError:
            pass
    raise PredictionError(f"{where}: {what} {value!r} is not a time")


def _text(value: Any, where: str, what: str, required: bool) -> str | None:
    if value is None or (required and value == ""):
        if required:
            raise PredictionError(f"{where}: {what} is missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise PredictionError(f"{where}: {what} must be {'non-empty ' if required else ''}text")
    why = unstorable(value)
    if why is not None:
        raise PredictionError(f"{where}: {what} holds {why}, which PostgreSQL cannot store")
    return value


def _number(value: Any, where: str, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise PredictionError(f"{where}: {what} must be a number; got {value!r}")
    return float(value)


def _json(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        # Not ASCII-escaped: a lone surrogate stays one, found by the encoding below
        # (escaped, the server would refuse it), and the payload is smaller.
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PredictionError(f"{where}: extra is not JSON-able ({exc})") from None
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise PredictionError(
            f"{where}: extra holds a NUL character in a string, which PostgreSQL's jsonb "
            "cannot store"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise PredictionError(
                f"{where}: extra holds a lone surrogate (not valid UTF-8) in a string"
            ) from None
    return text


def _check_times(ts_us: npt.NDArray[np.int64], where: str) -> None:
    bad = (ts_us < _TS_MIN_US) | (ts_us >= _TS_END_US)
    if bad.any():
        raise PredictionError(f"{where}: ts out of range (years 1 to 9999) in {rows_text(bad)}")


def check_prediction(
    log: PredictionLog,
    entity: Any,
    model: Any,
    model_version: Any,
    score: Any = None,
    predicted: Any = None,
    prediction_id: Any = None,
    ts: Any = None,
    extra: Any = None,
    where: str = "prediction",
) -> tuple[Any, ...]:
    """One prediction, checked, as a row in :data:`_PREDICTION_FIELDS` order after the
    entity (``prediction_id`` as 16 bytes, ``ts`` in microseconds since 1970 UTC)."""
    key = _key_value(log, entity, where)
    m = _text(model, where, "model", True)
    v = _text(model_version, where, "model_version", True)
    s = _number(score, where, "score")
    p = _text(predicted, where, "predicted", False)
    if s is None and p is None:
        raise PredictionError(f"{where}: a prediction needs a score, a predicted class or both")
    if s is not None and math.isnan(s):
        raise PredictionError(f"{where}: score is NaN (send None for no score)")
    pid = None if prediction_id is None else _uuid(prediction_id, where, "prediction_id")
    if ts is not None:
        at = _time_us(ts, where, "ts")
    elif pid is not None and pid.version == 7:
        at = (pid.int >> 80) * 1000  # the id's own time: a resend of the id alone is the same row
    else:
        at = _now_us() // 1000 * 1000
    _check_times(np.array([at], dtype=np.int64), where)
    raw = new_ids(np.array([at], dtype=np.int64)).tobytes() if pid is None else pid.bytes
    return (key, raw, at, s, m, v, p, _json(extra, where))


def check_label(
    log: PredictionLog,
    prediction_id: Any,
    entity: Any,
    outcome: Any = None,
    label: Any = None,
    label_ts: Any = None,
    where: str = "label",
) -> tuple[Any, ...]:
    """One label, checked, as a row: entity, prediction_id (16 bytes), label_ts (us
    since 1970), outcome, label."""
    if prediction_id is None:
        raise PredictionError(f"{where}: prediction_id is missing")
    key = _key_value(log, entity, where)
    pid = _uuid(prediction_id, where, "prediction_id")
    o = _number(outcome, where, "outcome")
    lab = _text(label, where, "label", False)
    if o is None and lab is None:
        raise PredictionError(f"{where}: a label needs an outcome, a label or both")
    if o is not None and math.isnan(o):
        raise PredictionError(f"{where}: outcome is NaN (send None for no outcome)")
    return (key, pid.bytes, _time_us(label_ts, where, "label_ts"), o, lab)


# -- columns ------------------------------------------------------------------------------


def _keys_column(log: PredictionLog, keys: Sequence[Any]) -> npt.NDArray[Any]:
    if log.key_type in INT_RANGES:
        return np.asarray(keys, dtype=np.int64)
    if log.key_type is KeyType.UUID:
        return np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16)
    return np.asarray(keys, dtype=object)


def _opt(values: Sequence[Any], dtype: Any) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    if dtype is object:
        return np.asarray(values, dtype=object), valid
    arr = np.zeros(len(values), dtype=dtype)
    if valid.any():
        arr[valid] = [v for v in values if v is not None]
    return arr, valid


@dataclass(frozen=True, slots=True)
class PredictionBatch:
    """Checked predictions in columns. ``entity``: int64, object str, or (n, 16) uint8
    uuids; ``prediction_id``: (n, 16) uint8; ``ts_us``: microseconds since 1970 UTC;
    ``score`` float64, ``predicted``/``extra`` object arrays, each with a mask of
    which are present; ``model``/``model_version`` object arrays of str."""

    log: PredictionLog
    entity: npt.NDArray[Any]
    prediction_id: npt.NDArray[np.uint8]
    ts_us: npt.NDArray[np.int64]
    score: npt.NDArray[np.float64]
    score_valid: npt.NDArray[np.bool_]
    model: npt.NDArray[Any]
    model_version: npt.NDArray[Any]
    predicted: npt.NDArray[Any]
    predicted_valid: npt.NDArray[np.bool_]
    extra: npt.NDArray[Any]
    extra_valid: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        """How many predictions."""
        return int(self.ts_us.shape[0])

    def take(self, index: npt.NDArray[Any] | slice) -> PredictionBatch:
        """The rows at ``index`` (positions, a boolean mask, or a slice: a view)."""
        return PredictionBatch(
            self.log,
            *(getattr(self, f)[index] for f in _BATCH_ARRAYS),
        )

    @classmethod
    def concat(cls, batches: Sequence[PredictionBatch]) -> PredictionBatch:
        """One batch of ``batches``' rows, in order."""
        if len(batches) == 1:
            return batches[0]
        return cls(
            batches[0].log,
            *(np.concatenate([getattr(b, f) for b in batches]) for f in _BATCH_ARRAYS),
        )

    def days(self) -> list[dt.date]:
        """The UTC days the rows' times fall in."""
        if not self.size:
            return []
        day_us = 86_400_000_000
        first, last = int(self.ts_us.min()) // day_us, int(self.ts_us.max()) // day_us
        if last - first <= 1:  # the usual batch: no sort needed
            span = range(first, last + 1)
            return [dt.date(1970, 1, 1) + dt.timedelta(days=d) for d in span]
        days = np.unique(self.ts_us // day_us)
        return [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days]

    def ids(self) -> list[uuid.UUID]:
        """The prediction ids."""
        raw = self.prediction_id.tobytes()
        return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]

    def copy_columns(self) -> list[CopyColumn]:
        """The columns in the layout's ``copy_columns`` order, for the encoder."""
        return [
            CopyColumn(_KEY_COPY[self.log.key_type], self.entity),
            CopyColumn(PgType.UUID, self.prediction_id),
            CopyColumn(PgType.TIMESTAMPTZ, self.ts_us),
            CopyColumn(PgType.FLOAT8, self.score, self.score_valid),
            CopyColumn(PgType.TEXT, self.model),
            CopyColumn(PgType.TEXT, self.model_version),
            CopyColumn(PgType.TEXT, self.predicted, self.predicted_valid),
            CopyColumn(PgType.JSONB, self.extra, self.extra_valid),
        ]

    def copy_payload(self) -> bytes:
        """The rows as one binary COPY payload in the layout's ``copy_columns`` order."""
        return encode_copy(self.copy_columns())

    def copy_payloads(self, where: npt.NDArray[np.int64], parts: int) -> list[bytes]:
        """The rows as ``parts`` payloads, row ``i`` in payload ``where[i]`` (one pass
        over the batch; see :func:`~mlscale.core.copybinary.encode_copy_split`)."""
        return encode_copy_split(self.copy_columns(), where, parts)


_BATCH_ARRAYS = (
    "entity",
    "prediction_id",
    "ts_us",
    "score",
    "score_valid",
    "model",
    "model_version",
    "predicted",
    "predicted_valid",
    "extra",
    "extra_valid",
)


def predictions_from_rows(log: PredictionLog, rows: Sequence[tuple[Any, ...]]) -> PredictionBatch:
    """A batch of rows made by :func:`check_prediction`."""
    if not rows:
        cols: list[Sequence[Any]] = [[] for _ in range(8)]
    else:
        cols = [list(c) for c in zip(*rows, strict=True)]
    score, score_valid = _opt(cols[3], np.float64)
    predicted, predicted_valid = _opt(cols[6], object)
    extra, extra_valid = _opt(cols[7], object)
    return PredictionBatch(
        log,
        _keys_column(log, cols[0]),
        np.frombuffer(b"".join(cols[1]), dtype=np.uint8).reshape(-1, 16),
        np.asarray(cols[2], dtype=np.int64),
        score,
        score_valid,
        np.asarray(cols[4], dtype=object),
        np.asarray(cols[5], dtype=object),
        predicted,
        predicted_valid,
        extra,
        extra_valid,
    )


def _records(data: Any, fields: Sequence[str], required: Sequence[str], what: str) -> Any:
    """``data`` as a pandas DataFrame whose columns are known to be ``fields``."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data
    elif hasattr(data, "to_pandas") and hasattr(data, "schema"):  # a pyarrow Table
        frame = data.to_pandas()
    elif isinstance(data, Mapping):
        frame = pd.DataFrame(dict(data))
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        if not all(isinstance(r, Mapping) for r in data):
            raise PredictionError(f"{what}: rows must be mappings (dicts) of column to value")
        frame = pd.DataFrame.from_records(list(data))
    else:
        raise PredictionError(
            f"{what}: expected a DataFrame, an Arrow table, a dict of columns or a list of "
            f"dicts; got {type(data).__name__}"
        )
    extra = sorted(set(map(str, frame.columns)) - set(fields))
    if extra:
        raise PredictionError(
            f"{what}: unknown column(s) {', '.join(extra)}; the columns are {', '.join(fields)}"
        )
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise PredictionError(f"{what}: missing column(s) {', '.join(missing)}")
    return frame


def _keys(log: PredictionLog, series: Any, where: str) -> npt.NDArray[Any]:
    na = series.isna().to_numpy()
    if na.any():
        raise PredictionError(f"{where}: the entity {log.entity!r} is missing in {rows_text(na)}")
    kt = log.key_type
    if kt in INT_RANGES:
        what = f"entity {log.entity!r}"
        return integer_keys(series, kt, where=where, what=what, error=PredictionError)
    values = series.tolist()
    return _keys_column(log, [_key_value(log, v, where) for v in values])


def _texts(
    frame: Any, name: str, where: str, required: bool
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    n = len(frame)
    if name not in frame.columns:
        if required:
            raise PredictionError(f"{where}: missing column {name}")
        return np.full(n, None, dtype=object), np.zeros(n, dtype=bool)
    import pandas as pd

    values = np.asarray(frame[name].to_numpy(dtype=object), dtype=object)
    # A text column holds few distinct values (models, versions, classes): the checks
    # run on those, not per row (~20 ns a row to factorize instead of ~150 to check).
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    valid = codes >= 0
    distinct = list(uniques)
    if not all(type(v) is str for v in distinct):
        wrong = np.array([type(v) is not str for v in distinct], dtype=bool)
        raise PredictionError(f"{where}: {name} must be text in {rows_text(valid & wrong[codes])}")
    if required:
        blank = np.array([not v for v in distinct], dtype=bool)
        empty = ~valid
        if distinct:
            empty |= valid & blank[codes]
        if empty.any():
            raise PredictionError(f"{where}: {name} is missing in {rows_text(empty)}")
    whys = [unstorable(v) for v in distinct]
    if any(whys):
        bad = np.array([w is not None for w in whys], dtype=bool)
        why = next(w for w in whys if w)
        raise PredictionError(
            f"{where}: {name} holds {why}, which PostgreSQL cannot store, in "
            f"{rows_text(valid & bad[codes])}"
        )
    if not valid.all():
        values = values.copy()  # never write into the caller's frame
        values[~valid] = None
    return values, valid


def _floats(
    frame: Any, name: str, where: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    n = len(frame)
    if name not in frame.columns:
        return np.zeros(n), np.zeros(n, dtype=bool)
    series = frame[name]
    valid = ~series.isna().to_numpy()
    if series.dtype.kind in "iuf":
        arr = series.to_numpy(dtype=np.float64, na_value=0.0)
    else:
        present = series[valid].tolist()
        ok = [not isinstance(v, bool) and isinstance(v, int | float | np.number) for v in present]
        if not all(ok):
            bad = np.zeros(n, dtype=bool)
            bad[np.flatnonzero(valid)] = [not o for o in ok]
            raise PredictionError(f"{where}: {name} must be a number in {rows_text(bad)}")
        arr = np.zeros(n)
        arr[valid] = np.asarray(present, dtype=np.float64)
    if series.dtype.kind == "f":  # a NaN in a float column is pandas' missing value
        valid &= ~np.isnan(arr)
    arr[~valid] = 0.0
    return arr, valid


def _ids(frame: Any, where: str) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """The given ids as an (n, 16) array (zeros where missing) and which were given."""
    n = len(frame)
    if "prediction_id" not in frame.columns:
        return np.zeros((n, 16), dtype=np.uint8), np.zeros(n, dtype=bool)
    values = frame["prediction_id"].to_numpy(dtype=object).tolist()
    kinds = set(map(type, values))
    # Fast paths for a column of one kind: uuid.UUID objects or 16-byte strings.
    if kinds == {uuid.UUID}:
        raw = b"".join([v.int.to_bytes(16, "big") for v in values])
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16), np.ones(n, dtype=bool)
    if kinds == {bytes} and all(len(v) == 16 for v in values):
        return (
            np.frombuffer(b"".join(values), dtype=np.uint8).reshape(-1, 16),
            np.ones(n, dtype=bool),
        )
    given = np.array([not _missing(v) for v in values], dtype=bool)
    parts = [
        _uuid(v, where, "prediction_id").bytes if ok else bytes(16)
        for v, ok in zip(values, given.tolist(), strict=True)
    ]
    return np.frombuffer(b"".join(parts), dtype=np.uint8).reshape(-1, 16).copy(), given


def new_ids(ts_us: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """Version 7 uuids (RFC 9562) carrying the millisecond of each time in ``ts_us``
    (microseconds since 1970) and 74 random bits, as an (n, 16) array. Ids made so
    sort by time, and a prediction resent with its id alone gets its time back."""
    n = len(ts_us)
    raw = np.frombuffer(os.urandom(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    ms = (np.asarray(ts_us, dtype=np.int64) // 1000).astype(">u8").view(np.uint8).reshape(n, 8)
    raw[:, :6] = ms[:, 2:]
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return raw


def _id_times(ids: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The microsecond (a whole millisecond) version 7 ids carry, and which ids are v7."""
    n = len(ids)
    wide = np.zeros((n, 8), dtype=np.uint8)
    wide[:, 2:] = ids[:, :6]
    ms = wide.view(">u8").reshape(n).astype(np.int64)
    return ms * 1000, (ids[:, 6] >> 4) == 7


def _times(
    frame: Any, name: str, where: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The given times (us since 1970; 0 where missing) and which were given."""
    n = len(frame)
    if name not in frame.columns:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    import pandas as pd

    series = frame[name]
    if series.dtype.kind == "M":  # already times: no parsing (to_datetime costs ~0.1 us a row)
        ts = series.dt.tz_convert(None) if getattr(series.dt, "tz", None) is not None else series
    else:
        try:
            mixed = {"format": "mixed"} if series.dtype.kind == "O" else {}
            ts = pd.to_datetime(series, utc=True, **mixed).dt.tz_convert(None)
        except (ValueError, TypeError) as exc:
            raise PredictionError(
                f"{where}: {name} holds something that is not a time ({exc})"
            ) from None
    na = ts.isna().to_numpy()
    out = np.asarray(ts.to_numpy("datetime64[us]")).view(np.int64).copy()
    out[na] = 0
    return out, ~na


def _now_ms_us() -> int:
    """Now, in microseconds, cut to the millisecond (what a made v7 id carries)."""
    return _now_us() // 1000 * 1000


def ids_and_times(
    ids: npt.NDArray[np.uint8],
    id_given: npt.NDArray[np.bool_],
    ts_us: npt.NDArray[np.int64],
    ts_given: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Missing times and ids filled so that a resend is the same row: a missing time
    is a given v7 id's time, else now (to the millisecond); a missing id is a v7 id of
    the row's time."""
    if not ts_given.all():
        ts_us = ts_us.copy()
        id_us, v7 = _id_times(ids)
        from_id = ~ts_given & id_given & v7
        ts_us[from_id] = id_us[from_id]
        ts_us[~ts_given & ~from_id] = _now_ms_us()
    if not id_given.all():
        ids = ids.copy()
        ids[~id_given] = new_ids(ts_us[~id_given])
    return ids, ts_us


def to_predictions(log: PredictionLog, data: Any) -> PredictionBatch:
    """Check a batch of predictions (see the module docstring) into columns."""
    fields = (log.entity, *_PREDICTION_FIELDS)
    where = "predictions"
    frame = _records(data, fields, (log.entity, "model", "model_version"), where)
    if not len(frame):
        return predictions_from_rows(log, [])
    entity = _keys(log, frame[log.entity], where)
    model, _ = _texts(frame, "model", where, True)
    version, _ = _texts(frame, "model_version", where, True)
    score, score_valid = _floats(frame, "score", where)
    predicted, predicted_valid = _texts(frame, "predicted", where, False)
    neither = ~score_valid & ~predicted_valid
    if neither.any():
        raise PredictionError(
            f"{where}: a prediction needs a score, a predicted class or both; "
            f"{rows_text(neither)} have neither"
        )
    if "extra" in frame.columns and not frame["extra"].isna().all():
        extras = []
        for i, v in enumerate(_optional(frame["extra"])):
            extras.append(_json(v, f"{where}: row {i}"))
        extra, extra_valid = _opt(extras, object)
    else:
        extra, extra_valid = np.full(len(frame), None, dtype=object), np.zeros(len(frame), bool)
    ids, ts_us = ids_and_times(*_ids(frame, where), *_times(frame, "ts", where))
    _check_times(ts_us, where)
    return PredictionBatch(
        log,
        entity,
        ids,
        ts_us,
        score,
        score_valid,
        model,
        version,
        predicted,
        predicted_valid,
        extra,
        extra_valid,
    )


def _optional(series: Any) -> list[Any]:
    return [None if _missing(v) else v for v in series.tolist()]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, NaT, pd.NA
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True, slots=True)
class LabelBatch:
    """Checked labels in columns (see :func:`check_label`)."""

    log: PredictionLog
    entity: npt.NDArray[Any]
    prediction_id: npt.NDArray[np.uint8]
    label_ts_us: npt.NDArray[np.int64]
    outcome: npt.NDArray[np.float64]
    outcome_valid: npt.NDArray[np.bool_]
    label: npt.NDArray[Any]
    label_valid: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        """How many labels."""
        return int(self.label_ts_us.shape[0])

    def take(self, index: npt.NDArray[Any]) -> LabelBatch:
        """The rows at ``index``."""
        return LabelBatch(
            self.log,
            self.entity[index],
            self.prediction_id[index],
            self.label_ts_us[index],
            self.outcome[index],
            self.outcome_valid[index],
            self.label[index],
            self.label_valid[index],
        )

    def copy_payload(self) -> bytes:
        """The rows as one binary COPY payload for the labels' staging table."""
        return encode_copy(
            [
                CopyColumn(_KEY_COPY[self.log.key_type], self.entity),
                CopyColumn(PgType.UUID, self.prediction_id),
                CopyColumn(PgType.TIMESTAMPTZ, self.label_ts_us),
                CopyColumn(PgType.FLOAT8, self.outcome, self.outcome_valid),
                CopyColumn(PgType.TEXT, self.label, self.label_valid),
            ]
        )


def labels_from_rows(log: PredictionLog, rows: Sequence[tuple[Any, ...]]) -> LabelBatch:
    """A batch of rows made by :func:`check_label`."""
    cols: list[Sequence[Any]] = (
        [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(5)]
    )
    outcome, outcome_valid = _opt(cols[3], np.float64)
    label, label_valid = _opt(cols[4], object)
    return LabelBatch(
        log,
        _keys_column(log, cols[0]),
        np.frombuffer(b"".join(cols[1]), dtype=np.uint8).reshape(-1, 16),
        np.asarray(cols[2], dtype=np.int64),
        outcome,
        outcome_valid,
        label,
        label_valid,
    )


def _label_times(frame: Any, where: str) -> npt.NDArray[np.int64]:
    ts, given = _times(frame, "label_ts", where)
    ts[~given] = _now_us()
    return ts


def to_labels(log: PredictionLog, data: Any) -> LabelBatch:
    """Check a batch of labels (columns ``prediction_id``, the entity, ``outcome`` and/or
    ``label``, optional ``label_ts``) into columns."""
    fields = ("prediction_id", log.entity, "outcome", "label", "label_ts")
    where = "labels"
    frame = _records(data, fields, ("prediction_id", log.entity), where)
    if not len(frame):
        return labels_from_rows(log, [])
    na = frame["prediction_id"].isna().to_numpy()
    if na.any():
        raise PredictionError(f"{where}: prediction_id is missing in {rows_text(na)}")
    outcome, outcome_valid = _floats(frame, "outcome", where)
    label, label_valid = _texts(frame, "label", where, False)
    neither = ~outcome_valid & ~label_valid
    if neither.any():
        raise PredictionError(
            f"{where}: a label needs an outcome, a label or both; {rows_text(neither)} have neither"
        )
    return LabelBatch(
        log,
        _keys(log, frame[log.entity], where),
        _ids(frame, where)[0],
        _label_times(frame, where),
        outcome,
        outcome_valid,
        label,
        label_valid,
    )

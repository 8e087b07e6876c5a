"""Pushed data, checked and put in columns: :class:`Batch`.

A push takes a pandas DataFrame, a pyarrow Table or a list of dicts (records). Every
check runs before anything is written, and each failure is a :class:`FeatureError`
that names the column and rows:

- a missing entity, ``event_ts`` or feature column, or a column the view does not
  have (the data's features must be exactly the view's);
- an entity key of the wrong type, out of its type's range, or missing;
- a missing or unparsable event time (naive times are taken as UTC);
- a value of the wrong type for its feature; an embedding of the wrong length;
- a float NaN in a feature that does not allow NaN (``allow_nan``). A *missing*
  value is None / ``pd.NA`` (a nullable column): stored as NULL, read as missing;
- two rows of the same entity and event time; more rows than the store's limit.

A batch encodes itself as one binary COPY payload without a Python loop when all of
its values are fixed-width and present (:meth:`Batch.copy_payload`); else as rows.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import FeatureError
from ..keycolumns import INT_RANGES, integer_keys, rows_text
from ..slots import KeyType
from .arrays import PG_EPOCH_US, encode_header
from .layout import Layout
from .spec import Feature, FeatureType, FeatureView

__all__ = ["Batch", "event_times", "to_batch"]

_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_KEY_FIXED = {KeyType.INT8: ">i8", KeyType.INT4: ">i4", KeyType.INT2: ">i2"}


@dataclass(frozen=True, slots=True)
class Batch:
    """Checked rows of one view, in columns: ``keys`` (one array per entity column:
    int64, or object arrays of str / UUID), ``event_us`` (microseconds since 1970 UTC),
    and per feature its ``values`` (float32, int64, bool, object str, or float32
    ``(n, dim)`` for embeddings) and ``valid`` mask (None: every value present)."""

    view: FeatureView
    keys: tuple[npt.NDArray[Any], ...]
    event_us: npt.NDArray[np.int64]
    values: tuple[npt.NDArray[Any], ...]
    valid: tuple[npt.NDArray[np.bool_] | None, ...]

    @property
    def size(self) -> int:
        """How many rows."""
        return int(self.event_us.shape[0])

    def take(self, index: npt.NDArray[Any]) -> Batch:
        """The rows at ``index`` (positions or a boolean mask)."""
        return Batch(
            self.view,
            tuple(k[index] for k in self.keys),
            self.event_us[index],
            tuple(v[index] for v in self.values),
            tuple(None if m is None else m[index] for m in self.valid),
        )

    def key_tuples(self) -> list[tuple[Any, ...]]:
        """Each row's key as a tuple of Python values."""
        return list(zip(*(k.tolist() for k in self.keys), strict=True))

    def months(self) -> list[dt.date]:
        """The first day of each month (UTC) the rows' event times fall in."""
        if not self.size:
            return []
        months = np.unique(self.event_us.astype("datetime64[us]").astype("datetime64[M]"))
        return [m.astype("datetime64[D]").item() for m in months]

    # -- encoding ---------------------------------------------------------------------

    def copy_payload(self, layout: Layout) -> bytes | None:
        """The rows as one binary COPY payload in ``layout.stored`` order, built in numpy;
        None when a value is missing or variable-width (text): then use :meth:`rows`."""
        if any(m is not None and not m.all() for m in self.valid):
            return None
        if any(k.dtype.kind != "i" for k in self.keys):
            return None
        fields: list[Any] = [("nf", ">i2")]
        fill: list[tuple[str, Any]] = []
        for i, (e, k) in enumerate(zip(self.view.entities, self.keys, strict=True)):
            code = _KEY_FIXED[e.key_type]
            fields += [(f"kl{i}", ">i4"), (f"k{i}", code)]
            fill += [(f"kl{i}", np.dtype(code).itemsize), (f"k{i}", k)]
        fields += [("tl", ">i4"), ("t", ">i8")]
        fill += [("tl", 8), ("t", self.event_us - PG_EPOCH_US)]
        for c in layout.columns:
            if c.kind is FeatureType.TEXT:
                return None
            name = c.name
            if c.kind is FeatureType.BOOL:
                fields += [(f"{name}_l", ">i4"), (name, "?")]
                fill += [(f"{name}_l", 1), (name, self.values[c.features[0]])]
                continue
            if c.kind is FeatureType.EMBEDDING:
                block = self.values[c.features[0]]
                code, oid = ">f4", "float4"
            elif c.kind is FeatureType.FLOAT:
                block = np.stack([self.values[i] for i in c.features], axis=1)
                code, oid = ">f4", "float4"
            else:
                block = np.stack([self.values[i] for i in c.features], axis=1)
                code, oid = ">i8", "int8"
            m = block.shape[1]
            width = np.dtype(code).itemsize
            elem = np.dtype([("n", ">i4"), ("v", code)])
            fields += [(f"{name}_l", ">i4"), (f"{name}_h", "S20"), (f"{name}_e", elem, (m,))]
            fill += [
                (f"{name}_l", 20 + (4 + width) * m),
                (f"{name}_h", np.frombuffer(encode_header(oid, m), dtype="S20")[0]),
                (f"{name}_e.n", width),
                (f"{name}_e.v", block),
            ]
        rows = np.empty(self.size, dtype=np.dtype(fields))
        rows["nf"] = len(layout.stored)
        for name, value in fill:
            if name.endswith(".n") or name.endswith(".v"):
                base, part = name.rsplit(".", 1)
                rows[base][part] = value
            else:
                rows[name] = value
        return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER

    def rows(self, layout: Layout) -> Iterator[tuple[Any, ...]]:
        """The rows as Python tuples in ``layout.stored`` order (NULL for missing)."""
        times = (self.event_us.astype("datetime64[us]").astype(object)).tolist()
        keys = [k.tolist() for k in self.keys]
        cols: list[list[Any]] = []
        for c in layout.columns:
            if c.packed:
                parts = [_py(self.values[i], self.valid[i]) for i in c.features]
                cols.append([list(vals) for vals in zip(*parts, strict=True)])
            else:
                cols.append(_py(self.values[c.features[0]], self.valid[c.features[0]]))
        utc = dt.UTC
        for r in range(self.size):
            yield (
                *(k[r] for k in keys),
                times[r].replace(tzinfo=utc),
                *(col[r] for col in cols),
            )


def _py(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None) -> list[Any]:
    out: list[Any] = values.tolist()
    if valid is not None:
        for i in np.flatnonzero(~valid).tolist():
            out[i] = None
    return out


# -- checking ---------------------------------------------------------------------------


def to_batch(
    view: FeatureView, data: Any, *, timestamp_column: str = "event_ts", max_rows: int
) -> Batch:
    """``data`` (DataFrame, Arrow table or records) checked against ``view``."""
    import pandas as pd

    frame = _frame(data)
    n = len(frame)
    where = f"push to feature view {view.name!r}"
    if n > max_rows:
        raise FeatureError(
            f"{where}: {n:,} rows is over the limit of {max_rows:,} a push takes; "
            "split it, or use materialize() for bulk loads"
        )
    wanted = [*view.entity_names, timestamp_column, *(f.name for f in view.features)]
    columns = [str(c) for c in frame.columns]
    missing = [c for c in wanted if c not in columns]
    extra = [c for c in columns if c not in wanted]
    if missing or extra:
        feats = len(view.features)
        given = sum(1 for c in columns if c in {f.name for f in view.features})
        parts = []
        if missing:
            parts.append(f"lacks column(s) {', '.join(missing[:10])}")
        if extra:
            parts.append(f"has column(s) the view does not: {', '.join(extra[:10])}")
        raise FeatureError(
            f"{where}: the data {' and '.join(parts)} (the view has {feats} features, "
            f"the data {given} of them; columns are {', '.join(view.entity_names)}, "
            f"{timestamp_column} and the features)"
        )
    keys = tuple(
        _key(frame[e.name], e.key_type, f"{where}: entity {e.name!r}") for e in view.entities
    )
    event_us = event_times(frame[timestamp_column], f"{where}: {timestamp_column!r}")
    values: list[npt.NDArray[Any]] = []
    valid: list[npt.NDArray[np.bool_] | None] = []
    for f in view.features:
        v, m = _feature(frame[f.name], f, f"{where}: feature {f.name!r}")
        values.append(v)
        valid.append(m)
    batch = Batch(view, keys, event_us, tuple(values), tuple(valid))
    if n > 1:
        _check_unique(batch, pd, where)
    return batch


def _frame(data: Any) -> Any:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    mod = type(data).__module__
    if mod.startswith("pyarrow"):
        import pyarrow as pa

        # Nullable pandas columns, so an Arrow null stays missing (not a NaN).
        nullable = {
            pa.float32(): pd.Float32Dtype(),
            pa.float64(): pd.Float64Dtype(),
            pa.int64(): pd.Int64Dtype(),
            pa.int32(): pd.Int32Dtype(),
            pa.int16(): pd.Int16Dtype(),
            pa.bool_(): pd.BooleanDtype(),
        }
        return data.to_pandas(types_mapper=nullable.get)
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        records = list(data)
        if not all(isinstance(r, dict) for r in records):
            raise FeatureError("push: records must be dicts of column -> value")
        columns = list(records[0]) if records else []
        for i, r in enumerate(records):
            if r.keys() != set(columns):
                odd = sorted(set(r) ^ set(columns))
                raise FeatureError(
                    f"push: record {i} has other columns than record 0: {', '.join(odd[:10])}"
                )
        # Object columns keep None (missing) apart from NaN (a value).
        return pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object) for c in columns})
    raise FeatureError(
        f"push: data must be a pandas DataFrame, a pyarrow Table or a list of dicts, "
        f"got {type(data).__name__}"
    )


def _key(series: Any, key_type: KeyType, where: str) -> npt.NDArray[Any]:
    na = series.isna().to_numpy()
    if na.any():
        raise FeatureError(f"{where}: key is missing in {rows_text(na)}")
    if key_type in INT_RANGES:
        return integer_keys(series, key_type, where=where, what="the key", error=FeatureError)
    vals = series.tolist()
    if key_type is KeyType.TEXT:
        if not all(type(v) is str for v in vals):
            raise FeatureError(f"{where}: the view's key is text; the data's is {series.dtype}")
        if any("\x00" in v for v in vals):
            raise FeatureError(f"{where}: a text key holds a NUL character")
        return np.array(vals, dtype=object)
    uuids: list[uuid.UUID] = []
    for v in vals:
        try:
            uuids.append(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
        except ValueError:
            raise FeatureError(f"{where}: {v!r} is not a uuid") from None
    return np.array(uuids, dtype=object)


def event_times(series: Any, where: str) -> npt.NDArray[np.int64]:
    """Event times as microseconds since 1970 UTC (naive times taken as UTC); a
    FeatureError naming the rows if one is missing or unparsable."""
    import pandas as pd

    try:
        # Strings and datetimes mixed in an object column: each parsed on its own.
        mixed = {"format": "mixed"} if series.dtype.kind == "O" else {}
        ts = pd.to_datetime(series, utc=True, **mixed)
    except (ValueError, TypeError) as exc:
        raise FeatureError(f"{where}: not event times ({exc})") from None
    na = ts.isna().to_numpy()
    if na.any():
        raise FeatureError(f"{where}: event time is missing in {rows_text(na)}")
    return np.asarray(
        ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    ).astype(np.int64)


def _feature(
    series: Any, f: Feature, where: str
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
    import pandas as pd

    kind = series.dtype.kind
    masked = hasattr(series.array, "_mask")  # a pandas nullable column: NA is missing
    if masked:
        na = series.isna().to_numpy()
    elif kind == "O":  # None / NA are missing; a float NaN is a value
        na = np.array([v is None or v is pd.NA for v in series.tolist()], dtype=bool)
    else:
        na = np.zeros(len(series), bool)
    valid = None if not na.any() else ~na
    if f.type is FeatureType.FLOAT:
        if kind == "O":
            vals = series.tolist()
            if not all(v is None or v is pd.NA or _num(v) for v in vals):
                raise FeatureError(f"{where} is a float feature; the data holds non-numbers")
            arr = np.array(
                [np.nan if v is None or v is pd.NA else float(v) for v in vals], dtype=np.float32
            )
        elif kind in "iufb":
            arr = series.to_numpy(dtype=np.float32, na_value=np.nan)
        else:
            raise FeatureError(f"{where} is a float feature; the data's column is {series.dtype}")
        _check_nan(arr, valid, f, where)
        return arr, valid
    if f.type is FeatureType.INT:
        if kind in "iu" and not masked:
            return series.to_numpy(dtype=np.int64), None
        if kind in "iuf" or kind == "O":
            raw = (
                series.to_numpy(dtype=object, na_value=None)
                if (masked or kind == "O")
                else series.to_numpy()
            )
            if kind == "f" and not masked:
                nan = np.isnan(raw)
                valid = None if not nan.any() else ~nan
                raw = np.where(nan, 0, raw)
                if not np.all(np.mod(raw, 1) == 0):
                    raise FeatureError(f"{where} is an int feature; the data holds fractions")
                return raw.astype(np.int64), valid
            vals = raw.tolist()
            if not all(
                v is None
                or (isinstance(v, int | np.integer) and not isinstance(v, bool))
                or (isinstance(v, float) and v.is_integer())
                for v in vals
            ):
                raise FeatureError(f"{where} is an int feature; the data holds non-integers")
            return np.array([0 if v is None else int(v) for v in vals], dtype=np.int64), valid
        raise FeatureError(f"{where} is an int feature; the data's column is {series.dtype}")
    if f.type is FeatureType.BOOL:
        if kind == "b":
            return series.to_numpy(dtype=bool), None
        vals = series.to_numpy(dtype=object, na_value=None).tolist()
        if not all(v is None or isinstance(v, bool | np.bool_) for v in vals):
            raise FeatureError(f"{where} is a bool feature; the data holds non-booleans")
        return np.array([bool(v) if v is not None else False for v in vals], dtype=bool), valid
    if f.type is FeatureType.TEXT:
        vals = series.to_numpy(dtype=object, na_value=None).tolist()
        if not all(v is None or type(v) is str for v in vals):
            raise FeatureError(f"{where} is a text feature; the data holds non-strings")
        if any(v is not None and "\x00" in v for v in vals):
            raise FeatureError(f"{where}: a text value holds a NUL character")
        return np.array(vals, dtype=object), valid
    dim = int(f.dim or 0)
    vals = series.tolist()
    out = np.zeros((len(vals), dim), dtype=np.float32)
    emb_valid = np.ones(len(vals), dtype=bool)
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            emb_valid[i] = False
            continue
        row = np.asarray(v, dtype=np.float32)
        if row.shape != (dim,):
            raise FeatureError(
                f"{where} is an embedding of {dim} values; row {i} has shape {row.shape}"
            )
        out[i] = row
    evalid = None if emb_valid.all() else emb_valid
    _check_nan(out, evalid, f, where)
    return out, evalid


def _num(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _check_nan(
    arr: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None, f: Feature, where: str
) -> None:
    if f.allow_nan:
        return
    nan = np.isnan(arr) if arr.ndim == 1 else np.isnan(arr).any(axis=1)
    if valid is not None:
        nan &= valid
    if nan.any():
        raise FeatureError(
            f"{where}: NaN in {rows_text(nan)}, and the feature allows none (allow_nan=False); "
            "a missing value is None or pd.NA (a nullable column)"
        )


def _check_unique(batch: Batch, pd: Any, where: str) -> None:
    cols = {f"k{i}": k for i, k in enumerate(batch.keys)}
    cols["t"] = batch.event_us
    dup = pd.DataFrame(cols).duplicated(keep=False).to_numpy()
    if dup.any():
        raise FeatureError(
            f"{where}: the same entity and event time in more than one row: {rows_text(dup)}"
        )

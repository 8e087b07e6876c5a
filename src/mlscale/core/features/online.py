"""Online reads, the pure half: feature references, request keys, and the result.

References are ``"view:feature"`` (the view's newest version), ``"view@2:feature"``
(version 2) or ``"view:*"`` (every feature). A call asks for many entities and
several views at once; each group answers with positions into the request (see
:mod:`.layout`), which :class:`OnlineBuilder` scatters into one column per feature.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import FeatureError
from .arrays import PG_EPOCH_US, Decoded
from .layout import Column, Layout
from .spec import FeatureType

__all__ = [
    "FeatureRef",
    "OnlineBuilder",
    "OnlineFeatures",
    "ViewRequest",
    "from_entries",
    "parse_refs",
    "to_entries",
]

_REF = re.compile(r"([a-z][a-z0-9_]*)(?:@v?(\d+))?:([a-z][a-z0-9_]*|\*)")


@dataclass(frozen=True, slots=True)
class FeatureRef:
    """A parsed reference: view name, version (None: newest), feature (``*``: all)."""

    view: str
    version: int | None
    feature: str


def parse_refs(refs: Sequence[str] | str) -> list[FeatureRef]:
    """``refs`` parsed; a FeatureError naming a malformed one."""
    if isinstance(refs, str):
        refs = [refs]
    if not refs:
        raise FeatureError("no features asked for: give references like 'view:feature'")
    out = []
    for r in refs:
        m = _REF.fullmatch(r) if isinstance(r, str) else None
        if m is None:
            raise FeatureError(
                f"malformed feature reference {r!r}: use 'view:feature', 'view@2:feature' "
                "or 'view:*'"
            )
        out.append(FeatureRef(m[1], int(m[2]) if m[2] else None, m[3]))
    return out


@dataclass(frozen=True, slots=True)
class ViewRequest:
    """What one call reads from one view: its layout, the features asked for (indexes,
    in the caller's order) and the columns holding them."""

    layout: Layout
    features: tuple[int, ...]
    columns: tuple[Column, ...]
    picks: tuple[tuple[int, ...], ...] = ()  # per column, the requested features it holds
    slots: tuple[tuple[int, ...], ...] = ()  # per column, those features' places in it

    @classmethod
    def of(cls, layout: Layout, features: Sequence[int]) -> ViewRequest:
        """The request of ``features`` (indexes into the view's features)."""
        cols: list[Column] = []
        for i in features:
            c = layout.column_of(i)
            if c not in cols:
                cols.append(c)
        columns = tuple(c for c in layout.columns if c in cols)
        picks = tuple(tuple(i for i in features if i in c.features) for c in columns)
        slots = tuple(
            tuple(c.features.index(i) for i in mine) for c, mine in zip(columns, picks, strict=True)
        )
        return cls(layout, tuple(features), columns, picks, slots)


@dataclass(slots=True)
class OnlineFeatures:
    """The answer of an online read, one entry per requested entity, in request order.

    ``keys``: the entity key columns as given; ``values``: per feature name, float32
    (NaN where missing), int64 (0 where missing), bool, object (str or None) or
    float32 ``(n, dim)`` for embeddings; ``present``: per feature, True where a value
    was found (not missing, not past the view's TTL); ``event_time``: per view,
    datetime64[us] UTC of each entity's row (NaT where none).
    """

    keys: dict[str, npt.NDArray[Any]]
    values: dict[str, npt.NDArray[Any]]
    present: dict[str, npt.NDArray[np.bool_]]
    event_time: dict[str, npt.NDArray[np.datetime64]] = field(default_factory=dict)
    kinds: dict[str, FeatureType] = field(default_factory=dict)
    # When every feature asked for is a float of one view: their names and the matrix
    # whose columns ``values`` are (missing: NaN), so to_numpy copies it in one go.
    matrix: tuple[list[str], npt.NDArray[np.float32]] | None = None

    def __len__(self) -> int:
        first = next(iter(self.keys.values()))
        return int(first.shape[0])

    @property
    def names(self) -> list[str]:
        """The feature columns, in request order."""
        return list(self.values)

    def to_dict(self) -> dict[str, npt.NDArray[Any]]:
        """Key columns then feature columns, as numpy arrays."""
        return {**self.keys, **self.values}

    def to_numpy(self, dtype: Any = np.float32) -> tuple[npt.NDArray[Any], dict[str, int]]:
        """The numeric features as one ``(entities, features)`` matrix (missing: NaN)
        and the column of each name. Text and embedding features are refused: read
        them from :attr:`values`."""
        names = self.names
        if self.matrix is not None and self.matrix[0] == names:
            return self.matrix[1].astype(dtype, copy=True), {n: j for j, n in enumerate(names)}
        odd = [n for n in names if self.kinds[n] in (FeatureType.TEXT, FeatureType.EMBEDDING)]
        if odd:
            raise FeatureError(
                f"to_numpy() holds numbers; {', '.join(odd)} are text or embeddings: "
                "use .values or to_pandas()"
            )
        out = np.empty((len(self), len(names)), dtype=dtype)
        if all(self.kinds[n] is FeatureType.FLOAT for n in names):
            # Columns of one packed matrix (usually): numpy copies them in one go.
            out[:] = np.stack([self.values[n] for n in names], axis=1)
            return out, {n: j for j, n in enumerate(names)}
        for j, n in enumerate(names):
            out[:, j] = self.values[n]
            if self.kinds[n] is not FeatureType.FLOAT:
                out[~self.present[n], j] = np.nan
        return out, {n: j for j, n in enumerate(names)}

    def to_pandas(self) -> Any:
        """A DataFrame: key columns, then features (missing values as NA / NaN / None)."""
        import pandas as pd

        cols: dict[str, Any] = {k: v for k, v in self.keys.items()}
        for n, v in self.values.items():
            kind, ok = self.kinds[n], self.present[n]
            if kind is FeatureType.INT:
                cols[n] = pd.array(np.where(ok, v, 0), dtype="Int64")
                cols[n][~ok] = pd.NA
            elif kind is FeatureType.BOOL:
                cols[n] = pd.array(v, dtype="boolean")
                cols[n][~ok] = pd.NA
            elif kind is FeatureType.EMBEDDING:
                cols[n] = [row if good else None for row, good in zip(v, ok.tolist(), strict=True)]
            else:
                cols[n] = v
        return pd.DataFrame(cols)

    def to_arrow(self) -> Any:
        """A pyarrow Table: key columns, then features (missing values as nulls)."""
        import pyarrow as pa

        arrays: dict[str, Any] = {k: pa.array(v) for k, v in self.keys.items()}
        for n, v in self.values.items():
            mask = ~self.present[n]
            if self.kinds[n] is FeatureType.EMBEDDING:
                dim = v.shape[1] if v.ndim == 2 else 0
                flat = pa.array(v.reshape(-1), type=pa.float32())
                arrays[n] = pa.FixedSizeListArray.from_arrays(flat, dim)
                if mask.any():
                    arrays[n] = pa.array(
                        [
                            None if m else row
                            for row, m in zip(v.tolist(), mask.tolist(), strict=True)
                        ],
                        type=pa.list_(pa.float32(), dim),
                    )
            else:
                arrays[n] = pa.array(v, mask=mask)
        return pa.table(arrays)


@dataclass(frozen=True, slots=True)
class _Block:
    """The requested features a packed column holds, written into one matrix: the
    features' positions in the column (``take``) and the matrices whose columns are
    the result's arrays (``values``, ``present``)."""

    take: npt.NDArray[np.intp]
    values: npt.NDArray[Any]
    present: npt.NDArray[np.bool_]


class OnlineBuilder:
    """Builds an :class:`OnlineFeatures` of ``n`` entities from the groups' answers.

    A packed column's requested features are one matrix, whose columns are the
    result's arrays, so a group's answer is written in a single numpy assignment
    however many features it holds.
    """

    def __init__(
        self,
        keys: Mapping[str, npt.NDArray[Any]],
        n: int,
        requests: Sequence[ViewRequest],
        names: Sequence[Sequence[str]],
    ) -> None:
        self._requests = requests
        self.result = res = OnlineFeatures(dict(keys), {}, {})
        self._blocks: list[dict[str, _Block]] = []
        self._single: list[dict[str, str]] = []  # column -> result name, one feature each
        for req, out_names in zip(requests, names, strict=True):
            view = req.layout.view
            res.event_time[view.name] = np.full(n, np.datetime64("NaT", "us"))
            named = dict(zip(req.features, out_names, strict=True))
            blocks: dict[str, _Block] = {}
            single: dict[str, str] = {}
            for col, mine, slots in zip(req.columns, req.picks, req.slots, strict=True):
                if col.packed:
                    kind = col.kind
                    fill = np.nan if kind is FeatureType.FLOAT else 0
                    dtype = np.float32 if kind is FeatureType.FLOAT else np.int64
                    values = np.full((n, len(mine)), fill, dtype=dtype)
                    present = np.zeros((n, len(mine)), dtype=bool)
                    blocks[col.name] = _Block(np.array(slots, dtype=np.intp), values, present)
                    if len(requests) == 1 and len(req.columns) == 1 and kind is FeatureType.FLOAT:
                        res.matrix = (list(out_names), values)
                    for j, i in enumerate(mine):
                        res.values[named[i]] = values[:, j]
                        res.present[named[i]] = present[:, j]
                        res.kinds[named[i]] = kind
                else:
                    (i,) = mine
                    f = view.features[i]
                    res.values[named[i]] = _empty(f.type, n, f.dim)
                    res.present[named[i]] = np.zeros(n, dtype=bool)
                    res.kinds[named[i]] = f.type
                    single[col.name] = named[i]
            # Result columns in the caller's order (blocks fill them in column order).
            if list(res.values)[-len(out_names) :] != list(out_names):
                res.values = {
                    **{k: v for k, v in res.values.items() if k not in out_names},
                    **{nm: res.values[nm] for nm in out_names},
                }
            self._blocks.append(blocks)
            self._single.append(single)

    def take(self, view_index: int, parts: Sequence[Decoded | None]) -> None:
        """One group's answer for view ``view_index``: positions (1-based), event times,
        then one decoded array per requested column."""
        pos_d = parts[0]
        if pos_d is None:
            return
        pos = pos_d.values.astype(np.int64) - 1
        req = self._requests[view_index]
        res = self.result
        times = parts[1]
        if times is not None:
            res.event_time[req.layout.view.name][pos] = (times.values + PG_EPOCH_US).astype(
                "datetime64[us]"
            )
        blocks, single = self._blocks[view_index], self._single[view_index]
        for col, got in zip(req.columns, parts[2:], strict=True):
            if got is None:
                continue
            block = blocks.get(col.name)
            if block is not None:
                vals = got.values[:, block.take]
                if got.valid is None:
                    block.values[pos] = vals
                    block.present[pos] = True
                else:
                    ok = got.valid[:, block.take]
                    if col.kind is FeatureType.FLOAT:
                        vals = np.where(ok, vals, np.float32(np.nan))
                    block.values[pos] = vals
                    block.present[pos] = ok
                continue
            name = single[col.name]
            ok = np.ones(len(pos), bool) if got.valid is None else got.valid
            if ok.ndim > 1:
                ok = np.asarray(ok.all(axis=1), dtype=bool)
            res.values[name][pos] = got.values
            res.present[name][pos] = ok


def _empty(kind: FeatureType, n: int, dim: int | None) -> npt.NDArray[Any]:
    if kind is FeatureType.FLOAT:
        return np.full(n, np.nan, dtype=np.float32)
    if kind is FeatureType.INT:
        return np.zeros(n, dtype=np.int64)
    if kind is FeatureType.BOOL:
        return np.zeros(n, dtype=bool)
    if kind is FeatureType.TEXT:
        return np.full(n, None, dtype=object)
    return np.full((n, int(dim or 0)), np.nan, dtype=np.float32)


def to_entries(layout: Layout, parts: Sequence[Decoded | None]) -> list[tuple[int, list[Any]]]:
    """Cache entries from one group's answer of every column of ``layout`` (as
    :meth:`Layout.online_read` of ``layout.columns`` returns it): per entity its
    request position (1-based) and ``[event_us, [column values]]``. Arrays are kept
    as native bytes (with a bytes mask when an element is missing), so a hit
    decodes in numpy."""
    pos_d = parts[0]
    if pos_d is None:
        return []
    pos = pos_d.values.tolist()
    times = parts[1].values.tolist() if parts[1] is not None else [0] * len(pos)
    cols: list[list[Any]] = []
    for c, got in zip(layout.columns, parts[2:], strict=True):
        if got is None:
            cols.append([None] * len(pos))
        elif c.packed or c.kind is FeatureType.EMBEDDING:
            vals = np.ascontiguousarray(got.values)
            if got.valid is None:
                cols.append([row.tobytes() for row in vals])
            else:
                valid = got.valid if got.valid.ndim == vals.ndim else got.valid[:, None]
                masks = np.broadcast_to(valid, vals.shape)
                cols.append(
                    [[row.tobytes(), m.tobytes()] for row, m in zip(vals, masks, strict=True)]
                )
        else:
            vals_l = got.values.tolist()
            if got.valid is not None:
                for k in np.flatnonzero(~got.valid).tolist():
                    vals_l[k] = None
            cols.append(vals_l)
    return [
        (p, [t, [col[r] for col in cols]]) for r, (p, t) in enumerate(zip(pos, times, strict=True))
    ]


def from_entries(
    layout: Layout, request: ViewRequest, hits: Sequence[tuple[int, Sequence[Any]]]
) -> list[Decoded | None]:
    """The parts :meth:`OnlineBuilder.take` reads, from cache ``hits`` (request
    position, entry) of one view: positions, event times, the request's columns."""
    if not hits:
        return [None]
    pos = np.array([p for p, _ in hits], dtype=np.int64)
    times = np.array([e[0] for _, e in hits], dtype=np.int64)
    index = {c.name: k for k, c in enumerate(layout.columns)}
    out: list[Decoded | None] = [Decoded(pos, None), Decoded(times, None)]
    for c in request.columns:
        k = index[c.name]
        raw = [e[1][k] for _, e in hits]
        if c.packed or c.kind is FeatureType.EMBEDDING:
            dtype = np.int64 if c.kind is FeatureType.INT else np.float32
            width = (
                len(c.features) if c.packed else int(layout.view.features[c.features[0]].dim or 0)
            )
            empty = np.zeros(width, dtype=dtype).tobytes()
            blobs = [
                empty if r is None else r[0] if isinstance(r, list | tuple) else r for r in raw
            ]
            values = np.frombuffer(b"".join(blobs), dtype=dtype).reshape(len(raw), width)
            valid: npt.NDArray[np.bool_] | None = None
            if any(r is None or isinstance(r, list | tuple) for r in raw):
                valid = np.ones(values.shape, dtype=bool)
                for row, r in enumerate(raw):
                    if r is None:
                        valid[row] = False
                    elif isinstance(r, list | tuple):
                        valid[row] = np.frombuffer(r[1], dtype=bool)
                if c.kind is FeatureType.EMBEDDING:
                    valid = np.asarray(valid.all(axis=1), dtype=bool)
            out.append(Decoded(values, valid))
        else:
            ok = np.array([v is not None for v in raw], dtype=bool)
            if c.kind is FeatureType.BOOL:
                arr: npt.NDArray[Any] = np.array([bool(v) for v in raw], dtype=bool)
            else:
                arr = np.array(raw, dtype=object)
            out.append(Decoded(arr, None if ok.all() else ok))
    return out

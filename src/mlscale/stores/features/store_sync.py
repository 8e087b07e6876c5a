# Generated from store_async.py by scripts/async_to_sync.py: do not edit.
# Change store_async.py and run the script again.
"""The feature store: views, online reads, pushes, training sets (async source).

Built on the cluster's public API only: ``as_written(group)`` scopes for the per-group
statements it places itself, ``transaction(group=..., as_written=True)`` for pushes,
``connection("control")`` for the registry (see :mod:`.registry_sync`).

- **Online reads** (:meth:`FeatureStore.get_online_features`): the request's
  keys are placed on groups in numpy; each group answers every view of the call in
  ONE statement (the views' aggregated rows side by side, see
  :mod:`mlscale.core.features.layout`), groups at once, each read under the call's
  consistency (``token=`` for read-your-writes). With a cache, entities are looked
  up first (one batch per call) and the misses read and filled, versioned by event
  time; a push invalidates the keys it wrote after its commit, with its token and a
  version floor, so no older row is cached again.
- **Pushes** (:meth:`~FeatureStore.push`): checked whole first (nothing is
  written if anything is wrong), split by group, and per group one transaction:
  binary COPY into a staging table, then an upsert into the online table that an
  older event never wins, and an append to the history. Groups commit separately:
  a group's failure raises :class:`PartialWriteError` naming the groups that
  committed; pushing again is harmless (same rows, same result).
- **Training sets** (:meth:`~FeatureStore.get_historical_features`): for each
  (entity, time) row, each view's newest history row at or before that time and
  within its TTL, found per group in SQL (one index probe per row).

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg import sql

from ...cache.policy import Versioned
from ...cache.tiered import Cache
from ...core.causal import CausalToken
from ...core.features.arrays import PG_EPOCH_US, Decoded, decode
from ...core.features.batch import Batch, to_batch
from ...core.features.layout import Layout, online_statement
from ...core.features.online import (
    OnlineBuilder,
    OnlineFeatures,
    ViewRequest,
    from_entries,
    parse_refs,
    to_entries,
)
from ...core.features.spec import FeatureView
from ...engine.cluster_sync import Cluster
from ...errors import FeatureError, PartialWriteError
from .placing_sync import array_text, key_rows, keys_of, place, run_all
from .registry_sync import AsyncRegistry
from .sources_sync import batches_of

__all__ = ["FeatureStore", "MaterializeResult", "PushResult", "ViewInfo"]

log = logging.getLogger(__name__)

MAX_PUSH_ROWS = 1_000_000
# An online read of at most this many entities runs its groups in turn where that
# is cheaper than handing them to threads (see engine/concurrency SMALL_WORK_IN_PLACE).
_SMALL_READ = 1000
CACHE_TTL_S = 300.0


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push wrote: ``rows`` checked and sent, per group, the causal ``token`` of
    its commits (read your writes with it), and how long it took (seconds)."""

    view: str
    version: int
    rows: int
    groups: dict[str, int]
    token: CausalToken
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the token as its string)."""
        return {
            "view": self.view,
            "version": self.version,
            "rows": self.rows,
            "groups": dict(self.groups),
            "token": self.token.to_string(),
            "seconds": self.seconds,
        }


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    """A materialization: rows pushed in how many batches, the merged token, seconds."""

    view: str
    rows: int
    batches: int
    token: CausalToken
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "view": self.view,
            "rows": self.rows,
            "batches": self.batches,
            "token": self.token.to_string(),
            "seconds": self.seconds,
            "rows_per_s": self.rows / self.seconds if self.seconds > 0 else None,
        }


@dataclass(frozen=True, slots=True)
class ViewInfo:
    """A view as the catalog and its tables have it: rows and bytes on disk per group."""

    view: FeatureView
    online_table: str
    history_table: str
    online_rows: dict[str, int]
    history_rows: dict[str, int]
    bytes_on_disk: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "view": self.view.to_spec(),
            "online_table": self.online_table,
            "history_table": self.history_table,
            "online_rows": dict(self.online_rows),
            "history_rows": dict(self.history_rows),
            "bytes_on_disk": dict(self.bytes_on_disk),
        }


@dataclass(slots=True)
class _Call:
    """One online read, being assembled."""

    requests: list[ViewRequest]
    names: list[list[str]]
    keys: dict[str, npt.NDArray[Any]]
    n: int
    builder: OnlineBuilder
    todo: list[npt.NDArray[np.int64]] = field(default_factory=list)  # positions per view


class FeatureStore:
    """Feature views on a cluster, with an optional cache in front of online reads.

    ``max_push_rows`` bounds one push (a larger one is refused before anything is
    written); ``cache_ttl_s`` bounds how long a cached row lives (seconds).
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        cache: Cache | None = None,
        max_push_rows: int = MAX_PUSH_ROWS,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._cluster = cluster
        self._cache = cache
        self._registry = AsyncRegistry(cluster)
        self._max_rows = max_push_rows
        self._cache_ttl_s = cache_ttl_s
        self._views: dict[tuple[str, int], FeatureView] = {}
        self._latest: dict[str, int] = {}
        self._statements: dict[tuple[Any, ...], str] = {}
        self._shapes: dict[Any, tuple[list[ViewRequest], list[list[str]]]] = {}

    @property
    def cluster(self) -> Cluster:
        """The cluster the store's views live on."""
        return self._cluster

    # -- the registry -----------------------------------------------------------------

    def register(self, view: FeatureView) -> FeatureView:
        """Register ``view`` (tables on every group, spec in the catalog); an equal spec
        again is a no-op, a different one under the same version is refused."""
        self._registry.register(view)
        self._learn([view])
        return view

    def views(self) -> list[FeatureView]:
        """Every registered view version, newest catalog state."""
        views = self._registry.load()
        self._views.clear()
        self._latest.clear()
        self._learn(views)
        return views

    def view(self, name: str, version: int | None = None) -> FeatureView:
        """View ``name`` (its newest version, or ``version``); a FeatureError if unknown."""
        found = self._find(name, version)
        if found is None:
            self.views()
            found = self._find(name, version)
        if found is None:
            known = ", ".join(sorted(self._latest)) or "none"
            which = name if version is None else f"{name} version {version}"
            raise FeatureError(f"unknown feature view {which!r}; registered views: {known}")
        return found

    def drop(self, name: str, version: int) -> None:
        """Drop view ``name`` version ``version``: its tables and its catalog entry."""
        view = self.view(name, version)
        self._registry.drop(view)
        self._views.pop((name, version), None)
        self.views()

    def describe(self, name: str, version: int | None = None) -> ViewInfo:
        """View ``name`` with its tables' rows and bytes on disk per group."""
        view = self.view(name, version)
        layout = Layout.of(view)
        online: dict[str, int] = {}
        history: dict[str, int] = {}
        size: dict[str, int] = {}
        online_t, history_t = sql.Identifier(layout.online), sql.Identifier(layout.history)
        for group in self._groups():
            scope = self._cluster.as_written(group)
            row = scope.fetch_one(
                _SIZES.format(o=online_t, h=history_t).as_string(None),
                (layout.online, layout.history),
                consistency="strong",
            )
            online[group], history[group], size[group] = int(row[0]), int(row[1]), int(row[2])
        return ViewInfo(view, layout.online, layout.history, online, history, size)

    def _learn(self, views: Sequence[FeatureView]) -> None:
        self._shapes.clear()
        for v in views:
            self._views[(v.name, v.version)] = v
            self._latest[v.name] = max(self._latest.get(v.name, 0), v.version)

    def _find(self, name: str, version: int | None) -> FeatureView | None:
        if version is None:
            version = self._latest.get(name)
            if version is None:
                return None
        return self._views.get((name, version))

    def _groups(self) -> list[str]:
        return [g.name for g in self._cluster.config.shard_groups]

    # -- online reads -----------------------------------------------------------------

    def get_online_features(
        self,
        features: Sequence[str] | str,
        entity_ids: Any,
        *,
        token: CausalToken | str | None = None,
        consistency: str | None = None,
        use_cache: bool = True,
    ) -> OnlineFeatures:
        """The newest values of ``features`` (``"view:feature"``, ``"view@2:feature"``,
        ``"view:*"``) for each entity of ``entity_ids`` (a sequence of keys, of key
        tuples for composite keys, or a mapping of entity column -> values), in
        request order. Values past a view's TTL, and entities with no row, come back
        missing (``result.present``). ``token``: read at least that fresh (a push's
        token); ``use_cache``: look entities up in the store's cache first."""
        call = self._plan(features, entity_ids)
        if call.n == 0:
            return call.builder.result
        cache = self._cache if use_cache else None
        if cache is not None:
            self._from_cache(cache, call)
        self._from_groups(call, token, consistency, cache)
        return call.builder.result

    def _plan(self, features: Sequence[str] | str, entity_ids: Any) -> _Call:
        shape = self._shapes.get(features if isinstance(features, str) else tuple(features))
        if shape is None:
            shape = self._shape(features)
        requests, names = shape
        keys = keys_of(requests[0].layout.view, entity_ids)
        n = int(next(iter(keys.values())).shape[0])
        builder = OnlineBuilder(keys, n, requests, names)
        todo = [np.arange(n, dtype=np.int64) for _ in requests]
        return _Call(requests, names, keys, n, builder, todo)

    def _shape(self, features: Sequence[str] | str) -> tuple[list[ViewRequest], list[list[str]]]:
        """The views, features and output names ``features`` asks for (remembered per
        feature list until the store reloads its views)."""
        refs = parse_refs(features)
        order: list[tuple[str, int]] = []
        wanted: dict[tuple[str, int], list[int]] = {}
        for ref in refs:
            view = self.view(ref.view, ref.version)
            key = (view.name, view.version)
            if key not in wanted:
                order.append(key)
                wanted[key] = []
            idx = range(len(view.features)) if ref.feature == "*" else [view.index_of(ref.feature)]
            wanted[key] += [i for i in idx if i not in wanted[key]]
        views = [self._views[k] for k in order]
        entities = views[0].entities
        for v in views[1:]:
            if v.entities != entities:
                raise FeatureError(
                    f"one online read takes views of the same entity keys: {views[0].name!r} "
                    f"has {', '.join(views[0].entity_names)}, {v.name!r} "
                    f"{', '.join(v.entity_names)}; read them in separate calls"
                )
        plain = [view.features[i].name for view in views for i in wanted[(view.name, view.version)]]
        requests, names = [], []
        for view in views:
            idx = wanted[(view.name, view.version)]
            layout = Layout.of(view)
            requests.append(ViewRequest.of(layout, idx))
            names.append(
                [
                    f"{view.name}__{view.features[i].name}"
                    if plain.count(view.features[i].name) > 1
                    else view.features[i].name
                    for i in idx
                ]
            )
        self._shapes[features if isinstance(features, str) else tuple(features)] = (
            requests,
            names,
        )
        return requests, names

    def _from_cache(self, cache: Cache, call: _Call) -> None:
        """Serve what the cache holds; leave the misses in ``call.todo``."""
        rows = key_rows(call.keys)
        now_us = time.time_ns() // 1000 - PG_EPOCH_US  # cached times count from 2000
        for vi, req in enumerate(call.requests):
            view = req.layout.view
            names = [(view.name, view.version, *rows[p]) for p in range(call.n)]
            got = cache.get_many(names)
            hits = []
            miss = []
            cutoff = None if view.ttl_s is None else now_us - int(view.ttl_s * 1e6)
            for p in range(call.n):
                entry = got.get(names[p])
                if entry is None or (cutoff is not None and entry[0] < cutoff):
                    miss.append(p)
                else:
                    hits.append((p + 1, entry))
            if hits:
                call.builder.take(vi, from_entries(req.layout, req, hits))
            call.todo[vi] = np.array(miss, dtype=np.int64)

    def _from_groups(
        self,
        call: _Call,
        token: CausalToken | str | None,
        consistency: str | None,
        cache: Cache | None,
    ) -> None:
        """Read ``call.todo`` from the groups, one statement per group, groups at once."""
        shards = self._cluster.shards()
        plan: dict[str, list[tuple[int, npt.NDArray[np.int64]]]] = {}
        for vi, req in enumerate(call.requests):
            todo = call.todo[vi]
            if not todo.size:
                continue
            view = req.layout.view
            shard_map = shards.map_of(view.family)
            sub = {k: v[todo] for k, v in call.keys.items()}
            where = place(shard_map, sub, view)
            for gi, group in enumerate(shard_map.groups):
                mine = todo[where == gi]
                if mine.size:
                    plan.setdefault(group, []).append((vi, mine))
        if not plan:
            return
        fill: list[tuple[Any, Any]] = []

        def reader(group: str, parts: list[tuple[int, npt.NDArray[np.int64]]]) -> Callable[[], Any]:
            def read() -> None:
                sql_text, params, columns = self._online_sql(call, parts, cache is not None)
                row = self._cluster.as_written(group).fetch_one(
                    sql_text, params, token=token, consistency=consistency, binary=True
                )
                at = 0
                for (vi, positions), cols in zip(parts, columns, strict=True):
                    width = 2 + len(cols)
                    decoded = [decode(v) for v in row[at : at + width]]
                    at += width
                    if decoded[0] is not None:
                        decoded[0] = Decoded(
                            positions[decoded[0].values.astype(np.int64) - 1] + 1, None
                        )
                    req = call.requests[vi]
                    if cache is not None:
                        fill.extend((req.layout.view, e) for e in to_entries(req.layout, decoded))
                        decoded = _select(req, decoded)
                    call.builder.take(vi, decoded)

            return read

        run_all([reader(g, parts) for g, parts in plan.items()], small=call.n <= _SMALL_READ)
        if cache is not None and fill:
            self._fill(cache, call, fill)

    def _online_sql(
        self, call: _Call, parts: list[tuple[int, npt.NDArray[np.int64]]], whole: bool
    ) -> tuple[str, list[Any], list[tuple[Any, ...]]]:
        """The statement, its parameters and each view's columns for one group."""
        params: list[Any] = []
        columns = []
        for vi, positions in parts:
            req = call.requests[vi]
            cols = req.layout.columns if whole else req.columns
            columns.append(cols)
            params += [array_text(v[positions]) for v in call.keys.values()]
            if req.layout.view.ttl_s is not None:
                params.append(float(req.layout.view.ttl_s))
        key = tuple((vi, whole) for vi, _ in parts) + tuple(
            (r.layout.view.name, r.layout.view.version, r.features) for r in call.requests
        )
        text = self._statements.get(key)
        if text is None:
            text = online_statement(
                [
                    call.requests[vi].layout.online_read(cols)
                    for (vi, _), cols in zip(parts, columns, strict=True)
                ]
            )
            self._statements[key] = text
        return text, params, columns

    def _fill(self, cache: Cache, call: _Call, fill: list[tuple[Any, Any]]) -> None:
        rows = key_rows(call.keys)
        items: dict[Any, Any] = {
            (view.name, view.version, *rows[pos - 1]): Versioned(entry, _version(entry[0]))
            for view, (pos, entry) in fill
        }
        cache.set_many(items, ttl=self._cache_ttl_s)

    # -- writes -----------------------------------------------------------------------

    def push(
        self, view: str | FeatureView, data: Any, *, timestamp_column: str = "event_ts"
    ) -> PushResult:
        """Write ``data`` (a DataFrame, an Arrow table or records with the entity
        columns, ``timestamp_column`` and every feature) to the view's online table
        (newest event per entity wins) and history. Checked whole before anything is
        written. Returns the commits' causal token (see the module docstring)."""
        started = time.perf_counter()
        fv = view if isinstance(view, FeatureView) else self.view(view)
        batch = to_batch(fv, data, timestamp_column=timestamp_column, max_rows=self._max_rows)
        groups, token = self._write(fv, batch)
        return PushResult(
            fv.name, fv.version, batch.size, groups, token, time.perf_counter() - started
        )

    def _write(self, view: FeatureView, batch: Batch) -> tuple[dict[str, int], CausalToken]:
        if batch.size == 0:
            return {}, CausalToken()
        layout = Layout.of(view)
        self._registry.ensure_partitions(layout, batch.months())
        shard_map = (self._cluster.shards()).map_of(view.family)
        keys = {e: k for e, k in zip(view.entity_names, batch.keys, strict=True)}
        where = place(shard_map, keys, view)
        parts = [
            (group, batch.take(np.flatnonzero(where == gi)))
            for gi, group in enumerate(shard_map.groups)
            if (where == gi).any()
        ]
        tokens: dict[str, CausalToken] = {}

        def writer(group: str, part: Batch) -> Callable[[], Any]:
            def write() -> None:
                payload = part.copy_payload(layout)
                with self._cluster.transaction(group=group, as_written=True) as tx:
                    tx.execute(layout.stage_ddl())
                    tx.copy(
                        layout.copy_sql(), payload if payload is not None else part.rows(layout)
                    )
                    tx.execute(layout.upsert_sql())
                    tx.execute(layout.history_sql())
                tokens[group] = tx.token or CausalToken()
                if self._cache is not None:
                    self._invalidate(self._cache, view, part, tokens[group])

            return write

        errors = run_all([writer(g, p) for g, p in parts], raise_first=False)
        token = CausalToken()
        for t in tokens.values():
            token = token.merge(t)
        if errors:
            done = sorted(tokens)
            failed = sorted(g for g, _ in parts if g not in tokens)
            first = errors[0]
            if not done:
                raise first
            raise PartialWriteError(
                f"push to {view.name!r}: committed on {', '.join(done)}, failed on "
                f"{', '.join(failed)} ({first}); pushing the same data again is harmless",
                committed=tuple(done),
                failed=failed[0],
            ) from first
        return {g: p.size for g, p in parts}, token

    def _invalidate(self, cache: Cache, view: FeatureView, part: Batch, token: CausalToken) -> None:
        """Drop the written keys from the cache, with the commit's token and a version
        floor of the newest event written, so an older row is never filled again."""
        names = [(view.name, view.version, *k) for k in part.key_tuples()]
        floor = _version(int(part.event_us.max()) - PG_EPOCH_US)
        cache.invalidate(names, token, version=floor)

    def materialize(
        self,
        view: str | FeatureView,
        source: str,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        *,
        timestamp_column: str = "event_ts",
        batch_rows: int = 100_000,
        progress: bool | Callable[[int, int], None] = False,
    ) -> MaterializeResult:
        """Push the rows of ``source`` with event times in [``start``, ``end``) in
        batches of ``batch_rows``: ``source`` is a Parquet file or directory (a path
        ending in ``.parquet`` or a directory), or a table on the cluster with the
        view's columns. ``progress``: a line on stderr per batch (or a callable
        taking rows done and batches done)."""
        started = time.perf_counter()
        fv = view if isinstance(view, FeatureView) else self.view(view)
        wanted = [*fv.entity_names, timestamp_column, *(f.name for f in fv.features)]
        report = _progress(progress, fv.name)
        rows = batches_done = 0
        token = CausalToken()
        for frame in batches_of(
            self._cluster,
            source,
            wanted,
            timestamp_column,
            start,
            end,
            batch_rows,
            fv.entity_names,
        ):
            batch = to_batch(
                fv, frame, timestamp_column=timestamp_column, max_rows=max(batch_rows, len(frame))
            )
            _, t = self._write(fv, batch)
            token = token.merge(t)
            rows += batch.size
            batches_done += 1
            report(rows, batches_done)
        return MaterializeResult(fv.name, rows, batches_done, token, time.perf_counter() - started)

    # -- training sets ----------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: Any,
        features: Sequence[str] | str,
        *,
        timestamp_column: str = "event_ts",
        token: CausalToken | str | None = None,
        consistency: str | None = None,
        chunk_rows: int = 50_000,
    ) -> Any:
        """``entity_df`` (a DataFrame with the entity columns and ``timestamp_column``)
        with a column per feature: for each row, the value of the view's newest event
        at or before the row's time and no older than the view's TTL (missing: NaN or
        NA). The same semantics as Feast's point-in-time join; computed per group in
        SQL, ``chunk_rows`` request rows per statement."""
        from .history_sync import historical

        return historical(
            self, entity_df, features, timestamp_column, token, consistency, chunk_rows
        )


def _version(event_us: int) -> int:
    """A cache version from an event time (microseconds since 2000, as PostgreSQL
    counts; 0 before it)."""
    return max(0, int(event_us))


_SIZES = sql.SQL(
    "SELECT (SELECT count(*) FROM {o}), (SELECT count(*) FROM {h}), "
    "pg_total_relation_size(%s::regclass) + coalesce((SELECT sum(pg_total_relation_size("
    "inhrelid)) FROM pg_inherits WHERE inhparent = %s::regclass), 0)"
)


def _select(req: ViewRequest, decoded: list[Decoded | None]) -> list[Decoded | None]:
    """From an answer of every column of the view, the request's columns."""
    index = {c.name: k for k, c in enumerate(req.layout.columns)}
    return decoded[:2] + [decoded[2 + index[c.name]] for c in req.columns]


def _progress(progress: bool | Callable[[int, int], None], name: str) -> Callable[[int, int], None]:
    if callable(progress):
        return progress
    if not progress:
        return lambda rows, batches: None
    started = time.perf_counter()

    def line(rows: int, batches: int) -> None:
        took = time.perf_counter() - started
        rate = rows / took if took > 0 else 0.0
        print(
            f"materialize {name}: {rows:,} rows in {batches} batches, "
            f"{took:.1f} s ({rate:,.0f} rows/s)",
            file=sys.stderr,
            flush=True,
        )

    return line

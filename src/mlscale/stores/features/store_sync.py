# Generated from store_async.py by scripts/async_to_sync.py: do not edit.
# Change store_async.py and run the script again.
"""The feature store's façade: views, online reads, pushes, training sets (async source).

Built on the cluster's public API only: ``as_written(group)`` scopes for the per-group
statements it places itself, ``transaction(group=..., as_written=True)`` for pushes,
``connection("control")`` for the registry. Its rooms:

- :mod:`.views_sync`: the registered views (catalog: :mod:`.registry_sync`) and
  what a call's feature references ask of them;
- :mod:`.online_sync`: online reads, one statement per group, the cache in front;
- :mod:`.writes_sync`: pushes and materializations (sources: :mod:`.sources_sync`);
- :mod:`.history_sync`: point-in-time training sets.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from ...cache.tiered import Cache
from ...core.causal import CausalToken
from ...core.features.online import OnlineFeatures
from ...core.features.results import MaterializeResult, PushResult, ViewInfo
from ...core.features.spec import FeatureView
from ...engine.cluster_sync import Cluster
from .history_sync import historical
from .online_sync import OnlineReader
from .views_sync import Views
from .writes_sync import Writer

__all__ = ["CACHE_TTL_S", "MAX_PUSH_ROWS", "FeatureStore"]

MAX_PUSH_ROWS = 1_000_000
CACHE_TTL_S = 300.0


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
        self._views = Views(cluster)
        self._online = OnlineReader(cluster, self._views, cache, cache_ttl_s)
        self._writer = Writer(cluster, self._views, cache, max_push_rows)

    @property
    def cluster(self) -> Cluster:
        """The cluster the store's views live on."""
        return self._cluster

    # -- views --------------------------------------------------------------------------

    def register(self, view: FeatureView) -> FeatureView:
        """Register ``view``: its tables on every group (its key family's map is made,
        even over every group, if missing), then its spec in the catalog. An equal
        spec again is a no-op; a different one under the same version is refused."""
        return self._views.register(view)

    def views(self) -> list[FeatureView]:
        """Every registered view version, read from the catalog now."""
        return self._views.all()

    def view(self, name: str, version: int | None = None) -> FeatureView:
        """View ``name`` (its newest version, or ``version``); FeatureViewNotFound (a
        FeatureError) if unknown."""
        return self._views.get(name, version)

    def drop(self, name: str, version: int) -> None:
        """Drop view ``name`` version ``version``: its tables and its catalog entry."""
        self._views.drop(name, version)

    def describe(self, name: str, version: int | None = None) -> ViewInfo:
        """View ``name`` with its tables' rows and bytes on disk per group."""
        return self._views.describe(name, version)

    # -- online reads -------------------------------------------------------------------

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
        return self._online.read(features, entity_ids, token, consistency, use_cache)

    # -- writes -------------------------------------------------------------------------

    def push(
        self, view: str | FeatureView, data: Any, *, timestamp_column: str = "event_ts"
    ) -> PushResult:
        """Write ``data`` (a DataFrame, an Arrow table or records with the entity
        columns, ``timestamp_column`` and every feature) to the view's online table
        (newest event per entity wins) and history. Checked whole before anything is
        written; returns the commits' causal token."""
        return self._writer.push(view, data, timestamp_column=timestamp_column)

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
        return self._writer.materialize(
            view,
            source,
            start,
            end,
            timestamp_column=timestamp_column,
            batch_rows=batch_rows,
            progress=progress,
        )

    # -- training sets ------------------------------------------------------------------

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
        return historical(
            self._cluster,
            self._views,
            entity_df,
            features,
            timestamp_column,
            token,
            consistency,
            chunk_rows,
        )

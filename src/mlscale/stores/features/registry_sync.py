# Generated from registry_async.py by scripts/async_to_sync.py: do not edit.
# Change registry_async.py and run the script again.
"""The feature views' registry: specs in the catalog, tables on every group (async source).

A view version is registered by creating its tables first (online and history,
sharded by the view's key family, whose map is made evenly over every shard group
if the family has none) and recording its spec last, so a registered view always
has its tables. Registering an equal spec again is a no-op; a different spec under
a registered name and version is refused (register the next version instead).

``registry_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt

from psycopg.types.json import Jsonb

from ...core.features.layout import Layout
from ...core.features.spec import FeatureView
from ...core.shardmaps import KeyFamily, SlotMap
from ...engine.cluster_sync import Cluster
from ...errors import FeatureError, MlscaleError
from ..shared_sync import catalog

__all__ = ["Registry"]

_TABLE = "mlscale_catalog.feature_views"
# History partitions made when a view is registered: this month, one back, two ahead.
_AHEAD_MONTHS = (-1, 0, 1, 2)


class Registry:
    """Reads and writes the catalog's feature views for one cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._made: set[tuple[str, str]] = set()  # (group, partition) known to exist

    def load(self, *, dropped: bool = False) -> list[FeatureView]:
        """Every registered view version (not dropped ones unless ``dropped``)."""
        where = "" if dropped else " WHERE dropped_at IS NULL"
        with catalog(self._cluster, "feature views") as conn:
            cur = conn.execute(
                f"SELECT spec FROM {_TABLE}{where} ORDER BY name, version"  # noqa: S608
            )
            rows = cur.fetchall()
        return [FeatureView.from_spec(r[0]) for r in rows]

    def register(self, view: FeatureView) -> FeatureView:
        """Create ``view``'s tables where missing and record it (see the module docstring)."""
        with catalog(self._cluster, "feature views") as conn:
            cur = conn.execute(
                f"SELECT spec, dropped_at FROM {_TABLE} WHERE name = %s AND version = %s",  # noqa: S608
                (view.name, view.version),
            )
            row = cur.fetchone()
        if row is not None:
            old = FeatureView.from_spec(row[0])
            if row[1] is not None:
                raise FeatureError(
                    f"feature view {view.name!r} version {view.version} was dropped; "
                    f"register version {view.version + 1}"
                )
            if old.to_spec() != view.to_spec():
                raise FeatureError(
                    f"feature view {view.name!r} version {view.version} is registered with a "
                    f"different definition; register version {view.version + 1} beside it"
                )
        self._family(view)
        layout = Layout.of(view)
        known = (self._cluster.shards()).tables
        for name, ddl in (
            (layout.online, layout.online_ddl()),
            (layout.history, layout.history_ddl()),
        ):
            if name not in known:
                self._cluster.create_sharded_table(
                    ddl, shard_key=list(view.entity_names), family=view.family
                )
        today = dt.datetime.now(dt.UTC).date().replace(day=1)
        for step in _AHEAD_MONTHS:
            month = (today.month - 1 + step) % 12 + 1
            year = today.year + (today.month - 1 + step) // 12
            self.ensure_partitions(layout, [dt.date(year, month, 1)])
        if row is None:
            with catalog(self._cluster, "feature views") as conn:
                conn.execute(
                    f"INSERT INTO {_TABLE} (name, version, spec) VALUES (%s, %s, %s) "  # noqa: S608
                    "ON CONFLICT (name, version) DO NOTHING",
                    (view.name, view.version, Jsonb(view.to_spec())),
                )
        return view

    def _family(self, view: FeatureView) -> None:
        """The view's key family: made (an even slot map over every group) if missing,
        else checked to have the entities' key types."""
        shards = self._cluster.shards()
        if view.family in shards.maps:
            have = shards.map_of(view.family).key_types
            if tuple(have) != view.key_types:
                raise FeatureError(
                    f"feature view {view.name!r}: key family {view.family!r} has key types "
                    f"{', '.join(have)}, the view's entities {', '.join(view.key_types)}"
                )
            return
        groups = [g.name for g in self._cluster.config.shard_groups]
        family = KeyFamily.of(view.family, *view.key_types)
        try:
            self._cluster.create_shard_map(SlotMap.even(family, groups), "feature view")
        except MlscaleError:
            shards = self._cluster.refresh_shards()
            if view.family not in shards.maps:  # not a racing registration: a real failure
                raise

    def ensure_partitions(self, layout: Layout, months: list[dt.date]) -> None:
        """The history partitions of ``months`` on every group (made if missing)."""
        for group in (g.name for g in self._cluster.config.shard_groups):
            for month in months:
                name = layout.partition(month)
                if (group, name) in self._made:
                    continue
                try:
                    self._cluster.as_written(group).execute(layout.partition_ddl(month))
                except MlscaleError as exc:
                    # Two pushes making the same partition at once: one wins, the
                    # other's IF NOT EXISTS can still collide in the catalog.
                    if getattr(exc, "sqlstate", None) not in ("42P07", "23505"):
                        raise
                self._made.add((group, name))

    def drop(self, view: FeatureView) -> None:
        """Drop ``view``'s tables on every group and mark it dropped in the catalog."""
        layout = Layout.of(view)
        with catalog(self._cluster, "feature views") as conn:
            conn.execute(
                f"UPDATE {_TABLE} SET dropped_at = now() WHERE name = %s AND version = %s",  # noqa: S608
                (view.name, view.version),
            )
        known = (self._cluster.shards()).tables
        for name in (layout.online, layout.history):
            if name in known:
                self._cluster.drop_sharded_table(name)
        self._made = {(g, p) for g, p in self._made if not p.startswith(layout.history)}

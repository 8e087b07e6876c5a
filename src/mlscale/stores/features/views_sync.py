# Generated from views_async.py by scripts/async_to_sync.py: do not edit.
# Change views_async.py and run the script again.
"""The views a store knows, and what a call's feature references ask of them (async source).

Views are read from the catalog (see :mod:`.registry_sync`) and kept; an unknown
name makes it read the catalog again before it is refused, so a view another
process registered is found. A list of references is resolved once into the
per-view requests and output column names a read needs, and remembered until the
views change.

``views_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from ...core.features.layout import Layout
from ...core.features.online import ViewRequest, parse_refs
from ...core.features.results import ViewInfo
from ...core.features.spec import FeatureView
from ...engine.cluster_sync import Cluster
from ...errors import FeatureError, FeatureViewNotFound
from .registry_sync import Registry

__all__ = ["Views", "Shape"]

Shape = tuple[list[ViewRequest], list[list[str]]]
"""Per view asked for: its request, and the output names of its features."""

_SIZES = sql.SQL(
    "SELECT (SELECT count(*) FROM {o}), (SELECT count(*) FROM {h}), "
    "pg_total_relation_size(%s::regclass) + coalesce((SELECT sum(pg_total_relation_size("
    "inhrelid)) FROM pg_inherits WHERE inhparent = %s::regclass), 0)"
)


class Views:
    """The registered views of one cluster, as one store sees them."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.registry = Registry(cluster)
        self._views: dict[tuple[str, int], FeatureView] = {}
        self._latest: dict[str, int] = {}
        self._shapes: dict[Any, Shape] = {}

    def register(self, view: FeatureView) -> FeatureView:
        """Register ``view`` (see :meth:`Registry.register`)."""
        self.registry.register(view)
        self._learn([view])
        return view

    def all(self) -> list[FeatureView]:
        """Every registered view version, read from the catalog now."""
        views = self.registry.load()
        self._views.clear()
        self._latest.clear()
        self._learn(views)
        return views

    def get(self, name: str, version: int | None = None) -> FeatureView:
        """View ``name`` (its newest version, or ``version``); FeatureViewNotFound (a
        FeatureError) if unknown."""
        found = self._find(name, version)
        if found is None:
            self.all()
            found = self._find(name, version)
        if found is None:
            known = ", ".join(sorted(self._latest)) or "none"
            which = name if version is None else f"{name} version {version}"
            raise FeatureViewNotFound(f"unknown feature view {which!r}; registered views: {known}")
        return found

    def drop(self, name: str, version: int) -> None:
        """Drop view ``name`` version ``version``: its tables and its catalog entry."""
        view = self.get(name, version)
        self.registry.drop(view)
        self._views.pop((name, version), None)
        self.all()

    def describe(self, name: str, version: int | None = None) -> ViewInfo:
        """View ``name`` with its tables' rows and bytes on disk per group (read on the
        groups' primaries)."""
        view = self.get(name, version)
        layout = Layout.of(view)
        online: dict[str, int] = {}
        history: dict[str, int] = {}
        size: dict[str, int] = {}
        text = _SIZES.format(
            o=sql.Identifier(layout.online), h=sql.Identifier(layout.history)
        ).as_string(None)
        for group in (g.name for g in self._cluster.config.shard_groups):
            row = self._cluster.as_written(group).fetch_one(
                text, (layout.online, layout.history), consistency="strong"
            )
            online[group], history[group], size[group] = int(row[0]), int(row[1]), int(row[2])
        return ViewInfo(view, layout.online, layout.history, online, history, size)

    def shape(self, features: Sequence[str] | str) -> Shape:
        """The views, features and output names ``features`` asks for: a feature keeps
        its name unless two views of the call have one so called (``view__feature``).
        The views must share their entity keys."""
        key = features if isinstance(features, str) else tuple(features)
        known = self._shapes.get(key)
        if known is not None:
            return known
        order: list[FeatureView] = []
        wanted: dict[tuple[str, int], list[int]] = {}
        for ref in parse_refs(features):
            view = self.get(ref.view, ref.version)
            picked = wanted.get((view.name, view.version))
            if picked is None:
                order.append(view)
                picked = wanted[(view.name, view.version)] = []
            idx = range(len(view.features)) if ref.feature == "*" else [view.index_of(ref.feature)]
            picked += [i for i in idx if i not in picked]
        first = order[0]
        for v in order[1:]:
            if v.entities != first.entities:
                raise FeatureError(
                    f"one call takes views of the same entity keys: {first.name!r} has "
                    f"{', '.join(first.entity_names)}, {v.name!r} {', '.join(v.entity_names)}; "
                    "read them in separate calls"
                )
        plain = [v.features[i].name for v in order for i in wanted[(v.name, v.version)]]
        requests, names = [], []
        for view in order:
            idx = wanted[(view.name, view.version)]
            requests.append(ViewRequest.of(Layout.of(view), idx))
            names.append(
                [
                    f"{view.name}__{view.features[i].name}"
                    if plain.count(view.features[i].name) > 1
                    else view.features[i].name
                    for i in idx
                ]
            )
        self._shapes[key] = (requests, names)
        return requests, names

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

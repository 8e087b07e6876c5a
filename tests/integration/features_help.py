"""A feature store on the session cluster for one test module, cleaned up after it.

Views get a unique suffix (a dropped view's name and version cannot be registered
again), and at the end every view registered through :func:`scratch_store` is
dropped and the sharding catalog put back as it was (see sharding_cleanup.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlscale import Cluster
from mlscale.stores.features import FeatureStore
from tests.integration.sharding_cleanup import restore_sharding

__all__ = ["row_counts", "scratch_store", "unique"]


def unique(name: str) -> str:
    """``name`` with a short random suffix (still a valid view name)."""
    return f"{name}_{uuid.uuid4().hex[:6]}"


@contextmanager
def scratch_store(cluster: Cluster, **options: Any) -> Iterator[FeatureStore]:
    """A FeatureStore on ``cluster``; its views are dropped afterwards."""
    before = cluster.refresh_shards()
    store = FeatureStore(cluster, **options)
    known = {(v.name, v.version) for v in store.views()}
    try:
        yield store
    finally:
        try:
            for v in store.views():
                if (v.name, v.version) not in known:
                    store.drop(v.name, v.version)
        finally:
            restore_sharding(cluster, before)


def row_counts(store: FeatureStore, view: str) -> tuple[int, int]:
    """(online rows, history rows) of ``view`` over every group."""
    info = store.describe(view)
    return sum(info.online_rows.values()), sum(info.history_rows.values())

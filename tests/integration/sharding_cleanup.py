"""Put a cluster's sharding catalog back as it was before a test, so tests pass in any order.

Sharded tables a test created are dropped on every group and forgotten through
``cluster.drop_sharded_table``. Key families and their maps have no library call to
remove them (a map, once published, is meant to stay), so :func:`forget_key_families`
deletes their rows here, under the catalog's lock, and bumps the sharding version
with a NOTIFY as every catalog change does, so running clients route by the result.
Id generators stay: a group's number is never reused, by design.
"""

from __future__ import annotations

from collections.abc import Iterable

from mlscale import Cluster
from mlscale.core.sharding import ShardDirectory
from mlscale.engine.catalog_sync import SHARDING_CHANNEL
from mlscale.engine.migrations import LOCK_KEY

__all__ = ["forget_key_families", "restore_sharding"]


def forget_key_families(cluster: Cluster, families: Iterable[str]) -> None:
    """Delete key families ``families`` and every map of theirs from the catalog.

    Their sharded tables must be gone first: a family still in use is refused.
    """
    names = sorted(set(families))
    if not names:
        return
    with cluster.connection("control") as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        used = conn.execute(
            "SELECT name, family FROM mlscale_catalog.sharded_tables WHERE family = ANY(%s)",
            (names,),
        ).fetchall()
        if used:
            raise AssertionError(f"key families still have sharded tables: {used}")
        conn.execute("DELETE FROM mlscale_catalog.shard_maps WHERE family = ANY(%s)", (names,))
        conn.execute("DELETE FROM mlscale_catalog.key_families WHERE name = ANY(%s)", (names,))
        row = conn.execute(
            "UPDATE mlscale_catalog.sharding_version SET version = version + 1 RETURNING version"
        ).fetchone()
        assert row is not None, "the catalog has no sharding counter"
        conn.execute("SELECT pg_notify(%s, %s)", (SHARDING_CHANNEL, str(row[0])))
    cluster.refresh_shards()


def restore_sharding(cluster: Cluster, before: ShardDirectory) -> None:
    """Drop the sharded tables and forget the key families added since ``before``."""
    now = cluster.refresh_shards()
    for name in sorted(set(now.tables) - set(before.tables)):
        cluster.drop_sharded_table(name)
    forget_key_families(cluster, set(now.maps) - set(before.maps))

"""Chapter 3, sharding: placement. Where rows go when data is split over shard groups.

The user features are loaded into a table sharded on ``user_id`` over every
shard group (COPY split by slot). The chapter then counts what the servers
hold (each group's share, and rows on a group their slot does not map to:
none, checked in SQL), reads users back by key, shows a write without a key
refused, and measures the tutorials' claim on the demo's own keys: adding a
shard group moves about 1/(N+1) of the keys with slots, but nearly all of them
with ``md5(key) % N``.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from psycopg import sql

from ..core.shardmaps import KeyFamily, SlotMap
from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError, RoutingError
from .foundation import ChapterResult, Params, Row, user_rows

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["FAMILY", "TABLE", "drop_sharded", "needs", "needs_of_catalog", "run_sharding"]

FAMILY = "demo_users"
TABLE = "demo_user_features"
CREATE = (
    f"CREATE TABLE {TABLE} (user_id bigint PRIMARY KEY, ctr real NOT NULL, "
    "sessions_7d integer NOT NULL, country text NOT NULL, embedding real[] NOT NULL)"
)
COPY = f"COPY {TABLE} (user_id, ctr, sessions_7d, country, embedding) FROM STDIN"
READ = f"SELECT country FROM {TABLE} WHERE user_id = %s"  # noqa: S608 -- constant names
LOOKUPS = 500


def md5_mod(key: int, n: int) -> int:
    """The tutorials' placement: md5 of the key's text, modulo the shard count."""
    return int(hashlib.md5(str(key).encode()).hexdigest(), 16) % n


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if len(config.shard_groups) < 2:
        return f"the sharding chapter needs 2 shard groups (it has {len(config.shard_groups)})"
    return None


def needs_of_catalog(cluster: Cluster) -> str | None:
    """What the chapter needs of the running cluster's catalog that it lacks: the demo's
    key family, if there, must be a slot map over every group. Reads, writes nothing."""
    groups = [g.name for g in cluster.config.shard_groups]
    current = cluster.refresh_shards().maps.get(FAMILY)
    if current is not None and (
        not isinstance(current, SlotMap) or set(current.groups) != set(groups)
    ):
        return (
            f"key family {FAMILY} exists with another placement; the sharding chapter needs "
            f"a slot map over {', '.join(groups)}"
        )
    return None


def _map(cluster: Cluster, groups: Sequence[str]) -> SlotMap:
    """The demo family's slot map over ``groups``: the current one, or a new one."""
    problem = needs_of_catalog(cluster)
    if problem:
        raise MlscaleError(problem)
    current = cluster.refresh_shards().maps.get(FAMILY)
    if isinstance(current, SlotMap):
        return current
    fresh = SlotMap.even(KeyFamily.of(FAMILY, "int8"), groups)
    cluster.create_shard_map(fresh, reason="mlscale demo")
    return fresh


def drop_sharded(cluster: Cluster) -> None:
    """Drop the chapter's sharded table, if it is there."""
    if TABLE in cluster.refresh_shards().tables:
        cluster.drop_sharded_table(TABLE)


def _count(cluster: Cluster, group: str, query: sql.Composed) -> int:
    with cluster.connection(cluster.primary_node(group)) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def run_sharding(cluster: Cluster, params: Params, echo: Callable[[str], None]) -> ChapterResult:
    """Load, count, read back and re-place the demo's users over the shard groups."""
    groups = [g.name for g in cluster.config.shard_groups]
    if len(groups) < 2:
        raise MlscaleError("the sharding chapter needs two shard groups")
    result = ChapterResult()
    shard_map = _map(cluster, groups)
    drop_sharded(cluster)
    cluster.create_sharded_table(CREATE, shard_key="user_id", family=FAMILY)
    rows = user_rows(params)
    echo(f"sharding: {len(rows)} users over {len(groups)} shard groups by slot ...")
    t0 = time.perf_counter()
    cluster.copy(COPY, rows)
    copy_s = time.perf_counter() - t0

    table = sql.Identifier(TABLE)
    held = {g: _count(cluster, g, sql.SQL("SELECT count(*) FROM {}").format(table)) for g in groups}
    misplaced = sum(
        _count(
            cluster,
            g,
            sql.SQL("SELECT count(*) FROM {} WHERE NOT ({})").format(
                table, shard_map.predicate(g, [sql.Identifier("user_id")])
            ),
        )
        for g in groups
    )
    total = sum(held.values())
    expected = {g: n / shard_map.slots for g, n in shard_map.slot_counts().items()}

    rng = random.Random(params.seed)
    keys = [r[0] for r in rows]
    lookups = rng.sample(keys, min(LOOKUPS, len(keys)))
    t0 = time.perf_counter()
    found = sum(cluster.fetch_value(READ, (k,), consistency="strong") is not None for k in lookups)
    read_ms = (time.perf_counter() - t0) / len(lookups) * 1000

    try:
        cluster.execute(f"UPDATE {TABLE} SET ctr = 0")  # noqa: S608 -- a constant name
        refused = "no"
    except RoutingError:
        refused = "yes"
    untouched = _count(
        cluster, groups[0], sql.SQL("SELECT count(*) FROM {} WHERE ctr = 0").format(table)
    )

    grown = shard_map.with_group("new-group")
    moved_slots = sum(shard_map.locate(k) != grown.locate(k) for k in keys) / len(keys)
    n = len(groups)
    moved_md5 = sum(md5_mod(k, n) != md5_mod(k, n + 1) for k in keys) / len(keys)

    result.metrics.update(
        {
            "sharded_rows": total,
            "sharded_copy_rows_per_s": total / copy_s if copy_s > 0 else None,
            "shard_shares": {g: held[g] / total for g in groups},
            "shard_misplaced_rows": misplaced,
            "sharded_lookups_found": found,
            "sharded_read_ms": read_ms,
            "keyless_write_refused": refused == "yes",
            "moved_on_add_slots": moved_slots,
            "moved_on_add_md5_mod_n": moved_md5,
        }
    )
    shares = " | ".join(f"{held[g] / total:.1%}" for g in groups)
    wanted = " | ".join(f"{expected[g]:.1%}" for g in groups)
    how_add = f"{len(keys)} demo keys, {n} -> {n + 1} groups"
    result.rows += [
        Row("sharded COPY", f"{total / copy_s:,.0f}", "rows/s", f"{total} rows split by slot"),
        Row(f"rows per group ({', '.join(groups)})", shares, "", f"slots give {wanted}"),
        Row("rows on the wrong group", f"{misplaced}", "rows", "slot predicate, in SQL"),
        Row(
            "read by key, mean",
            f"{read_ms:.2f}",
            "ms",
            f"{found} of {len(lookups)} found; routed by slot, strong",
        ),
        Row("write without a shard key refused", refused, "", f"{untouched} rows changed"),
        Row("keys moved adding a group, slots", f"{moved_slots:.1%}", "", how_add),
        Row("keys moved adding a group, md5 % N", f"{moved_md5:.1%}", "", how_add),
    ]
    if misplaced or found != len(lookups) or untouched:
        result.notes.append("sharding placed, lost or changed rows it should not have: a bug")
    return result

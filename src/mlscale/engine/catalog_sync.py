# Generated from catalog_async.py by scripts/async_to_sync.py: do not edit.
# Change catalog_async.py and run the script again.
"""What clients read and write in the catalog at run time (async source): replica
bans, shard maps, sharded tables, id generators. The library and the CLI both
change the catalog through these functions only, so both follow one set of rules.

Every change runs in one transaction and sends a NOTIFY that clients listen to
(their catalog watcher: watch_sync.py): ``mlscale_bans`` for bans, and for
sharding changes -- made under the catalog's advisory lock -- a bump of the
one-row sharding counter and ``mlscale_sharding`` with its new value (clients
also poll the counter, in case a notification is lost). :func:`load_directory`
reads one consistent snapshot. (The catalog's tables and their migrations:
migrations.py.)

``catalog_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg import Connection, sql

from ..core.keyroute import ShardedTable
from ..core.sharding import EMPTY, ShardDirectory
from ..core.shardmaps import ShardMap, map_from_spec
from ..errors import CatalogError, ConfigError
from .migrations import LOCK_KEY
from .samples import MLSCALE_SCHEMA_LOCK

__all__ = [
    "BANS_CHANNEL",
    "SHARDING_CHANNEL",
    "allocate_generator",
    "begin_move",
    "clear_ban",
    "end_move",
    "install_id_generator",
    "load_directory",
    "publish_map",
    "read_bans",
    "register_table",
    "set_ban",
    "sharding_version",
    "unregister_table",
]

SHARDING_CHANNEL = "mlscale_sharding"
BANS_CHANNEL = "mlscale_bans"
_HAS_SHARDING = "SELECT to_regclass('mlscale_catalog.sharding_version') IS NOT NULL"
_VERSION = "SELECT version FROM mlscale_catalog.sharding_version"
_HAS_MOVES = "SELECT to_regclass('mlscale_catalog.moves') IS NOT NULL"
_OPEN_MOVES = "SELECT DISTINCT family FROM mlscale_catalog.moves WHERE ended_at IS NULL"


def sharding_version(conn: Connection[Any]) -> int:
    """The catalog's sharding counter (0: nothing sharded, or a catalog from before)."""
    cur = conn.execute(_HAS_SHARDING)
    row = cur.fetchone()
    if not (row and row[0]):
        return 0
    cur = conn.execute(_VERSION)
    row = cur.fetchone()
    return int(row[0]) if row else 0


def load_directory(conn: Connection[Any]) -> ShardDirectory:
    """Every family's current map and every sharded table, from one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        version = sharding_version(conn)
        if version == 0:
            return EMPTY
        cur = conn.execute(
            "SELECT DISTINCT ON (family) family, spec FROM mlscale_catalog.shard_maps "
            "ORDER BY family, version DESC"
        )
        maps: dict[str, ShardMap] = {}
        for family, spec in cur.fetchall():
            try:
                maps[family] = map_from_spec(spec)
            except ConfigError as exc:
                raise CatalogError(f"the catalog's map of family {family!r} is bad: {exc}") from exc
        cur = conn.execute("SELECT name, family, key_columns FROM mlscale_catalog.sharded_tables")
        tables: dict[str, ShardedTable] = {}
        for name, family, keys in cur.fetchall():
            tables[name] = ShardedTable(name, tuple(keys), family)
        moving: frozenset[str] = frozenset()
        cur = conn.execute(_HAS_MOVES)
        row = cur.fetchone()
        if row and row[0]:  # else a catalog from before moves: none open
            cur = conn.execute(_OPEN_MOVES)
            moving = frozenset(str(family) for (family,) in cur.fetchall())
    return ShardDirectory(version, maps, tables, moving)


def begin_move(conn: Connection[Any], family: str, reason: str) -> int:
    """Record that rows of ``family`` may from now on exist on two groups (a copy
    under way, a source not yet cleaned); the move's id."""
    with conn.transaction():
        _lock(conn)
        _require_moves(conn)
        cur = conn.execute("SELECT 1 FROM mlscale_catalog.key_families WHERE name = %s", (family,))
        if cur.fetchone() is None:
            raise ConfigError(f"no key family {family!r}")
        cur = conn.execute(
            "INSERT INTO mlscale_catalog.moves (family, reason) VALUES (%s, %s) RETURNING id",
            (family, reason),
        )
        row = cur.fetchone()
        _bump(conn)
    assert row is not None
    return int(row[0])


def end_move(conn: Connection[Any], move: int) -> None:
    """Close move ``move``: its family's rows are each on one group again."""
    with conn.transaction():
        _lock(conn)
        _require_moves(conn)
        cur = conn.execute(
            "UPDATE mlscale_catalog.moves SET ended_at = now() WHERE id = %s AND ended_at IS NULL",
            (move,),
        )
        if cur.rowcount == 0:
            raise ConfigError(f"no open move {move}")
        _bump(conn)


def _require_moves(conn: Connection[Any]) -> None:
    cur = conn.execute(_HAS_MOVES)
    row = cur.fetchone()
    if not (row and row[0]):
        raise CatalogError(
            "the catalog predates moves (version < 4); run `mlscale catalog migrate`"
        )


def _bump(conn: Connection[Any]) -> int:
    cur = conn.execute(
        "UPDATE mlscale_catalog.sharding_version SET version = version + 1 RETURNING version"
    )
    row = cur.fetchone()
    if row is None:
        raise CatalogError("the catalog has no sharding counter; run `mlscale catalog migrate`")
    version = int(row[0])
    conn.execute("SELECT pg_notify(%s, %s)", (SHARDING_CHANNEL, str(version)))
    return version


def _lock(conn: Connection[Any]) -> None:
    cur = conn.execute(_HAS_SHARDING)
    row = cur.fetchone()
    if not (row and row[0]):
        raise CatalogError(
            "the catalog predates sharding (version < 3); run `mlscale catalog migrate`"
        )
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))


def set_ban(conn: Connection[Any], node: str, reason: str) -> None:
    """Ban replica ``node`` from reads for every client, until :func:`clear_ban`."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO mlscale_catalog.bans (node, reason) VALUES (%s, %s) "
            "ON CONFLICT (node) DO UPDATE SET reason = excluded.reason, banned_at = now()",
            (node, reason),
        )
        conn.execute("SELECT pg_notify(%s, %s)", (BANS_CHANNEL, node))


def clear_ban(conn: Connection[Any], node: str) -> bool:
    """Lift the manual ban of ``node``; whether there was one."""
    with conn.transaction():
        cur = conn.execute("DELETE FROM mlscale_catalog.bans WHERE node = %s", (node,))
        conn.execute("SELECT pg_notify(%s, %s)", (BANS_CHANNEL, node))
    return cur.rowcount > 0


def read_bans(conn: Connection[Any]) -> dict[str, str]:
    """Manual bans: node -> reason."""
    cur = conn.execute("SELECT node, reason FROM mlscale_catalog.bans ORDER BY node")
    return {str(node): str(reason) for node, reason in cur.fetchall()}


def publish_map(
    conn: Connection[Any], shard_map: ShardMap, reason: str, groups: Sequence[str]
) -> int:
    """Make ``shard_map`` its family's current map, in a cluster of shard groups
    ``groups``. Its version must be the next one (1 for a new family); it must place
    keys on those groups only, and a family with sharded tables cannot get a new map
    (their rows would stay where the old one put them). The new sharding counter."""
    family = shard_map.family
    unknown = sorted(set(shard_map.groups) - set(groups))
    if unknown:
        raise ConfigError(
            f"the map places keys on {', '.join(unknown)}, which this cluster does not "
            f"have (its shard groups: {', '.join(groups)})"
        )
    with conn.transaction():
        _lock(conn)
        cur = conn.execute(
            "SELECT name FROM mlscale_catalog.sharded_tables WHERE family = %s ORDER BY name",
            (family.name,),
        )
        tables = [str(name) for (name,) in cur.fetchall()]
        if tables:
            raise ConfigError(
                f"key family {family.name} has sharded tables ({', '.join(tables)}): a new "
                "map would place their keys elsewhere without moving their rows; moving rows "
                "between groups is online resharding (a later release)"
            )
        cur = conn.execute(
            "SELECT key_types FROM mlscale_catalog.key_families WHERE name = %s", (family.name,)
        )
        row = cur.fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO mlscale_catalog.key_families (name, key_types) VALUES (%s, %s)",
                (family.name, [str(t) for t in family.key_types]),
            )
        elif list(row[0]) != [str(t) for t in family.key_types]:
            raise ConfigError(
                f"key family {family.name!r} has key types {', '.join(row[0])}; "
                "a map cannot change them"
            )
        cur = conn.execute(
            "SELECT coalesce(max(version), 0) FROM mlscale_catalog.shard_maps WHERE family = %s",
            (family.name,),
        )
        row = cur.fetchone()
        current = int(row[0]) if row else 0
        if shard_map.version != current + 1:
            raise ConfigError(
                f"map version {shard_map.version} of family {family.name!r} is not the next "
                f"one (the catalog has {current}); derive it from the current map"
            )
        conn.execute(
            "INSERT INTO mlscale_catalog.shard_maps (family, version, strategy, spec, reason) "
            "VALUES (%s, %s, %s, %s::jsonb, %s)",
            (
                family.name,
                shard_map.version,
                shard_map.strategy,
                json.dumps(shard_map.to_spec()),
                reason,
            ),
        )
        return _bump(conn)


def register_table(conn: Connection[Any], table: ShardedTable, columns: Sequence[str]) -> int:
    """Record ``table`` as sharded on its family's map. The new sharding counter."""
    with conn.transaction():
        _lock(conn)
        cur = conn.execute(
            "SELECT 1 FROM mlscale_catalog.key_families WHERE name = %s", (table.family,)
        )
        if cur.fetchone() is None:
            raise ConfigError(
                f"no key family {table.family!r}; create its shard map first "
                "(cluster.create_shard_map)"
            )
        cur = conn.execute(
            "INSERT INTO mlscale_catalog.sharded_tables (name, family, key_columns, columns) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (table.name, table.family, list(table.key_columns), list(columns)),
        )
        if cur.rowcount == 0:
            raise ConfigError(f"{table.name!r} is already a sharded table")
        return _bump(conn)


def unregister_table(conn: Connection[Any], name: str) -> int:
    """Forget sharded table ``name`` (its rows are the caller's to drop). The new
    sharding counter; a :class:`ConfigError` if it was not sharded."""
    with conn.transaction():
        _lock(conn)
        cur = conn.execute("DELETE FROM mlscale_catalog.sharded_tables WHERE name = %s", (name,))
        if cur.rowcount == 0:
            raise ConfigError(f"{name!r} is not a sharded table")
        return _bump(conn)


def allocate_generator(conn: Connection[Any], group: str) -> int:
    """Shard group ``group``'s id generator number (0..4095): allocated once, never reused."""
    with conn.transaction():
        _lock(conn)
        cur = conn.execute(
            "SELECT generator FROM mlscale_catalog.id_generators WHERE shard_group = %s", (group,)
        )
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
        cur = conn.execute(
            "INSERT INTO mlscale_catalog.id_generators (shard_group, generator) "
            "SELECT %s, coalesce(max(generator) + 1, 0) FROM mlscale_catalog.id_generators "
            "RETURNING generator",
            (group,),
        )
        row = cur.fetchone()
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns a row
            raise CatalogError("no id generator could be allocated")
        return int(row[0])


# Ids are (sequence value << 12) | generator: a group's ids never collide with
# another group's, even after rows move between groups, and they grow with time.
_ID_GENERATOR = (
    "CREATE SCHEMA IF NOT EXISTS mlscale_sys",
    "CREATE SEQUENCE IF NOT EXISTS mlscale_sys.id_seq",
)


def install_id_generator(conn: Connection[Any], generator: int) -> None:
    """Create ``mlscale_sys.next_id()`` on the primary behind ``conn``, for ``generator``."""
    if not 0 <= generator < 4096:
        raise CatalogError(f"id generator {generator} is out of range (0..4095)")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MLSCALE_SCHEMA_LOCK,))
        for statement in _ID_GENERATOR:
            conn.execute(statement)
        conn.execute(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION mlscale_sys.next_id() RETURNS bigint "
                "LANGUAGE sql VOLATILE AS {}"
            ).format(
                sql.Literal(
                    sql.SQL("SELECT (nextval('mlscale_sys.id_seq') << 12) | {}")
                    .format(sql.Literal(generator))
                    .as_string(conn)
                )
            )
        )

"""What clients read and write in the catalog at run time (async source): replica
bans, shard maps, sharded tables, id generators. The library and the CLI both
change the catalog through these functions only, so both follow one set of rules.

Every change runs in one transaction and sends a NOTIFY that clients listen to
(their catalog watcher: watch_async.py): ``mlscale_bans`` for bans, and for
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

from psycopg import AsyncConnection, sql

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


async def sharding_version(conn: AsyncConnection[Any]) -> int:
    """The catalog's sharding counter (0: nothing sharded, or a catalog from before)."""
    cur = await conn.execute(_HAS_SHARDING)
    row = await cur.fetchone()
    if not (row and row[0]):
        return 0
    cur = await conn.execute(_VERSION)
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def load_directory(conn: AsyncConnection[Any]) -> ShardDirectory:
    """Every family's current map and every sharded table, from one snapshot."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        version = await sharding_version(conn)
        if version == 0:
            return EMPTY
        cur = await conn.execute(
            "SELECT DISTINCT ON (family) family, spec FROM mlscale_catalog.shard_maps "
            "ORDER BY family, version DESC"
        )
        maps: dict[str, ShardMap] = {}
        for family, spec in await cur.fetchall():
            try:
                maps[family] = map_from_spec(spec)
            except ConfigError as exc:
                raise CatalogError(f"the catalog's map of family {family!r} is bad: {exc}") from exc
        cur = await conn.execute(
            "SELECT name, family, key_columns FROM mlscale_catalog.sharded_tables"
        )
        tables: dict[str, ShardedTable] = {}
        for name, family, keys in await cur.fetchall():
            tables[name] = ShardedTable(name, tuple(keys), family)
        moving: frozenset[str] = frozenset()
        cur = await conn.execute(_HAS_MOVES)
        row = await cur.fetchone()
        if row and row[0]:  # else a catalog from before moves: none open
            cur = await conn.execute(_OPEN_MOVES)
            moving = frozenset(str(family) for (family,) in await cur.fetchall())
    return ShardDirectory(version, maps, tables, moving)


async def begin_move(conn: AsyncConnection[Any], family: str, reason: str) -> int:
    """Record that rows of ``family`` may from now on exist on two groups (a copy
    under way, a source not yet cleaned); the move's id."""
    async with conn.transaction():
        await _lock(conn)
        await _require_moves(conn)
        cur = await conn.execute(
            "SELECT 1 FROM mlscale_catalog.key_families WHERE name = %s", (family,)
        )
        if await cur.fetchone() is None:
            raise ConfigError(f"no key family {family!r}")
        cur = await conn.execute(
            "INSERT INTO mlscale_catalog.moves (family, reason) VALUES (%s, %s) RETURNING id",
            (family, reason),
        )
        row = await cur.fetchone()
        await _bump(conn)
    assert row is not None
    return int(row[0])


async def end_move(conn: AsyncConnection[Any], move: int) -> None:
    """Close move ``move``: its family's rows are each on one group again."""
    async with conn.transaction():
        await _lock(conn)
        await _require_moves(conn)
        cur = await conn.execute(
            "UPDATE mlscale_catalog.moves SET ended_at = now() WHERE id = %s AND ended_at IS NULL",
            (move,),
        )
        if cur.rowcount == 0:
            raise ConfigError(f"no open move {move}")
        await _bump(conn)


async def _require_moves(conn: AsyncConnection[Any]) -> None:
    cur = await conn.execute(_HAS_MOVES)
    row = await cur.fetchone()
    if not (row and row[0]):
        raise CatalogError(
            "the catalog predates moves (version < 4); run `mlscale catalog migrate`"
        )


async def _bump(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute(
        "UPDATE mlscale_catalog.sharding_version SET version = version + 1 RETURNING version"
    )
    row = await cur.fetchone()
    if row is None:
        raise CatalogError("the catalog has no sharding counter; run `mlscale catalog migrate`")
    version = int(row[0])
    await conn.execute("SELECT pg_notify(%s, %s)", (SHARDING_CHANNEL, str(version)))
    return version


async def _lock(conn: AsyncConnection[Any]) -> None:
    cur = await conn.execute(_HAS_SHARDING)
    row = await cur.fetchone()
    if not (row and row[0]):
        raise CatalogError(
            "the catalog predates sharding (version < 3); run `mlscale catalog migrate`"
        )
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))


async def set_ban(conn: AsyncConnection[Any], node: str, reason: str) -> None:
    """Ban replica ``node`` from reads for every client, until :func:`clear_ban`."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO mlscale_catalog.bans (node, reason) VALUES (%s, %s) "
            "ON CONFLICT (node) DO UPDATE SET reason = excluded.reason, banned_at = now()",
            (node, reason),
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (BANS_CHANNEL, node))


async def clear_ban(conn: AsyncConnection[Any], node: str) -> bool:
    """Lift the manual ban of ``node``; whether there was one."""
    async with conn.transaction():
        cur = await conn.execute("DELETE FROM mlscale_catalog.bans WHERE node = %s", (node,))
        await conn.execute("SELECT pg_notify(%s, %s)", (BANS_CHANNEL, node))
    return cur.rowcount > 0


async def read_bans(conn: AsyncConnection[Any]) -> dict[str, str]:
    """Manual bans: node -> reason."""
    cur = await conn.execute("SELECT node, reason FROM mlscale_catalog.bans ORDER BY node")
    return {str(node): str(reason) for node, reason in await cur.fetchall()}


async def publish_map(
    conn: AsyncConnection[Any], shard_map: ShardMap, reason: str, groups: Sequence[str]
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
    async with conn.transaction():
        await _lock(conn)
        cur = await conn.execute(
            "SELECT name FROM mlscale_catalog.sharded_tables WHERE family = %s ORDER BY name",
            (family.name,),
        )
        tables = [str(name) for (name,) in await cur.fetchall()]
        if tables:
            raise ConfigError(
                f"key family {family.name} has sharded tables ({', '.join(tables)}): a new "
                "map would place their keys elsewhere without moving their rows; moving rows "
                "between groups is online resharding (a later release)"
            )
        cur = await conn.execute(
            "SELECT key_types FROM mlscale_catalog.key_families WHERE name = %s", (family.name,)
        )
        row = await cur.fetchone()
        if row is None:
            await conn.execute(
                "INSERT INTO mlscale_catalog.key_families (name, key_types) VALUES (%s, %s)",
                (family.name, [str(t) for t in family.key_types]),
            )
        elif list(row[0]) != [str(t) for t in family.key_types]:
            raise ConfigError(
                f"key family {family.name!r} has key types {', '.join(row[0])}; "
                "a map cannot change them"
            )
        cur = await conn.execute(
            "SELECT coalesce(max(version), 0) FROM mlscale_catalog.shard_maps WHERE family = %s",
            (family.name,),
        )
        row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if shard_map.version != current + 1:
            raise ConfigError(
                f"map version {shard_map.version} of family {family.name!r} is not the next "
                f"one (the catalog has {current}); derive it from the current map"
            )
        await conn.execute(
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
        return await _bump(conn)


async def register_table(
    conn: AsyncConnection[Any], table: ShardedTable, columns: Sequence[str]
) -> int:
    """Record ``table`` as sharded on its family's map. The new sharding counter."""
    async with conn.transaction():
        await _lock(conn)
        cur = await conn.execute(
            "SELECT 1 FROM mlscale_catalog.key_families WHERE name = %s", (table.family,)
        )
        if await cur.fetchone() is None:
            raise ConfigError(
                f"no key family {table.family!r}; create its shard map first "
                "(cluster.create_shard_map)"
            )
        cur = await conn.execute(
            "INSERT INTO mlscale_catalog.sharded_tables (name, family, key_columns, columns) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
            (table.name, table.family, list(table.key_columns), list(columns)),
        )
        if cur.rowcount == 0:
            raise ConfigError(f"{table.name!r} is already a sharded table")
        return await _bump(conn)


async def unregister_table(conn: AsyncConnection[Any], name: str) -> int:
    """Forget sharded table ``name`` (its rows are the caller's to drop). The new
    sharding counter; a :class:`ConfigError` if it was not sharded."""
    async with conn.transaction():
        await _lock(conn)
        cur = await conn.execute(
            "DELETE FROM mlscale_catalog.sharded_tables WHERE name = %s", (name,)
        )
        if cur.rowcount == 0:
            raise ConfigError(f"{name!r} is not a sharded table")
        return await _bump(conn)


async def allocate_generator(conn: AsyncConnection[Any], group: str) -> int:
    """Shard group ``group``'s id generator number (0..4095): allocated once, never reused."""
    async with conn.transaction():
        await _lock(conn)
        cur = await conn.execute(
            "SELECT generator FROM mlscale_catalog.id_generators WHERE shard_group = %s", (group,)
        )
        row = await cur.fetchone()
        if row is not None:
            return int(row[0])
        cur = await conn.execute(
            "INSERT INTO mlscale_catalog.id_generators (shard_group, generator) "
            "SELECT %s, coalesce(max(generator) + 1, 0) FROM mlscale_catalog.id_generators "
            "RETURNING generator",
            (group,),
        )
        row = await cur.fetchone()
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns a row
            raise CatalogError("no id generator could be allocated")
        return int(row[0])


# Ids are (sequence value << 12) | generator: a group's ids never collide with
# another group's, even after rows move between groups, and they grow with time.
_ID_GENERATOR = (
    "CREATE SCHEMA IF NOT EXISTS mlscale_sys",
    "CREATE SEQUENCE IF NOT EXISTS mlscale_sys.id_seq",
)


async def install_id_generator(conn: AsyncConnection[Any], generator: int) -> None:
    """Create ``mlscale_sys.next_id()`` on the primary behind ``conn``, for ``generator``."""
    if not 0 <= generator < 4096:
        raise CatalogError(f"id generator {generator} is out of range (0..4095)")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MLSCALE_SCHEMA_LOCK,))
        for statement in _ID_GENERATOR:
            await conn.execute(statement)
        await conn.execute(
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

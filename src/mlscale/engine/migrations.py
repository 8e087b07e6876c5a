"""The catalog's schema: mlscale's own tables on the control database, versioned by
migrations, and the topology recorded in them.

Version 1 holds the topology: epochs, shard groups and nodes; 2 bans; 3 shard
maps, sharded tables and id generators; 4 moves (rows of a key family on two
groups at once). (What clients read and write in those
tables at run time: catalog_async.py.) Migrations run in one transaction under an
advisory lock, so concurrent ``mlscale up`` / ``catalog migrate`` calls are safe
and a failed migration leaves the catalog as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ..core.topology import Node, Role, same_topology
from ..errors import CatalogError

__all__ = [
    "LOCK_KEY",
    "MIGRATIONS",
    "SCHEMA",
    "Migration",
    "catalog_version",
    "migrate",
    "read_topology",
    "register_topology",
]

SCHEMA = "mlscale_catalog"
# Key of the transaction-level advisory lock that serializes catalog changes.
LOCK_KEY = 0x6D6C7363616C65  # "mlscale"


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the catalog schema; ``statements`` run in order, in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "topology: epochs, shard groups, nodes",
        (
            """CREATE TABLE mlscale_catalog.epochs (
                   epoch      bigint PRIMARY KEY CHECK (epoch > 0),
                   started_at timestamptz NOT NULL DEFAULT now(),
                   reason     text NOT NULL
               )""",
            """CREATE TABLE mlscale_catalog.shard_groups (
                   name       text PRIMARY KEY,
                   created_at timestamptz NOT NULL DEFAULT now()
               )""",
            """CREATE TABLE mlscale_catalog.nodes (
                   name        text PRIMARY KEY,
                   role        text NOT NULL CHECK (role IN ('control', 'primary', 'replica')),
                   shard_group text REFERENCES mlscale_catalog.shard_groups (name),
                   host        text NOT NULL,
                   port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
                   dbname      text NOT NULL,
                   username    text NOT NULL,
                   epoch       bigint NOT NULL REFERENCES mlscale_catalog.epochs (epoch),
                   CHECK ((role = 'control') = (shard_group IS NULL))
               )""",
            """CREATE UNIQUE INDEX nodes_one_primary_per_group
                   ON mlscale_catalog.nodes (shard_group) WHERE role = 'primary'""",
        ),
    ),
    Migration(
        2,
        "bans: replicas taken out of read rotation by hand",
        (
            """CREATE TABLE mlscale_catalog.bans (
                   node      text PRIMARY KEY,
                   reason    text NOT NULL CHECK (reason <> ''),
                   banned_at timestamptz NOT NULL DEFAULT now()
               )""",
        ),
    ),
    Migration(
        3,
        "sharding: key families, versioned shard maps, sharded tables, id generators",
        (
            # One counter bumped by every sharding change: clients poll this one row.
            """CREATE TABLE mlscale_catalog.sharding_version (
                   only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                   version  bigint NOT NULL
               )""",
            "INSERT INTO mlscale_catalog.sharding_version VALUES (true, 0)",
            """CREATE TABLE mlscale_catalog.key_families (
                   name       text PRIMARY KEY CHECK (name <> ''),
                   key_types  text[] NOT NULL CHECK (cardinality(key_types) > 0),
                   created_at timestamptz NOT NULL DEFAULT now()
               )""",
            """CREATE TABLE mlscale_catalog.shard_maps (
                   family     text NOT NULL REFERENCES mlscale_catalog.key_families (name),
                   version    bigint NOT NULL CHECK (version > 0),
                   strategy   text NOT NULL,
                   spec       jsonb NOT NULL,
                   reason     text NOT NULL,
                   created_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (family, version)
               )""",
            """CREATE TABLE mlscale_catalog.sharded_tables (
                   name        text PRIMARY KEY,
                   family      text NOT NULL REFERENCES mlscale_catalog.key_families (name),
                   key_columns text[] NOT NULL CHECK (cardinality(key_columns) > 0),
                   columns     text[] NOT NULL,
                   created_at  timestamptz NOT NULL DEFAULT now()
               )""",
            # Never reused, so ids made by a group stay unique wherever their rows move.
            """CREATE TABLE mlscale_catalog.id_generators (
                   shard_group text PRIMARY KEY,
                   generator   integer NOT NULL UNIQUE CHECK (generator BETWEEN 0 AND 4095)
               )""",
        ),
    ),
    Migration(
        4,
        "moves: key families whose rows may exist on two groups at once",
        (
            # While a family has an open move, cross-shard reads filter every group to
            # the rows it owns (see core/scatter/prepare.py); ended moves stay as history.
            """CREATE TABLE mlscale_catalog.moves (
                   id         bigserial PRIMARY KEY,
                   family     text NOT NULL REFERENCES mlscale_catalog.key_families (name),
                   reason     text NOT NULL,
                   started_at timestamptz NOT NULL DEFAULT now(),
                   ended_at   timestamptz
               )""",
        ),
    ),
    Migration(
        5,
        "feature views: the feature store's registry (stores/features)",
        (
            """CREATE TABLE mlscale_catalog.feature_views (
                   name       text NOT NULL,
                   version    integer NOT NULL CHECK (version > 0),
                   spec       jsonb NOT NULL,
                   created_at timestamptz NOT NULL DEFAULT now(),
                   dropped_at timestamptz,
                   PRIMARY KEY (name, version)
               )""",
        ),
    ),
    Migration(
        6,
        "prediction logs: their definitions (stores/predictions)",
        (
            """CREATE TABLE mlscale_catalog.prediction_logs (
                   name       text PRIMARY KEY,
                   spec       jsonb NOT NULL,
                   created_at timestamptz NOT NULL DEFAULT now()
               )""",
        ),
    ),
    Migration(
        7,
        "API keys of the HTTP service (serve/keys.py): digests, never the keys",
        (
            """CREATE TABLE mlscale_catalog.api_keys (
                   id         text PRIMARY KEY CHECK (id ~ '^[0-9a-f]{16}$'),
                   name       text NOT NULL CHECK (name <> ''),
                   scope      text NOT NULL CHECK (scope IN ('read', 'write')),
                   digest     bytea NOT NULL CHECK (length(digest) = 32),
                   created_at timestamptz NOT NULL DEFAULT now(),
                   revoked_at timestamptz
               )""",
        ),
    ),
    Migration(
        8,
        "metric measurements: their definitions and field types (stores/metrics)",
        (
            """CREATE TABLE mlscale_catalog.metric_measurements (
                   name       text PRIMARY KEY,
                   spec       jsonb NOT NULL,
                   created_at timestamptz NOT NULL DEFAULT now()
               )""",
        ),
    ),
)


def _applied(cur: psycopg.Cursor[Any]) -> int:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", ("mlscale_catalog.schema_migrations",))
    row = cur.fetchone()
    if not row or not row[0]:
        return 0
    cur.execute("SELECT coalesce(max(version), 0) FROM mlscale_catalog.schema_migrations")
    row = cur.fetchone()
    return int(row[0]) if row else 0


def catalog_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version the catalog is at (0: no catalog yet)."""
    with conn.cursor() as cur:
        return _applied(cur)


def migrate(conn: psycopg.Connection[Any]) -> list[Migration]:
    """Bring the catalog to the newest version; the migrations applied (none if current)."""
    latest = MIGRATIONS[-1].version
    done: list[Migration] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        cur.execute(
            """CREATE TABLE IF NOT EXISTS mlscale_catalog.schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
        )
        current = _applied(cur)
        if current > latest:
            raise CatalogError(
                f"the catalog is at version {current}, newer than this mlscale knows "
                f"({latest}); upgrade mlscale"
            )
        for step in MIGRATIONS:
            if step.version <= current:
                continue
            for statement in step.statements:
                cur.execute(statement)  # static DDL, no values
            cur.execute(
                "INSERT INTO mlscale_catalog.schema_migrations (version, name) VALUES (%s, %s)",
                (step.version, step.name),
            )
            done.append(step)
    return done


def _require_current(cur: psycopg.Cursor[Any]) -> None:
    version = _applied(cur)
    if version != MIGRATIONS[-1].version:
        raise CatalogError(
            f"the catalog is at version {version}, expected {MIGRATIONS[-1].version}; "
            "run `mlscale catalog migrate`"
        )


def read_topology(conn: psycopg.Connection[Any]) -> tuple[int, list[Node]]:
    """The current epoch and the nodes registered in it (epoch 0: none yet)."""
    with conn.cursor() as cur:
        _require_current(cur)
        cur.execute("SELECT coalesce(max(epoch), 0) FROM mlscale_catalog.epochs")
        row = cur.fetchone()
        epoch = int(row[0]) if row else 0
        cur.execute(
            "SELECT name, role, shard_group, host, port, dbname, username "
            "FROM mlscale_catalog.nodes ORDER BY name"
        )
        nodes = [
            Node(
                name=r[0], role=Role(r[1]), group=r[2], host=r[3], port=r[4], dbname=r[5], user=r[6]
            )
            for r in cur.fetchall()
        ]
    return epoch, nodes


def register_topology(conn: psycopg.Connection[Any], nodes: Sequence[Node], reason: str) -> int:
    """Record ``nodes`` as the topology; a new epoch only if it changed. The epoch."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        epoch, current = read_topology(conn)
        if epoch and same_topology(current, nodes):
            return epoch
        epoch += 1
        cur.execute(
            "INSERT INTO mlscale_catalog.epochs (epoch, reason) VALUES (%s, %s)", (epoch, reason)
        )
        cur.execute("DELETE FROM mlscale_catalog.nodes")
        groups = sorted({n.group for n in nodes if n.group is not None})
        cur.execute(
            "DELETE FROM mlscale_catalog.shard_groups WHERE NOT (name = ANY(%s))", (groups,)
        )
        cur.executemany(
            "INSERT INTO mlscale_catalog.shard_groups (name) VALUES (%s) ON CONFLICT DO NOTHING",
            [(g,) for g in groups],
        )
        cur.executemany(
            "INSERT INTO mlscale_catalog.nodes "
            "(name, role, shard_group, host, port, dbname, username, epoch) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (n.name, n.role.value, n.group, n.host, n.port, n.dbname, n.user, epoch)
                for n in nodes
            ],
        )
        cur.execute("SELECT pg_notify('mlscale_topology', %s)", (str(epoch),))
    return epoch

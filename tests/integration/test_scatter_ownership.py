"""The ownership filter on a real PostgreSQL: two shard groups simulated as two schemas.

Schema ``g1`` holds the rows of ``t`` and ``u`` whose slots a 2-group SlotMap gives
g1, plus a copy of every row of one slot g2 owns (a move under way, the map not yet
switched); ``g2`` holds its own rows; ``ref`` holds every row once. Each query runs on
both groups through :func:`owned_rows_sql` with the map's real predicate: the union of
the two groups' rows must equal the query's rows over ``ref``; without the filter the
copied slot is read twice.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mlscale import Cluster
from mlscale.core.keyroute import ShardedTable
from mlscale.core.scatter import merge_rows, plan_select
from mlscale.core.scatter.ownership import check_fanout, owned_rows_sql
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.slots import slot_of

FAMILY = KeyFamily.of("users", "int8")
MAP = SlotMap.even(FAMILY, ("g1", "g2"), slots=64)
TABLES = {
    "t": ShardedTable("t", ("user_id",), "users"),
    "u": ShardedTable("u", ("user_id",), "users"),
}
QUERIES = [
    "select user_id, id, v from t",
    "select a.id, b.id from t a join t b on a.user_id = b.user_id",
    "select t.id, u.w from t join u using (user_id)",
    "select t.id, u.w from t, u where t.user_id = u.user_id and t.v > 3",
    "select t.id, u.w from u right join t on u.user_id = t.user_id",
    "select x.id from t x where exists "
    "(select 1 from u where u.user_id = x.user_id and u.w > 5)",
    "select id from t where user_id in (select user_id from u where w % 2 = 0)",
    "select d.user_id, d.n from (select user_id, count(*) as n from t group by user_id) d",
    "select t.id, (select max(w) from u where u.user_id = t.user_id) from t",
    "select t.id, l.v from t, lateral (select v from t t2 where t2.user_id = t.user_id "
    "order by v desc limit 1) l",
]
MERGED = [
    "select count(*), sum(v), avg(v), min(v), max(v) from t",
    "select t.user_id % 5 as k, count(*), sum(u.w) from t join u using (user_id) group by 1",
    "select user_id, id from t order by v desc, user_id, id limit 7 offset 2",
]


def _predicate(group: str) -> Any:
    def owned(table: ShardedTable, columns: Sequence[sql.Composable]) -> sql.Composable:
        return MAP.predicate(group, columns)

    return owned


def _load(conn: psycopg.Connection[Any], schemas: dict[str, str]) -> int:
    """Creates and fills the schemas; returns the slot copied into g1."""
    rng = random.Random(7)
    users = [rng.randint(-(2**62), 2**62) for _ in range(60)]
    t_rows = [(k, i, rng.randint(0, 9)) for k in users for i in range(rng.randint(1, 4))]
    u_rows = [(k, rng.randint(0, 20)) for k in users if rng.random() < 0.7]
    moved = next(slot_of(k, FAMILY.key_types[0], MAP.slots) for k in users
                 if MAP.locate(k) == "g2")

    def placed(key: int, schema: str) -> bool:
        if schema == "ref":
            return True
        if MAP.locate(key) == schema:
            return True
        return schema == "g1" and slot_of(key, FAMILY.key_types[0], MAP.slots) == moved

    for name, schema in schemas.items():
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.t (user_id int8, id int, v int, "
                     "PRIMARY KEY (user_id, id))")
        conn.execute(f"CREATE TABLE {schema}.u (user_id int8 PRIMARY KEY, w int)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.t VALUES (%s, %s, %s)",  # noqa: S608
                            [r for r in t_rows if placed(r[0], name)])
            cur.executemany(f"INSERT INTO {schema}.u VALUES (%s, %s)",  # noqa: S608
                            [r for r in u_rows if placed(r[0], name)])
        conn.execute(f"ANALYZE {schema}.t")
        conn.execute(f"ANALYZE {schema}.u")
    return moved


def _on(conn: psycopg.Connection[Any], schema: str, query: str) -> list[tuple[Any, ...]]:
    conn.execute(f"SET search_path TO {schema}, public")
    return conn.execute(query).fetchall()


@pytest.mark.integration
def test_groups_read_only_their_slots(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:8]
    schemas = {name: f"own_{name}_{tag}" for name in ("ref", "g1", "g2")}
    with cluster.connection(cluster.primary_node()) as conn:
        conn.autocommit = True
        try:
            _load(conn, schemas)
            # The copied slot really is on both groups: reading without the filter
            # counts it twice.
            plain = sum(_on(conn, schemas[g], "select count(*) from t")[0][0]
                        for g in ("g1", "g2"))
            assert plain > _on(conn, schemas["ref"], "select count(*) from t")[0][0]
            for query in QUERIES:
                refs = check_fanout(query, TABLES).refs
                union: Counter[tuple[Any, ...]] = Counter()
                for group in ("g1", "g2"):
                    owned = owned_rows_sql(query, refs, _predicate(group))
                    union.update(_on(conn, schemas[group], owned))
                    plan = _on(conn, schemas[group], f"EXPLAIN (COSTS OFF) {owned}")
                    assert not any("Subquery Scan" in line for (line,) in plan), (owned, plan)
                assert union == Counter(_on(conn, schemas["ref"], query)), query
            for query in MERGED:
                refs = check_fanout(query, TABLES).refs  # the user's statement's refs
                scatter = plan_select(query)
                groups = [_on(conn, schemas[g],
                              owned_rows_sql(scatter.group_sql, refs, _predicate(g)))
                          for g in ("g1", "g2")]
                merged = merge_rows(scatter, groups)
                expected = _on(conn, schemas["ref"], query)
                if not scatter.merge.order:
                    merged.sort()
                    expected.sort()
                assert merged == expected, query
        finally:
            conn.execute("RESET search_path")
            for schema in schemas.values():
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.mark.integration
def test_filter_plans_like_a_where_clause(cluster: Cluster) -> None:
    """PostgreSQL pulls the ownership subquery up: the plan is the plain WHERE filter's."""
    tag = uuid.uuid4().hex[:8]
    schemas = {name: f"own_{name}_{tag}" for name in ("ref", "g1", "g2")}
    with cluster.connection(cluster.primary_node()) as conn:
        conn.autocommit = True
        try:
            _load(conn, schemas)
            query = "select id, v from t where v > 2"
            refs = check_fanout(query, TABLES).refs
            owned = owned_rows_sql(query, refs, _predicate("g1"))
            where = MAP.predicate("g1", [sql.Identifier("user_id")]).as_string(None)
            plain = f"select id, v from t where v > 2 and {where}"  # noqa: S608
            explain = "EXPLAIN (COSTS OFF) "
            got = [line for (line,) in _on(conn, schemas["g1"], explain + owned)]
            want = [line for (line,) in _on(conn, schemas["g1"], explain + plain)]
            assert [line.split(":")[0] for line in got] == [line.split(":")[0] for line in want]
            assert got[0].startswith(("Seq Scan on t", "Index")), got
        finally:
            conn.execute("RESET search_path")
            for schema in schemas.values():
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

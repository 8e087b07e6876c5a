"""Sharding against the real 2-group cluster: placement of every write form, reads by
key, refusals that write nothing, ids, co-location, and map changes seen by others."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg import sql

from mlscale import (
    Cluster,
    ConfigError,
    IntegrityViolation,
    LocalCluster,
    PartialWriteError,
    RoutingError,
    SchemaError,
    TransactionConflict,
)
from mlscale.core.shardmaps import KeyFamily, SlotMap
from tests.integration.sharding_cleanup import restore_sharding

FAMILY = "sh_users"
EVENTS = "sh_events"
PROFILES = "sh_profiles"


@pytest.fixture(scope="module")
def sharded(cluster: Cluster) -> Iterator[Cluster]:
    """sh_events and sh_profiles sharded on user_id (int8) over g0 and g1; gone from
    the groups and the catalog after the module."""
    before = cluster.refresh_shards()
    try:
        yield _shard_users(cluster)
    finally:
        restore_sharding(cluster, before)


@pytest.fixture(autouse=True)
def _each_test_cleans_up(sharded: Cluster, sharding_restored: None) -> None:
    """What a test adds to the sharding catalog is gone after it (see conftest.py)."""


def _shard_users(cluster: Cluster) -> Cluster:
    family = KeyFamily.of(FAMILY, "int8")
    cluster.create_shard_map(SlotMap.even(family, ["g0", "g1"]), reason="test")
    cluster.create_sharded_table(
        "CREATE TABLE sh_events (user_id bigint NOT NULL, id bigint NOT NULL "
        "DEFAULT mlscale_sys.next_id(), body text, PRIMARY KEY (user_id, id))",
        shard_key="user_id",
        family=FAMILY,
    )
    cluster.create_sharded_table(
        "CREATE TABLE sh_profiles (user_id bigint PRIMARY KEY, name text NOT NULL)",
        shard_key="user_id",
        family=FAMILY,
    )
    return cluster


def rows_on(cluster: Cluster, group: str, query: str, params: Any = None) -> list[Any]:
    """Rows read straight from a group's primary, past the router."""
    with cluster.connection(cluster.primary_node(group)) as conn:
        return conn.execute(query, params).fetchall()


def placement(cluster: Cluster, table: str) -> dict[str, list[int]]:
    """user_id of every row of ``table``, by the group whose server holds it."""
    return {
        g: sorted(
            r[0]
            for r in rows_on(
                cluster, g, sql.SQL("SELECT user_id FROM {}").format(sql.Identifier(table))
            )
        )
        for g in ("g0", "g1")
    }


def assert_placed_by_map(cluster: Cluster, table: str) -> int:
    """Every row sits on the group its slot maps to, by Python and by SQL. Row count."""
    shard_map = cluster.shards().map_of(FAMILY)
    total = 0
    for group, keys in placement(cluster, table).items():
        assert all(shard_map.locate(k) == group for k in keys), (group, keys)
        wrong = rows_on(
            cluster,
            group,
            sql.SQL("SELECT count(*) FROM {} WHERE NOT ({})").format(
                sql.Identifier(table), shard_map.predicate(group, [sql.Identifier("user_id")])
            ),
        )
        assert wrong == [(0,)]
        total += len(keys)
    return total


def keys_on_both(cluster: Cluster, n: int, start: int = 1) -> list[int]:
    """``n`` user ids, at least one on each group."""
    keys = list(range(start, start + n))
    groups = {cluster.locate(FAMILY, k) for k in keys}
    assert groups == {"g0", "g1"}, "pick another key range"
    return keys


def clear(cluster: Cluster) -> None:
    cluster.execute("DELETE FROM sh_events", broadcast=True)
    cluster.execute("DELETE FROM sh_profiles", broadcast=True)


def test_every_insert_form_lands_on_the_group_of_its_slot(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 40)
    c.execute("INSERT INTO sh_events (user_id, body) VALUES (%s, %s)", (keys[0], "one"))
    c.execute(
        "INSERT INTO sh_events (user_id, body) VALUES (%(u)s, %(b)s)", {"u": keys[1], "b": "n"}
    )
    # A constant key in the text (an int from range(), not user input).
    c.execute(f"INSERT INTO sh_events (user_id, body) VALUES ({keys[2]}, 'const')")  # noqa: S608
    values = ", ".join(["(%s, %s)"] * 10)
    params = [v for k in keys[3:13] for v in (k, f"multi-{k}")]
    multi = "INSERT INTO sh_events (user_id, body) VALUES " + values  # noqa: S608 -- placeholders
    assert c.execute(multi, params) == 10
    # Without a column list the key's position is unknown (DDL made elsewhere could
    # move it): refused, so name the columns.
    with pytest.raises(RoutingError, match="without a column list"):
        c.execute("INSERT INTO sh_events VALUES (%s, mlscale_sys.next_id(), %s)", (keys[13], "x"))
    c.execute("INSERT INTO sh_events (user_id, body) VALUES (%s, %s)", (keys[13], "named"))
    returned = c.fetch_all(
        "INSERT INTO sh_events (user_id, body) VALUES (%s, 'r'), (%s, 'r') RETURNING user_id",
        (keys[14], keys[15]),
    )
    assert sorted(r[0] for r in returned) == sorted(keys[14:16])
    copied = [(k, 900 + k, f"copy-{k}") for k in keys[16:40]]
    assert c.copy("COPY sh_events (user_id, id, body) FROM STDIN", copied) == len(copied)
    assert assert_placed_by_map(c, EVENTS) == 40
    both = placement(c, EVENTS)
    assert both["g0"] and both["g1"]


def test_reads_and_writes_by_key_reach_the_right_group(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 12, start=100)
    for k in keys:
        c.execute("INSERT INTO sh_events (user_id, body) VALUES (%s, %s)", (k, f"b{k}"))
    strong = {"consistency": "strong"}
    assert c.fetch_value("SELECT body FROM sh_events WHERE user_id = %s", (keys[0],), **strong) == (
        f"b{keys[0]}"
    )
    some = keys[:6]
    got = c.fetch_all(
        "SELECT user_id FROM sh_events WHERE user_id IN (%s, %s, %s, %s, %s, %s)", some, **strong
    )
    assert sorted(r[0] for r in got) == some
    got = c.fetch_all("SELECT user_id FROM sh_events WHERE user_id = ANY(%s)", (keys,), **strong)
    assert sorted(r[0] for r in got) == keys
    assert c.execute("UPDATE sh_events SET body = 'u' WHERE user_id = ANY(%s)", (keys[:5],)) == 5
    assert c.execute("DELETE FROM sh_events WHERE user_id = %s", (keys[5],)) == 1
    assert assert_placed_by_map(c, EVENTS) == 11
    # An explicit shard key places a statement whose key cannot be read from it.
    assert c.execute("UPDATE sh_events SET body = 'k' WHERE body = 'u'", shard_key=keys[0]) >= 1


def test_co_located_tables_join_on_their_shard(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 6, start=200)
    for k in keys:
        c.execute("INSERT INTO sh_profiles (user_id, name) VALUES (%s, %s)", (k, f"user {k}"))
        c.execute("INSERT INTO sh_events (user_id, body) VALUES (%s, 'e')", (k,))
    for k in keys:
        row = c.fetch_one(
            "SELECT p.name, count(*) FROM sh_events e JOIN sh_profiles p USING (user_id) "
            "WHERE e.user_id = %s GROUP BY p.name",
            (k,),
            consistency="strong",
        )
        assert row == (f"user {k}", 1)


def counts(cluster: Cluster) -> dict[str, int]:
    return {g: rows_on(cluster, g, "SELECT count(*) FROM sh_events")[0][0] for g in ("g0", "g1")}


def test_refusals_are_clear_and_write_nothing(sharded: Cluster, cluster: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 4, start=300)
    for k in keys:
        c.execute("INSERT INTO sh_events (user_id, id, body) VALUES (%s, %s, 'x')", (k, k))
    before = counts(c)
    with pytest.raises(RoutingError, match="broadcast=True"):
        c.execute("DELETE FROM sh_events WHERE body = 'x'")
    with pytest.raises(RoutingError, match="shard key"):
        c.execute("UPDATE sh_events SET user_id = user_id + 1 WHERE user_id = %s", (keys[0],))
    # Reads that need merging are cross-shard reads now (test_scatter_reads.py); one
    # the merger cannot make exact is refused and writes nothing either.
    assert c.fetch_value("SELECT count(*) FROM sh_events", consistency="strong") == len(keys)
    assert c.fetch_all(
        "SELECT user_id FROM sh_events WHERE user_id = ANY(%s) ORDER BY user_id LIMIT 2",
        (keys,),
        consistency="strong",
    ) == [(k,) for k in sorted(keys)[:2]]
    with pytest.raises(RoutingError, match="cross-shard read: the window function"):
        c.fetch_all("SELECT user_id, rank() OVER (ORDER BY id) FROM sh_events")
    # A multi-row insert that fails on one group writes on neither.
    clash = [keys[0], keys[0], keys[-1], 999_001]
    with pytest.raises(Exception, match="duplicate key"):
        c.execute(
            "INSERT INTO sh_events (user_id, id, body) VALUES (%s, %s, 'n'), (%s, 999002, 'n'), "
            "(%s, 999003, 'n'), (%s, 999004, 'n')",
            [clash[0], keys[0], clash[2], clash[3], keys[1]],
        )
    assert counts(c) == before
    # Tables the router cannot keep whole on one shard are refused before any DDL runs.
    with pytest.raises(SchemaError, match="PRIMARY KEY"):
        c.create_sharded_table(
            "CREATE TABLE sh_bad (user_id bigint, id bigint PRIMARY KEY)",
            shard_key="user_id",
            family=FAMILY,
        )
    with pytest.raises(SchemaError, match="UNIQUE"):
        c.create_sharded_table(
            "CREATE TABLE sh_bad (user_id bigint PRIMARY KEY, email text UNIQUE)",
            shard_key="user_id",
            family=FAMILY,
        )
    for g in ("g0", "g1"):
        assert rows_on(c, g, "SELECT to_regclass('sh_bad')") == [(None,)]
    with pytest.raises(RoutingError, match="out of range"):
        c.execute("INSERT INTO sh_events (user_id) VALUES (%s)", (2**70,))
    assert counts(c) == before
    # Broadcast writes reach every group.
    assert c.execute("DELETE FROM sh_events WHERE body = 'x'", broadcast=True) == len(keys)
    assert counts(c) == {"g0": 0, "g1": 0}


def test_ids_stay_unique_across_groups(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 50, start=400)
    for _ in range(4):
        values = ", ".join(["(%s)"] * len(keys))
        multi = "INSERT INTO sh_events (user_id) VALUES " + values  # noqa: S608 -- placeholders
        c.execute(multi, keys)
    ids = {g: [r[0] for r in rows_on(c, g, "SELECT id FROM sh_events")] for g in ("g0", "g1")}
    everything = ids["g0"] + ids["g1"]
    assert len(everything) == 200 and len(set(everything)) == 200
    # Each group stamps its own generator number into the low bits.
    generators = {g: {i & 0xFFF for i in v} for g, v in ids.items()}
    assert len(generators["g0"]) == 1 and len(generators["g1"]) == 1
    assert generators["g0"] != generators["g1"]


def test_session_tokens_carry_a_position_per_group(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = keys_on_both(c, 4, start=500)
    with c.session(consistency="read_your_writes") as s:
        for k in keys:
            s.execute("INSERT INTO sh_events (user_id, body) VALUES (%s, 'tok')", (k,))
        assert set(s.token) == {"g0", "g1"}
        for k in keys:
            assert s.fetch_value("SELECT body FROM sh_events WHERE user_id = %s", (k,)) == "tok"


_WATCHER = textwrap.dedent(
    """
    import json, sys, time
    from mlscale import Cluster, parse_config
    from mlscale.config import load_config
    config = load_config(sys.argv[1])
    poll = float(sys.argv[2])
    config = config.model_copy(update={"policies": config.policies.model_copy(
        update={"shard_map_poll_s": poll})})
    with Cluster(config) as c:
        start = c.shards().version
        print(json.dumps({"ready": start}), flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            v = c.shards().version
            if v > start:
                print(json.dumps({"seen": v, "at": time.time()}), flush=True)
                break
            time.sleep(0.005)
    """
)


def _watch(local: LocalCluster, poll_s: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(local.layout.config), str(poll_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert "ready" in json.loads(proc.stdout.readline())
    time.sleep(0.3)  # its monitor is running and listening
    return proc


def _seen(proc: subprocess.Popen[str]) -> float:
    out, _ = proc.communicate(timeout=60)
    return float(json.loads(out.splitlines()[-1])["at"])


def test_another_process_sees_a_new_map_by_notify_within_a_second(
    sharded: Cluster, local_cluster: LocalCluster
) -> None:
    proc = _watch(local_cluster, poll_s=60.0)  # only NOTIFY can tell it in time
    family = KeyFamily.of("sh_notify", "text")
    published = time.time()
    sharded.create_shard_map(SlotMap.even(family, ["g0", "g1"]), reason="notify test")
    assert _seen(proc) - published < 1.0


def test_a_lost_notify_is_made_up_for_by_polling(
    sharded: Cluster, local_cluster: LocalCluster
) -> None:
    proc = _watch(local_cluster, poll_s=1.0)
    silent = SlotMap.even(KeyFamily.of("sh_silent", "int8"), ["g0", "g1"])
    # Published by hand, without the NOTIFY: as if the notification were lost.
    with sharded.connection("control") as conn, conn.transaction():
        conn.execute(
            "INSERT INTO mlscale_catalog.key_families (name, key_types) VALUES (%s, %s)",
            ("sh_silent", ["int8"]),
        )
        conn.execute(
            "INSERT INTO mlscale_catalog.shard_maps (family, version, strategy, spec, reason) "
            "VALUES (%s, 1, 'slots', %s::jsonb, 'silent')",
            ("sh_silent", json.dumps(silent.to_spec())),
        )
        conn.execute("UPDATE mlscale_catalog.sharding_version SET version = version + 1")
    published = time.time()
    waited = _seen(proc) - published
    assert waited < 1.0 + 0.5, waited  # the poll period, plus a monitor round and slack
    assert sharded.refresh_shards().map_of("sh_silent") == silent


def test_scopes_and_transactions_stay_on_their_group(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    k0 = next(k for k in range(600, 700) if c.locate(FAMILY, k) == "g0")
    k1 = next(k for k in range(600, 700) if c.locate(FAMILY, k) == "g1")
    insert = "INSERT INTO sh_events (user_id, body) VALUES (%s, 'scoped')"
    with c.transaction(group="g0") as tx:
        tx.execute(insert, (k0,))
        with pytest.raises(RoutingError, match="lives on shard group g1"):
            tx.execute(insert, (k1,))
    # The refusal came before anything was sent: the transaction went on and
    # committed k0's row, and nothing reached g1.
    assert counts(c) == {"g0": 1, "g1": 0}
    with pytest.raises(RoutingError, match="lives on shard group g1"):
        c.primary("g0").execute(insert, (k1,))
    assert c.group("g1").execute(insert, (k1,)) == 1
    assert (
        c.primary("g1").fetch_value("SELECT count(*) FROM sh_events WHERE user_id = %s", (k1,)) == 1
    )
    with c.session() as s:
        s.execute("SET application_name = 'pinned'")  # pins the session to g0's primary
        assert s.pinned
        with pytest.raises(RoutingError, match="lives on shard group g1"):
            s.execute(insert, (k1,))
        s.execute(insert, (k0,))
    assert counts(c) == {"g0": 2, "g1": 1}


def test_async_cluster_routes_by_key_too(local_cluster: LocalCluster, sharded: Cluster) -> None:
    import asyncio

    from mlscale import AsyncCluster

    clear(sharded)
    keys = keys_on_both(sharded, 8, start=700)

    async def main() -> list[Any]:
        async with AsyncCluster.from_file(local_cluster.layout.config) as ac:
            assert await ac.locate(FAMILY, keys[0]) == sharded.locate(FAMILY, keys[0])
            values = ", ".join(["(%s, 'async')"] * len(keys))
            await ac.execute("INSERT INTO sh_events (user_id, body) VALUES " + values, keys)  # noqa: S608
            await ac.copy(
                "COPY sh_profiles (user_id, name) FROM STDIN", [(k, f"a{k}") for k in keys]
            )
            rows: list[Any] = await ac.fetch_all(
                "SELECT user_id FROM sh_events WHERE user_id = ANY(%s)",
                (keys,),
                consistency="strong",
            )
            return rows

    rows = asyncio.run(main())
    assert sorted(r[0] for r in rows) == keys
    assert assert_placed_by_map(sharded, EVENTS) == len(keys)


def test_shards_and_locate_commands(sharded: Cluster, local_cluster: LocalCluster) -> None:
    config = str(local_cluster.layout.config)

    def mlscale(command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlscale", command, "--config", config, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    shown = mlscale("shards", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    family = doc["families"][FAMILY]
    assert family["strategy"] == "slots" and set(family["tables"]) >= {EVENTS, PROFILES}
    assert sum(family["slot_counts"].values()) == family["slots"] == 4096
    text = mlscale("shards")
    assert f"family {FAMILY} (int8)" in text.stdout and "g0:" in text.stdout
    for key in (0, 42, -7, 2**62):
        located = mlscale("locate", "--family", FAMILY, "--json", "--", str(key))
        assert located.returncode == 0, located.stderr
        answer = json.loads(located.stdout)
        shard_map = sharded.shards().map_of(FAMILY)
        assert answer == {"slot": shard_map.slot(key), "shard_group": shard_map.locate(key)}
    bad = mlscale("locate", "not-a-number", "--family", FAMILY)
    assert bad.returncode != 0 and "not an integer" in bad.stderr
    # One key family: a key needs no --family. Two: it does (the second is this
    # test's own, and forgotten after it).
    only = mlscale("locate", "1")
    assert only.returncode == 0 and "shard group" in only.stdout, only.stderr
    sharded.create_shard_map(SlotMap.even(KeyFamily.of("sh_other", "text"), ["g0", "g1"]))
    ambiguous = mlscale("locate", "1")
    assert ambiguous.returncode != 0 and "--family" in ambiguous.stderr


def _placed_by(cluster: Cluster, table: str, family: str, columns: list[str]) -> int:
    """Rows of ``table`` on each group satisfy that group's predicate of ``family``'s map,
    and no other group's. Row count."""
    shard_map = cluster.shards().map_of(family)
    cols = [sql.Identifier(c) for c in columns]
    total = 0
    for group in ("g0", "g1"):
        query = sql.SQL("SELECT count(*), count(*) FILTER (WHERE {}) FROM {}").format(
            shard_map.predicate(group, cols), sql.Identifier(table)
        )
        ((n, inside),) = rows_on(cluster, group, query)
        assert n == inside, (group, n, inside)
        total += n
    return total


def test_composite_keys_and_other_strategies_route_the_same_way(sharded: Cluster) -> None:
    from mlscale import GeoMap, KeyRange, RangeMap

    c = sharded
    # A composite key (tenant, region), hashed as PostgreSQL's hash_record_extended.
    c.create_shard_map(SlotMap.even(KeyFamily.of("sh_tenant_region", "int8", "text"), ["g0", "g1"]))
    c.create_sharded_table(
        "CREATE TABLE sh_usage (tenant bigint, region text, day int, n int, "
        "PRIMARY KEY (tenant, region, day))",
        shard_key=("tenant", "region"),
        family="sh_tenant_region",
    )
    keys = [(t, r) for t in range(1, 9) for r in ("eu", "us", "ap")]
    assert {c.locate("sh_usage", k) for k in keys} == {"g0", "g1"}
    values = ", ".join(["(%s, %s, 1, 0)"] * len(keys))
    insert = "INSERT INTO sh_usage (tenant, region, day, n) VALUES " + values  # noqa: S608
    c.execute(insert, [v for k in keys for v in k])
    assert _placed_by(c, "sh_usage", "sh_tenant_region", ["tenant", "region"]) == len(keys)
    for tenant, region in keys[:6]:
        assert (
            c.execute(
                "UPDATE sh_usage SET n = n + 1 WHERE tenant = %s AND region = %s", (tenant, region)
            )
            == 1
        )
    with pytest.raises(RoutingError, match="broadcast"):
        c.execute("UPDATE sh_usage SET n = 0 WHERE tenant = %s", (1,))  # half a key

    # Geographic: region -> group, a default for the rest.
    c.create_shard_map(GeoMap.of(KeyFamily.of("sh_geo", "text"), {"eu": "g1", "us": "g0"}, "g0"))
    c.create_sharded_table(
        "CREATE TABLE sh_geo_users (region text, id bigint, PRIMARY KEY (region, id))",
        shard_key="region",
        family="sh_geo",
    )
    rows = [(r, i) for i, r in enumerate(["eu", "us", "ap", "eu", "sa", "eu"])]
    assert c.copy("COPY sh_geo_users (region, id) FROM STDIN", rows) == len(rows)
    assert _placed_by(c, "sh_geo_users", "sh_geo", ["region"]) == len(rows)
    eu = rows_on(c, "g1", "SELECT count(*) FROM sh_geo_users")
    assert eu == [(3,)]

    # Ranges with open ends.
    ranged = RangeMap(
        KeyFamily.of("sh_range", "int8"),
        (KeyRange(None, 1000, "g0"), KeyRange(1000, None, "g1")),
    )
    c.create_shard_map(ranged)
    c.create_sharded_table(
        "CREATE TABLE sh_ranged (k bigint PRIMARY KEY)", shard_key="k", family="sh_range"
    )
    ks = [-5, 0, 999, 1000, 10**12]
    c.execute("INSERT INTO sh_ranged (k) VALUES (%s), (%s), (%s), (%s), (%s)", ks)
    assert _placed_by(c, "sh_ranged", "sh_range", ["k"]) == len(ks)
    assert rows_on(c, "g1", "SELECT k FROM sh_ranged ORDER BY k") == [(1000,), (10**12,)]


def test_ddl_on_sharded_tables(sharded: Cluster) -> None:
    c = sharded
    c.execute("CREATE INDEX sh_events_body ON sh_events (body)", broadcast=True)
    for g in ("g0", "g1"):
        assert rows_on(c, g, "SELECT to_regclass('sh_events_body') IS NOT NULL") == [(True,)]
    with pytest.raises(RoutingError, match="broadcast=True"):
        c.execute("CREATE INDEX sh_events_id ON sh_events (id)")
    with pytest.raises(SchemaError, match="drop_sharded_table"):
        c.execute("DROP TABLE sh_events", broadcast=True)
    with pytest.raises(SchemaError, match="shard key"):
        c.execute("CREATE UNIQUE INDEX sh_events_u ON sh_events (id)", broadcast=True)
    for g in ("g0", "g1"):
        assert rows_on(c, g, "SELECT to_regclass('sh_events_u')") == [(None,)]
    # A family whose tables hold rows cannot be re-placed by a new map (rows would not move).
    grown = SlotMap.even(KeyFamily.of(FAMILY, "int8"), ["g0", "g1"], version=2)
    with pytest.raises(ConfigError, match="online resharding"):
        c.create_shard_map(grown)
    # Reference data every group keeps a copy of: broadcast unsharded DDL and writes.
    c.execute("CREATE TABLE sh_countries (code text PRIMARY KEY)", broadcast=True)
    try:
        c.execute("INSERT INTO sh_countries VALUES ('fr'), ('jp')", broadcast=True)
        for g in ("g0", "g1"):
            assert rows_on(c, g, "SELECT count(*) FROM sh_countries") == [(2,)]
        with pytest.raises(RoutingError, match="broadcast=True is for writes"):
            c.fetch_all("SELECT * FROM sh_countries", broadcast=True)
    finally:
        c.execute("DROP TABLE sh_countries", broadcast=True)


def test_drop_sharded_table_drops_everywhere_then_forgets(sharded: Cluster) -> None:
    c = sharded
    c.create_sharded_table(
        "CREATE TABLE sh_gone (user_id bigint PRIMARY KEY)", shard_key="user_id", family=FAMILY
    )
    c.execute("INSERT INTO sh_gone (user_id) VALUES (%s), (%s)", (1, 2))
    c.drop_sharded_table("sh_gone")
    assert "sh_gone" not in c.refresh_shards().tables
    for g in ("g0", "g1"):
        assert rows_on(c, g, "SELECT to_regclass('sh_gone')") == [(None,)]
    with pytest.raises(RoutingError, match="not a sharded table"):
        c.drop_sharded_table("sh_gone")


def test_a_commit_failing_on_one_group_is_reported_as_partial(sharded: Cluster) -> None:
    """A deferred constraint fails only at COMMIT: the first group has committed by
    then, and the error says so (two-phase commit will close this window)."""
    c = sharded
    c.create_sharded_table(
        "CREATE TABLE sh_deferred (user_id bigint, id int, code int, "
        "PRIMARY KEY (user_id, id), "
        "CONSTRAINT sh_deferred_u UNIQUE (user_id, code) DEFERRABLE INITIALLY DEFERRED)",
        shard_key="user_id",
        family=FAMILY,
    )
    k0 = next(k for k in range(800, 900) if c.locate(FAMILY, k) == "g0")
    k1 = next(k for k in range(800, 900) if c.locate(FAMILY, k) == "g1")
    c.execute("INSERT INTO sh_deferred (user_id, id, code) VALUES (%s, 1, 1)", (k1,))
    with pytest.raises(PartialWriteError) as caught:
        c.execute(
            "INSERT INTO sh_deferred (user_id, id, code) VALUES (%s, 2, 1), (%s, 3, 1)",
            (k0, k1),
        )
    assert caught.value.committed == ("g0",) and caught.value.failed == "g1"
    assert rows_on(c, "g0", "SELECT count(*) FROM sh_deferred") == [(1,)]
    assert rows_on(c, "g1", "SELECT count(*) FROM sh_deferred") == [(1,)]


def test_copy_into_a_sharded_table_inside_a_transaction(sharded: Cluster) -> None:
    c = sharded
    clear(c)
    keys = [k for k in range(900, 1000) if c.locate(FAMILY, k) == "g1"][:5]
    k0 = next(k for k in range(900, 1000) if c.locate(FAMILY, k) == "g0")
    with c.transaction(group="g1") as tx:
        assert tx.copy("COPY sh_events (user_id, body) FROM STDIN", [(k, "tx") for k in keys]) == 5
    assert counts(c) == {"g0": 0, "g1": 5}
    with (
        pytest.raises(RoutingError, match="spans shard groups g0, g1"),
        c.transaction(group="g1") as tx,
    ):
        tx.copy("COPY sh_events (user_id, body) FROM STDIN", [(k0, "x"), (keys[0], "y")])
    assert counts(c) == {"g0": 0, "g1": 5}


def test_an_empty_key_list_runs_in_the_callers_group(sharded: Cluster) -> None:
    c = sharded
    query = "SELECT count(*) FROM sh_events WHERE user_id = ANY(%s)"
    assert c.fetch_value(query, ([],)) == 0
    with c.transaction(group="g1") as tx:
        assert tx.fetch_value(query, ([],)) == 0


@pytest.mark.timeout(180)
def test_concurrent_split_writes_are_counted_whole_and_never_deadlock(sharded: Cluster) -> None:
    """8 threads write batches that span both groups, some doomed by a duplicate on
    one group, while others update the same rows with their keys in opposite orders.
    Counted afterwards on the servers: every acknowledged row once, on its group;
    nothing of a refused batch anywhere; and it all finished (no cross-server deadlock)."""
    import threading

    c = sharded
    clear(c)
    k0 = [k for k in range(10_000, 11_000) if c.locate(FAMILY, k) == "g0"][:8]
    k1 = [k for k in range(10_000, 11_000) if c.locate(FAMILY, k) == "g1"][:8]
    acked: list[tuple[int, int]] = []
    refused: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    conflicts: list[str] = []
    lock = threading.Lock()
    insert = "INSERT INTO sh_events (user_id, id, body) VALUES (%s, %s, 'c'), (%s, %s, 'c')"

    def update(query: str, keys: list[int]) -> None:
        # Rows updated in different orders inside ONE server can deadlock there;
        # PostgreSQL detects that and says so (TransactionConflict: retry), as it
        # would without sharding. What must never happen is a wait no server sees.
        for _ in range(20):
            try:
                c.execute(query, keys)
                return
            except TransactionConflict:
                with lock:
                    conflicts.append(query)
        raise AssertionError("an update kept conflicting")

    def writer(t: int) -> None:
        try:
            for i in range(40):
                row_id = t * 1000 + i
                a, b = k0[t], k1[t]
                if i % 10 == 9:  # a duplicate of this thread's first row on g1: all refused
                    rows = [(a, row_id), (b, t * 1000)]
                    with pytest.raises(IntegrityViolation):
                        c.execute(insert, [v for r in rows for v in r])
                    with lock:
                        refused.append(rows[0])
                    continue
                rows = [(a, row_id), (b, row_id)]
                c.execute(insert, [v for r in rows for v in r])
                with lock:
                    acked.extend(rows)
                # The same two keys, in the thread's own order: both groups, every time.
                keys = [a, b] if t % 2 else [b, a]
                update("UPDATE sh_events SET body = 'u' WHERE user_id IN (%s, %s)", keys)
                shared = [k0[0], k1[0]] if t % 2 else [k1[0], k0[0]]
                update("UPDATE sh_events SET body = 'v' WHERE user_id IN (%s, %s)", shared)
        except BaseException as exc:  # reported below, with the thread's own traceback
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    assert not any(t.is_alive() for t in threads), "writers hung: a cross-server deadlock"
    assert errors == [], errors
    stored = {
        g: {(r[0], r[1]) for r in rows_on(c, g, "SELECT user_id, id FROM sh_events")}
        for g in ("g0", "g1")
    }
    everything = stored["g0"] | stored["g1"]
    assert len(everything) == len(stored["g0"]) + len(stored["g1"])  # no row on both
    assert everything == set(acked)  # each acknowledged row, nothing of a refused batch
    assert not (set(refused) & everything)
    assert assert_placed_by_map(c, EVENTS) == len(acked)


def test_a_read_your_writes_session_writes_across_groups_and_reads_them_back(
    sharded: Cluster,
) -> None:
    """An unpinned session runs a write split over groups as the cluster does, and its
    token then holds a position in every group it committed in."""
    c = sharded
    clear(c)
    k0 = next(k for k in range(1100, 1200) if c.locate(FAMILY, k) == "g0")
    k1 = next(k for k in range(1100, 1200) if c.locate(FAMILY, k) == "g1")
    with c.session(consistency="read_your_writes") as s:
        insert = "INSERT INTO sh_events (user_id, body) VALUES (%s, 'both'), (%s, 'both')"
        assert s.execute(insert, (k0, k1)) == 2
        assert set(s.token) == {"g0", "g1"}
        for k in (k0, k1):
            assert s.fetch_value("SELECT count(*) FROM sh_events WHERE user_id = %s", (k,)) == 1
        s.execute("SET application_name = 'pinned'")  # a pinned session holds one group
        with pytest.raises(RoutingError, match="spans shard groups"):
            s.execute(insert, (k0, k1))
    assert counts(c) == {"g0": 1, "g1": 1}

"""Cross-shard reads on a real 2-group cluster: merged answers, a slot on two groups
during a move counted once, refusals, a lost group (error or marked partial), a
timeout that cancels the groups' queries, and streaming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from mlscale import (
    AsyncCluster,
    Cluster,
    LocalCluster,
    RoutingError,
    ShardGroupError,
)
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.slots import KeyType, slot_of
from mlscale.core.topology import find_node, nodes_of
from mlscale.engine.connect import connect_kwargs
from mlscale.local.tempdirs import reachable_tempdir

FAMILY = "sc_users"
KINDS = ("click", "view", "buy", None)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalCluster]:
    base = reachable_tempdir("mlscale-scatter-")
    cluster = LocalCluster(base / "c")
    try:
        cluster.up(shards=2, replicas=1, redis=False)
        yield cluster
    finally:
        cluster.destroy()


def _rows() -> list[tuple[Any, ...]]:
    return [
        (
            user,
            n,
            Decimal(f"{(user * 7 + n) % 50}.{n % 10}5"),
            float(user % 9) - 2.5,
            KINDS[(user + n) % 4],
        )
        for user in range(1, 121)
        for n in range(3)
    ]


@pytest.fixture(scope="module")
def cluster(local: LocalCluster) -> Iterator[Cluster]:
    with Cluster.from_file(local.layout.config) as c:
        c.create_shard_map(SlotMap.even(KeyFamily.of(FAMILY, "int8"), ["g0", "g1"]))
        c.create_sharded_table(
            "CREATE TABLE sc_events (user_id bigint NOT NULL, id bigint NOT NULL, "
            "amount numeric(12,2), score float8, kind text, PRIMARY KEY (user_id, id))",
            shard_key="user_id",
            family=FAMILY,
        )
        c.create_sharded_table(
            "CREATE TABLE sc_profiles (user_id bigint PRIMARY KEY, country text)",
            shard_key="user_id",
            family=FAMILY,
        )
        c.copy("COPY sc_events (user_id, id, amount, score, kind) FROM STDIN", _rows())
        c.copy(
            "COPY sc_profiles (user_id, country) FROM STDIN",
            [(u, ("fr", "de", "us")[u % 3]) for u in range(1, 121)],
        )
        yield c


STRONG = {"consistency": "strong"}


def test_keyless_reads_return_what_one_server_would(cluster: Cluster) -> None:
    rows = _rows()
    assert cluster.fetch_value("SELECT count(*) FROM sc_events", **STRONG) == len(rows)
    assert cluster.fetch_value("SELECT sum(amount) FROM sc_events", **STRONG) == sum(
        r[2] for r in rows
    )
    by_kind = cluster.fetch_all(
        "SELECT kind, count(*), max(amount) FROM sc_events GROUP BY kind "
        "HAVING count(*) > 1 ORDER BY kind NULLS FIRST",
        **STRONG,
    )
    expected = sorted(
        {
            (k, sum(1 for r in rows if r[4] == k), max(r[2] for r in rows if r[4] == k))
            for k in KINDS
        },
        key=lambda t: (t[0] is not None, t[0] or ""),
    )
    assert by_kind == expected
    page = cluster.fetch_all(
        "SELECT user_id, id FROM sc_events ORDER BY amount DESC, user_id, id LIMIT 4 OFFSET 3",
        **STRONG,
    )
    ordered = sorted(rows, key=lambda r: (-r[2], r[0], r[1]))
    assert page == [(r[0], r[1]) for r in ordered[3:7]]
    named = cluster.fetch_one(
        "SELECT count(*) AS n, avg(score) FROM sc_events", as_dict=True, **STRONG
    )
    assert set(named) == {"n", "avg"} and named["n"] == len(rows)


def test_a_co_located_join_runs_per_group(cluster: Cluster) -> None:
    got = cluster.fetch_all(
        "SELECT p.country, count(*) FROM sc_events e JOIN sc_profiles p "
        "ON p.user_id = e.user_id GROUP BY p.country ORDER BY p.country",
        **STRONG,
    )
    assert got == [("de", 120), ("fr", 120), ("us", 120)]


def test_the_explicit_call_says_which_groups_answered(cluster: Cluster) -> None:
    result = cluster.scatter("SELECT count(*) AS n FROM sc_events WHERE kind = %s", ("buy",))
    assert result.groups == ("g0", "g1") and not result.partial
    assert result.columns == ("n",)
    assert result.rows == [(sum(1 for r in _rows() if r[4] == "buy"),)]
    # Keys on both groups, a read that could be split by key: each group reads its keys.
    users = [1, 2, 3, 4, 5, 6]
    assert {cluster.locate("sc_events", u) for u in users} == {"g0", "g1"}
    keyed = cluster.scatter(
        "SELECT user_id, id FROM sc_events WHERE user_id = ANY(%s)", (users,), consistency="strong"
    )
    assert sorted(keyed.rows) == sorted((r[0], r[1]) for r in _rows() if r[0] in users)
    streamed = list(
        cluster.stream(
            "SELECT user_id, id FROM sc_events WHERE user_id = ANY(%s) ORDER BY user_id, id",
            (users,),
            consistency="strong",
        )
    )
    assert streamed == sorted((r[0], r[1]) for r in _rows() if r[0] in users)


def test_an_async_cluster_merges_the_same(local: LocalCluster) -> None:
    async def main() -> Any:
        async with AsyncCluster.from_file(local.layout.config) as c:
            return await c.fetch_all(
                "SELECT kind, sum(amount) FROM sc_events GROUP BY 1 ORDER BY 2 DESC", **STRONG
            )

    rows = _rows()
    totals = {k: sum(r[2] for r in rows if r[4] == k) for k in KINDS}
    assert asyncio.run(main()) == sorted(totals.items(), key=lambda kv: -kv[1])


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT user_id, rank() OVER (ORDER BY amount) FROM sc_events", "window function"),
        ("SELECT e.id FROM sc_events e JOIN sc_profiles p ON p.user_id = e.id", "shard key"),
        (
            "SELECT count(*) FROM sc_events WHERE user_id IN "
            "(SELECT user_id FROM sc_profiles ORDER BY user_id LIMIT 3)",
            "LIMIT",
        ),
        ("SELECT random() * count(*) FROM sc_events", "volatile"),
    ],
)
def test_what_cannot_be_merged_exactly_is_refused(cluster: Cluster, sql: str, message: str) -> None:
    with pytest.raises(RoutingError, match=message) as caught:
        cluster.fetch_all(sql)
    assert str(caught.value).startswith("cross-shard read: ")


def test_a_user_defined_aggregate_is_refused_not_unioned(
    cluster: Cluster, local: LocalCluster
) -> None:
    cluster.execute(
        "CREATE AGGREGATE sc_product(float8) (SFUNC = float8mul, STYPE = float8)",
        broadcast=True,
    )
    try:
        # Unknown to the classifier, it may write: refused without a shard key.
        with pytest.raises(RoutingError, match="broadcast=True"):
            cluster.fetch_all("SELECT sc_product(score) FROM sc_events")
        # Declared read-only, it reaches the merger, which asks the server what it is.
        config = local.config()
        read_only = ["sc_product", "public.sc_product"]
        routing = config.routing.model_copy(update={"read_only_functions": read_only})
        with Cluster(config.model_copy(update={"routing": routing})) as told:
            with pytest.raises(RoutingError, match="sc_product is an aggregate") as caught:
                told.fetch_all("SELECT kind, sc_product(score) FROM sc_events GROUP BY kind")
            assert str(caught.value).startswith("cross-shard read: ")
            # Qualified or quoted, it is the same aggregate.
            with pytest.raises(RoutingError, match="sc_product is an aggregate"):
                told.fetch_all('SELECT public."sc_product"(score) FROM sc_events')
            # A plain function of the same statement shape is merged as usual.
            rows = told.fetch_all("SELECT count(*), max(abs(score)) FROM sc_events", **STRONG)
            assert rows == [(len(_rows()), max(abs(r[3]) for r in _rows()))]
    finally:
        cluster.execute("DROP AGGREGATE sc_product(float8)", broadcast=True)


def test_a_slot_on_two_groups_during_a_move_is_counted_once(cluster: Cluster) -> None:
    """The rows of one slot of g0 copied to g1 (as a move does before the map switches),
    the move recorded: every group reads only the slots it owns in the map the read
    used. Outside a move the filter is left out (a hash per row)."""
    directory = cluster.refresh_shards()
    shard_map = directory.map_of(FAMILY)
    assert isinstance(shard_map, SlotMap)
    users = [u for u in range(1, 121) if cluster.locate("sc_events", u) == "g0"]
    slot = slot_of(users[0], KeyType.INT8, shard_map.slots)
    moving = [r for r in _rows() if slot_of(r[0], KeyType.INT8, shard_map.slots) == slot]
    assert moving
    unfiltered = cluster.explain_route("SELECT count(*) FROM sc_events").fanout
    assert unfiltered is not None and "hashint8extended" not in unfiltered.queries[0].sql
    move = cluster.begin_move(FAMILY, "test: one slot of g0 copied to g1")
    filtered = cluster.explain_route("SELECT count(*) FROM sc_events").fanout
    assert filtered is not None and all("hashint8extended" in q.sql for q in filtered.queries)
    with (
        cluster.connection(cluster.primary_node("g1")) as conn,
        conn.cursor().copy("COPY sc_events FROM STDIN") as copy,
    ):
        for row in moving:
            copy.write_row(row)
    try:
        rows = _rows()
        assert cluster.fetch_value("SELECT count(*) FROM sc_events", **STRONG) == len(rows)
        assert cluster.fetch_value("SELECT sum(amount) FROM sc_events", **STRONG) == sum(
            r[2] for r in rows
        )
        by_user = cluster.fetch_all(
            "SELECT user_id, count(*) FROM sc_events GROUP BY user_id ORDER BY user_id",
            **STRONG,
        )
        assert by_user == [(u, 3) for u in range(1, 121)]
        # Without the filter the copy would be read twice: it is really there on g1.
        with cluster.connection(cluster.primary_node("g1")) as conn:
            extra = conn.execute(
                "SELECT count(*) FROM sc_events WHERE user_id = ANY(%s)",
                ([r[0] for r in moving],),
            ).fetchone()
        assert extra is not None and extra[0] == len(moving)
    finally:
        with cluster.connection(cluster.primary_node("g1")) as conn:
            conn.execute("DELETE FROM sc_events WHERE user_id = ANY(%s)", ([r[0] for r in moving],))
        cluster.end_move(move)
    assert cluster.refresh_shards().moving == frozenset()


def test_the_always_policy_filters_outside_a_move(cluster: Cluster) -> None:
    """``policies.ownership_filter = "always"`` keeps each group to its own rows on every
    read, with no move open; the answer is the same."""
    config = cluster.config
    always = config.model_copy(
        update={"policies": config.policies.model_copy(update={"ownership_filter": "always"})}
    )
    assert cluster.refresh_shards().moving == frozenset()
    query = "SELECT kind, count(*) FROM sc_events GROUP BY kind ORDER BY kind NULLS LAST"
    with Cluster(always) as filtering:
        fanout = filtering.explain_route(query).fanout
        assert fanout is not None and all("hashint8extended" in q.sql for q in fanout.queries)
        assert filtering.fetch_all(query, **STRONG) == cluster.fetch_all(query, **STRONG)


def test_a_timeout_names_the_group_and_cancels_its_query(
    cluster: Cluster, local: LocalCluster
) -> None:
    locker = psycopg.connect(**_direct_kwargs(cluster, cluster.primary_node("g0")), autocommit=True)
    try:
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE sc_events IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(ShardGroupError, match="g0") as caught:
            cluster.scatter("SELECT count(*) FROM sc_events", consistency="strong", timeout=0.5)
        assert caught.value.groups == ("g0",)
        assert time.monotonic() - started < 3
        # The query that waited on the lock was cancelled on the server.
        for _ in range(100):
            waiting = locker.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'SELECT count(*) FROM%%sc_events%%'"
            ).fetchone()
            if waiting is not None and waiting[0] == 0:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the timed-out group's query still waits on the server")
    finally:
        locker.close()
    assert cluster.fetch_value("SELECT count(*) FROM sc_events", **STRONG) == len(_rows())


def test_a_stopped_group_raises_or_comes_back_partial(
    cluster: Cluster, local: LocalCluster
) -> None:
    rows = _rows()
    on_g1 = [r for r in rows if cluster.locate("sc_events", r[0]) == "g1"]
    local.down(["g0-primary", "g0-replica1"])
    try:
        with pytest.raises(ShardGroupError, match="g0") as caught:
            cluster.fetch_value("SELECT count(*) FROM sc_events")
        assert caught.value.groups == ("g0",)
        result = cluster.scatter("SELECT count(*) FROM sc_events", allow_partial=True)
        assert result.partial and result.missing == ("g0",) and result.groups == ("g1",)
        assert result.rows == [(len(on_g1),)]
        # The first group lost, an aggregate's columns are still the statement's own.
        kinds = cluster.scatter(
            "SELECT kind, count(*) AS n FROM sc_events GROUP BY kind ORDER BY kind",
            allow_partial=True,
        )
        assert kinds.columns == ("kind", "n")
        assert {d["kind"]: d["n"] for d in kinds.as_dicts()} == {
            k: sum(1 for r in on_g1 if r[4] == k) for k in KINDS
        }
    finally:
        local.up()
    for _ in range(100):
        try:
            if cluster.fetch_value("SELECT count(*) FROM sc_events", **STRONG) == len(rows):
                break
        except ShardGroupError:
            time.sleep(0.1)
    else:
        raise AssertionError("the group never came back")


def test_streaming_yields_the_merged_order_and_releases_on_early_exit(
    cluster: Cluster,
) -> None:
    distinct = "SELECT DISTINCT kind FROM sc_events ORDER BY kind"
    assert (
        list(cluster.stream(distinct))
        == cluster.fetch_all(distinct)
        == [(k,) for k in sorted(k for k in KINDS if k)] + [(None,)]
    )
    sql = "SELECT user_id, id, amount FROM sc_events ORDER BY amount DESC, user_id, id"
    whole = cluster.fetch_all(sql, **STRONG)
    streamed = list(cluster.stream(sql, batch_size=7, consistency="strong"))
    assert streamed == whole and len(whole) == len(_rows())
    for _ in range(20):  # leaving early gives the groups' connections back each time
        stream = cluster.stream(sql, batch_size=5)
        first = [row for _, row in zip(range(3), stream, strict=False)]
        stream.close()
        assert first == whole[:3]
    assert cluster.fetch_value("SELECT count(*) FROM sc_events") == len(_rows())


def _direct_kwargs(cluster: Cluster, node: str) -> dict[str, Any]:
    return connect_kwargs(find_node(nodes_of(cluster.config), node), cluster.config)


def test_an_async_stream_and_scatter_match_the_sync_ones(
    cluster: Cluster, local: LocalCluster
) -> None:
    sql = "SELECT kind, user_id, id FROM sc_events ORDER BY kind NULLS FIRST, user_id DESC, id"
    whole = cluster.fetch_all(sql, **STRONG)

    async def main() -> tuple[list[Any], Any]:
        async with AsyncCluster.from_file(local.layout.config) as c:
            rows = [row async for row in c.stream(sql, batch_size=11, consistency="strong")]
            result = await c.scatter(
                "SELECT count(*) FROM sc_events", allow_partial=True, timeout=5
            )
            return rows, result

    rows, result = asyncio.run(main())
    assert rows == whole
    assert result.rows == [(len(_rows()),)] and not result.partial


def test_a_cross_shard_read_is_refused_where_one_group_is_held(cluster: Cluster) -> None:
    with cluster.transaction() as tx, pytest.raises(RoutingError, match="cross-shard read"):
        tx.fetch_all("SELECT count(*) FROM sc_events")
    with pytest.raises(RoutingError, match="run it on the cluster"):
        cluster.group("g1").fetch_all("SELECT count(*) FROM sc_events")
    # A scope without a group fans out on its role: every group's primary.
    assert cluster.primary().fetch_value("SELECT count(*) FROM sc_events") == len(_rows())


def test_explain_route_shows_each_groups_query_and_the_merge(cluster: Cluster) -> None:
    explained = cluster.explain_route(
        "SELECT kind, avg(amount) FROM sc_events WHERE score > %s GROUP BY kind", (0.0,)
    ).to_dict()
    assert explained["groups"] == ["g0", "g1"]
    fanout = explained["fanout"]
    assert fanout["groups"] == ["g0", "g1"]
    assert all(
        "sum(amount)" in text and "count(amount)" in text for text in fanout["group_sql"].values()
    )
    steps = [step["step"] for step in fanout["plan"]["steps"]]
    assert steps[0] == "combine partials per key" and "outputs" in steps

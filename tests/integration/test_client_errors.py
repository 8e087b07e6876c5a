"""A client's mistakes are the client's: usage errors, never a lost node, a ban or a retry.

Against the real 2-group cluster: a statement the driver refuses to send (more than
65,535 parameters) raises QueryError and leaves every replica in rotation; a sharded
IN list of 70,000 keys runs (sent as one array parameter); COPY honours its FORMAT
(binary and csv, both ways) or refuses it before anything is sent.
"""

# ruff: noqa: S608 -- the statements are composed of placeholders and constant names

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from typing import Any

import pytest

from mlscale import Cluster, NodeUnavailableError, QueryError, RoutingError
from mlscale.core.shardmaps import KeyFamily, SlotMap

FAMILY = "ce_users"
N = 70_000  # past the protocol's 65,535 parameters per statement


def error_bans(cluster: Cluster) -> dict[str, str]:
    return {n: b.reason for n, b in cluster.stats().bans.items() if b.kind == "error"}


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


@pytest.fixture()
def items(cluster: Cluster) -> Iterator[str]:
    """An unsharded table on g0 with a generated column (COPY without a column
    list skips it)."""
    p = cluster.primary("g0")
    p.execute("DROP TABLE IF EXISTS ce_items")
    p.execute(
        "CREATE TABLE ce_items (id bigint PRIMARY KEY, name text, amount numeric, "
        "at timestamptz, tags int4[], twice bigint GENERATED ALWAYS AS (id * 2) STORED)"
    )
    try:
        yield "ce_items"
    finally:
        p.execute("DROP TABLE IF EXISTS ce_items")


@pytest.fixture()
def sharded(cluster: Cluster, sharding_restored: None) -> Cluster:
    """ce_events sharded on user_id (int8) over g0 and g1; gone after the test."""
    cluster.create_shard_map(SlotMap.even(KeyFamily.of(FAMILY, "int8"), ["g0", "g1"]), reason="t")
    cluster.create_sharded_table(
        "CREATE TABLE ce_events (user_id bigint NOT NULL, body text, at timestamptz, "
        "PRIMARY KEY (user_id))",
        shard_key="user_id",
        family=FAMILY,
    )
    return cluster


# -- more parameters than the protocol takes ---------------------------------------------------


def test_too_many_parameters_is_a_usage_error_with_no_ban_and_no_retry(cluster: Cluster) -> None:
    query = f"SELECT count(*) FROM generate_series(1, 3) AS s(n) WHERE n IN ({placeholders(N)})"
    params = list(range(N))
    bans, retries = error_bans(cluster), cluster.stats().reads.retries
    # An eventual read runs on a replica: before, the replica was banned for it and
    # the read retried on the primary, where it failed as "lost node g0-primary".
    for call in (
        lambda: cluster.fetch_value(query, params, consistency="eventual"),
        lambda: cluster.replica("g1").fetch_value(query, params),
        lambda: cluster.primary("g0").fetch_value(query, params),
        lambda: cluster.execute(f"SELECT 1 WHERE 1 IN ({placeholders(N)})", params),
    ):
        with pytest.raises(QueryError) as caught:
            call()
        assert not isinstance(caught.value, NodeUnavailableError)
        assert "65535" in str(caught.value) and "= ANY(%s)" in str(caught.value)
        assert "lost node" not in str(caught.value)
    assert error_bans(cluster) == bans
    assert cluster.stats().reads.retries == retries
    # The same list as one array parameter is fine, and every node still serves.
    assert (
        cluster.fetch_value(
            "SELECT count(*) FROM generate_series(1, 3) AS s(n) WHERE n = ANY(%s)", [params]
        )
        == 3
    )
    assert cluster.replica("g0").fetch_value("SELECT 1") == 1


def test_too_many_parameters_leaves_a_transaction_usable(cluster: Cluster) -> None:
    with cluster.transaction() as tx:
        with pytest.raises(QueryError, match="refused by the driver"):
            tx.fetch_value(f"SELECT 1 WHERE 1 IN ({placeholders(N)})", list(range(N)))
        assert tx.fetch_value("SELECT 2") == 2  # nothing reached the server


# -- a long sharded IN list ----------------------------------------------------------------------


def keys_on(cluster: Cluster, group: str, n: int) -> list[int]:
    keys: list[int] = []
    k = 0
    while len(keys) < n:
        if cluster.locate(FAMILY, k) == group:
            keys.append(k)
        k += 1
    return keys


def test_an_in_list_of_70k_keys_on_one_group_returns_its_rows(sharded: Cluster) -> None:
    c = sharded
    keys = keys_on(c, "g0", N)
    assert c.copy("COPY ce_events (user_id, body) FROM STDIN", [(k, f"b{k}") for k in keys]) == N
    # Strong reads: a replica may not have replayed the rows just written.
    rows = c.fetch_all(
        f"SELECT user_id, body FROM ce_events WHERE user_id IN ({placeholders(N)})",
        keys,
        consistency="strong",
    )
    assert sorted(rows) == [(k, f"b{k}") for k in keys]
    # Spread over both groups (each gets its own array) and as a write.
    mixed = keys[: N // 2] + keys_on(c, "g1", N // 2)
    c.copy("COPY ce_events (user_id, body) FROM STDIN", [(k, "g1") for k in mixed[N // 2 :]])
    both = c.fetch_all(
        f"SELECT user_id FROM ce_events WHERE user_id IN ({placeholders(N)})",
        mixed,
        consistency="strong",
    )
    assert sorted(k for (k,) in both) == sorted(mixed)
    deleted = c.execute(f"DELETE FROM ce_events WHERE user_id IN ({placeholders(N)})", mixed)
    assert deleted == N
    left = "SELECT count(*) FROM ce_events WHERE user_id = %s"
    assert c.fetch_value(left, (keys[-1],), consistency="strong") == 1


# -- COPY formats -------------------------------------------------------------------------------

UTC = datetime.UTC
ROWS = [
    (
        1,
        "plain",
        decimal.Decimal("1.5"),
        datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        [1, 2],
    ),
    (2, 'a,b "quoted" \\ back\nslash', None, None, None),
    (3, "", decimal.Decimal("-2"), None, []),
    (4, "\\.", None, None, [None, 3]),
    (5, "NULL", decimal.Decimal("0"), None, [7]),
]
COLUMNS = "id, name, amount, at, tags"


def as_text(cluster: Cluster) -> list[tuple[str | None, ...]]:
    """The rows of ce_items as the server prints them (text and csv COPY TO give these)."""
    return cluster.primary("g0").fetch_all(
        "SELECT id::text, name, amount::text, at::text, tags::text FROM ce_items ORDER BY id"
    )


@pytest.mark.parametrize(
    "options",
    [
        "WITH (FORMAT binary)",
        "WITH (FORMAT csv)",
        "WITH CSV",
        "WITH (FORMAT csv, DELIMITER ';', NULL 'NULL', QUOTE '''', ESCAPE '\\')",
        "",
    ],
)
@pytest.mark.parametrize("column_list", [True, False], ids=["columns", "all"])
def test_copy_round_trips_in_its_format(
    cluster: Cluster, items: str, options: str, column_list: bool
) -> None:
    p = cluster.primary("g0")
    columns = f"({COLUMNS})" if column_list else ""
    assert p.copy(f"COPY ce_items {columns} FROM STDIN {options}", ROWS) == len(ROWS)
    assert p.fetch_all(f"SELECT {COLUMNS} FROM ce_items ORDER BY id") == ROWS
    assert p.fetch_all("SELECT twice FROM ce_items ORDER BY id") == [(2 * r[0],) for r in ROWS]
    out = p.copy(f"COPY (SELECT {COLUMNS} FROM ce_items ORDER BY id) TO STDOUT {options}")
    table_out = p.copy(f"COPY ce_items {columns} TO STDOUT {options}")
    if "binary" in options:
        assert out == ROWS and sorted(table_out) == ROWS
    else:
        text = as_text(cluster)
        assert out == text
        assert sorted(table_out, key=lambda r: int(r[0] or 0)) == text
        assert text[1][1] == ROWS[1][1] and text[2][1] == "" and text[1][2] is None


def test_binary_and_csv_copy_into_a_sharded_table(sharded: Cluster) -> None:
    c = sharded
    at = datetime.datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    binary = [(k, f"bin-{k}", at) for k in range(1, 41)]
    csv = [(k, f'csv, "{k}"\n', None) for k in range(41, 81)]
    assert c.copy("COPY ce_events (user_id, body, at) FROM STDIN (FORMAT binary)", binary) == 40
    assert c.copy("COPY ce_events (user_id, body, at) FROM STDIN WITH CSV", csv) == 40
    rows = c.fetch_all(
        "SELECT user_id, body, at FROM ce_events WHERE user_id = ANY(%s)",
        [list(range(1, 81))],
        consistency="strong",  # a replica may not have replayed the rows just copied
    )
    assert sorted(rows) == binary + csv
    assert {c.locate(FAMILY, k) for k, _, _ in rows} == {"g0", "g1"}


@pytest.mark.parametrize(
    ("statement", "rows", "message"),
    [
        (
            "COPY ce_items (id, name) FROM STDIN (FORMAT csv, HEADER)",
            [(1, "a")],
            "leave HEADER out",
        ),
        ("COPY ce_items (id, name) FROM STDIN (DELIMITER ',')", [(1, "a")], "use FORMAT csv"),
        ("COPY ce_items (id, name) FROM STDIN (ENCODING 'LATIN1')", [(1, "a")], "ENCODING"),
        ("COPY ce_items TO STDOUT", [(1, "a")], "without rows"),
    ],
)
def test_copy_options_it_cannot_honour_are_refused_before_anything_is_sent(
    cluster: Cluster, items: str, statement: str, rows: Any, message: str
) -> None:
    with pytest.raises(RoutingError, match=message):
        cluster.copy(statement, rows)
    assert cluster.primary("g0").fetch_value("SELECT count(*) FROM ce_items") == 0


def test_binary_copy_of_a_type_without_a_binary_adapter_is_refused(cluster: Cluster) -> None:
    p = cluster.primary("g0")
    p.execute("DROP TABLE IF EXISTS ce_moods")
    p.execute("DROP TYPE IF EXISTS ce_mood")
    p.execute("CREATE TYPE ce_mood AS ENUM ('ok', 'sad')")
    p.execute("CREATE TABLE ce_moods (id int PRIMARY KEY, mood ce_mood)")
    try:
        with pytest.raises(RoutingError, match="column mood of type ce_mood"):
            p.copy("COPY ce_moods FROM STDIN (FORMAT binary)", [(1, "ok")])
        assert p.copy("COPY ce_moods FROM STDIN (FORMAT csv)", [(1, "ok")]) == 1
        assert p.copy("COPY ce_moods TO STDOUT (FORMAT csv)") == [("1", "ok")]
    finally:
        p.execute("DROP TABLE IF EXISTS ce_moods")
        p.execute("DROP TYPE IF EXISTS ce_mood")

"""A client's mistakes are the client's: usage errors, never a lost node, a ban or a retry.

Against the real 2-group cluster: a statement the driver refuses to send (more than
65,535 parameters) raises QueryError and leaves every replica in rotation; a sharded
IN list of 70,000 keys runs (sent as one array parameter).
"""

# ruff: noqa: S608 -- the statements are composed of placeholders and constant names

from __future__ import annotations

import pytest

from mlscale import Cluster, NodeUnavailableError, QueryError
from mlscale.core.shardmaps import KeyFamily, SlotMap

FAMILY = "ce_users"
N = 70_000  # past the protocol's 65,535 parameters per statement


def error_bans(cluster: Cluster) -> dict[str, str]:
    return {n: b.reason for n, b in cluster.stats().bans.items() if b.kind == "error"}


def placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


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
    rows = c.fetch_all(
        f"SELECT user_id, body FROM ce_events WHERE user_id IN ({placeholders(N)})", keys
    )
    assert sorted(rows) == [(k, f"b{k}") for k in keys]
    # Spread over both groups (each gets its own array) and as a write.
    mixed = keys[: N // 2] + keys_on(c, "g1", N // 2)
    c.copy("COPY ce_events (user_id, body) FROM STDIN", [(k, "g1") for k in mixed[N // 2 :]])
    both = c.fetch_all(f"SELECT user_id FROM ce_events WHERE user_id IN ({placeholders(N)})", mixed)
    assert sorted(k for (k,) in both) == sorted(mixed)
    deleted = c.execute(f"DELETE FROM ce_events WHERE user_id IN ({placeholders(N)})", mixed)
    assert deleted == N
    assert c.fetch_value("SELECT count(*) FROM ce_events WHERE user_id = %s", (keys[-1],)) == 1

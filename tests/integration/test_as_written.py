"""Statements as written on one group: cluster.as_written(g), transaction(as_written=True),
COPY of an encoded payload, binary results."""

from __future__ import annotations

import struct

import pytest

from mlscale import Cluster, KeyFamily, RoutingError, SlotMap

pytestmark = pytest.mark.integration


def _payload(rows: list[tuple[int, int]]) -> bytes:
    """A binary COPY payload of (bigint, bigint) rows."""
    out = bytearray(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
    for a, b in rows:
        out += struct.pack(">hiqiq", 2, 8, a, 8, b)
    return bytes(out + struct.pack(">h", -1))


def test_a_group_reads_and_writes_its_own_rows_as_written(
    cluster: Cluster, sharding_restored: None
) -> None:
    groups = [g.name for g in cluster.config.shard_groups]
    cluster.create_shard_map(SlotMap.even(KeyFamily.of("aw", "int8"), groups))
    cluster.create_sharded_table(
        "CREATE TABLE aw_items (k bigint PRIMARY KEY, v bigint NOT NULL)",
        shard_key="k",
        family="aw",
    )
    keys = list(range(200))
    cluster.copy("COPY aw_items (k, v) FROM STDIN", [(k, k * 10) for k in keys])
    # Routed by the key, a keyless read on one group is refused; as written it is
    # that group's own rows, and the groups' rows add up to the table.
    with pytest.raises(RoutingError):
        cluster.group(groups[0]).fetch_value("SELECT count(*) FROM aw_items")
    counts = {
        g: cluster.as_written(g).fetch_value("SELECT count(*) FROM aw_items", consistency="strong")
        for g in groups
    }
    assert sum(counts.values()) == len(keys)
    assert all(n > 0 for n in counts.values())
    for g in groups:
        owned = cluster.as_written(g).fetch_all("SELECT k FROM aw_items", consistency="strong")
        assert all(cluster.locate("aw_items", k) == g for (k,) in owned)

    # A transaction as written: a staging table, a payload COPY, an upsert with no key
    # in sight; the token it returns reads the rows back from a replica.
    g = groups[0]
    mine = [k for k in range(1000, 1100) if cluster.locate("aw_items", k) == g]
    with cluster.transaction(group=g, as_written=True) as tx:
        tx.execute("CREATE TEMP TABLE aw_stage (k bigint, v bigint) ON COMMIT DROP")
        copied = tx.copy(
            "COPY aw_stage (k, v) FROM STDIN (FORMAT binary)", _payload([(k, 7) for k in mine])
        )
        assert copied == len(mine)
        tx.execute("INSERT INTO aw_items SELECT k, v FROM aw_stage")
    assert tx.token is not None
    got = cluster.as_written(g).fetch_value(
        "SELECT count(*) FROM aw_items WHERE v = 7", token=tx.token
    )
    assert got == len(mine)
    # The router sees them too, each on its own group.
    assert cluster.fetch_value(
        "SELECT count(*) FROM aw_items WHERE k >= 1000", consistency="strong"
    ) == len(mine)


def test_binary_results_give_bytea_as_bytes(cluster: Cluster) -> None:
    row = cluster.fetch_one("SELECT '\\x0102ff'::bytea, 5::int8, 'x'::text", binary=True)
    assert row == (b"\x01\x02\xff", 5, "x")
    text = cluster.fetch_one("SELECT '\\x0102ff'::bytea, 5::int8, 'x'::text")
    assert text == row

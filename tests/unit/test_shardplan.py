"""Where a statement on sharded tables runs: plans and refusals, without servers."""

from __future__ import annotations

from typing import Any

import pytest

from mlscale.core.keyroute import KeyReader, ShardedTable
from mlscale.core.sharding import ShardDirectory
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.shardplan import NO_KEY, plan, split_copy_rows
from mlscale.errors import RoutingError

GROUPS = ("g0", "g1")
USERS = SlotMap.even(KeyFamily.of("users", "int8"), GROUPS)
EVENTS = ShardedTable("events", ("user_id",), "users")
DIRECTORY = ShardDirectory(1, {"users": USERS}, {"events": EVENTS})
ROUTER = KeyReader(DIRECTORY.tables, table_columns={"events": ("user_id", "id", "body")})
K0 = next(k for k in range(100) if USERS.locate(k) == "g0")
K1 = next(k for k in range(100) if USERS.locate(k) == "g1")


def run(sql: str, params: Any = None, *, write: bool, **kw: Any) -> Any:
    return plan(
        ROUTER.read(sql, params), DIRECTORY, sql, params, write=write, all_groups=GROUPS, **kw
    )


def test_unsharded_statements_route_as_before() -> None:
    assert run("SELECT 1", write=False) is None
    assert run("INSERT INTO other VALUES (1)", write=True) is None


def test_one_key_one_part_with_the_text_unchanged() -> None:
    sql = "SELECT * FROM events WHERE user_id = %s"
    p = run(sql, (K1,), write=False)
    assert p.groups == ("g1",)
    assert p.parts[0].sql == sql and p.parts[0].params == (K1,)


def test_keys_on_two_groups_split() -> None:
    p = run("SELECT * FROM events WHERE user_id = ANY(%s)", ([K0, K1],), write=False)
    assert sorted(p.groups) == ["g0", "g1"]
    by_group = {part.group: part.params for part in p.parts}
    assert by_group["g0"] == ([K0],) and by_group["g1"] == ([K1],)
    rows = run("INSERT INTO events (user_id) VALUES (%s), (%s)", (K0, K1), write=True)
    assert sorted(rows.groups) == ["g0", "g1"]


@pytest.mark.parametrize(
    ("sql", "params", "write", "kw", "message"),
    [
        ("DELETE FROM events WHERE body = 'x'", None, True, {}, "broadcast=True"),
        ("SELECT * FROM events", None, False, {"broadcast": True}, "broadcast=True is for"),
        ("UPDATE events SET user_id = 1 WHERE user_id = %s", (K0,), True, {}, "shard key"),
        (
            "UPDATE events SET body = 'x' WHERE user_id = %s",
            (K0,),
            True,
            {"shard_key": K1},
            "places the statement on g1",
        ),
        ("DELETE FROM events", None, True, {"broadcast": True, "shard_key": 1}, "not both"),
        ("ALTER TABLE events ADD COLUMN x int", None, True, {}, "broadcast=True"),
    ],
)
def test_refusals(sql: str, params: Any, write: bool, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(RoutingError, match=message):
        run(sql, params, write=write, **kw)


def test_explicit_keys_and_broadcasts() -> None:
    p = run("UPDATE events SET body = 'x' WHERE body = 'y'", write=True, shard_key=K1)
    assert p.groups == ("g1",)
    p = run("SELECT my_function()", write=True, shard_key=K0)
    assert p.groups == ("g0",)
    assert run("DELETE FROM events", write=True, broadcast=True).groups == GROUPS
    assert run("ALTER TABLE events ADD COLUMN x int", write=True, broadcast=True).groups == GROUPS
    assert run("CREATE TABLE countries (c text)", write=True, broadcast=True).groups == GROUPS
    assert run("SELECT 1", write=False, shard_key=NO_KEY) is None


def test_copy_rows_split_by_slot_and_checked() -> None:
    routed = ROUTER.read("COPY events (user_id, body) FROM STDIN")
    rows = [(k, f"r{k}") for k in range(200)]
    p = split_copy_rows(routed, DIRECTORY, "COPY events (user_id, body) FROM STDIN", rows)
    assert sorted(p.groups) == ["g0", "g1"]
    for part in p.parts:
        assert all(USERS.locate(r[0]) == part.group for r in part.params)
    assert sum(len(part.params) for part in p.parts) == 200
    with pytest.raises(RoutingError, match="has 1 values"):
        split_copy_rows(routed, DIRECTORY, "COPY", [(1,)])


def test_unmergeable_reads_are_refused_even_when_classified_as_writes() -> None:
    # FOR UPDATE makes the classifier call it a write; its rows still need merging.
    with pytest.raises(RoutingError, match="a write is split by key"):
        run(
            "SELECT * FROM events WHERE user_id = ANY(%s) ORDER BY id LIMIT 1 FOR UPDATE",
            ([K0, K1],),
            write=True,
        )


def test_reads_that_need_merging_become_merged_plans() -> None:
    # No key: every group of the map, the statement whole on each, merged.
    keyless = run("SELECT * FROM events", None, write=False)
    assert keyless.merged and keyless.groups == GROUPS and keyless.directory is DIRECTORY
    assert all(part.sql == "SELECT * FROM events" for part in keyless.parts)
    # Keys on several groups but an aggregate: only those groups, the statement whole.
    counted = run("SELECT count(*) FROM events WHERE user_id = ANY(%s)", ([K0, K1],), write=False)
    assert counted.merged and counted.groups == GROUPS
    assert all(part.params == ([K0, K1],) for part in counted.parts)
    # Keys on one group: no merge needed.
    one = run("SELECT count(*) FROM events WHERE user_id = %s", (K0,), write=False)
    assert not one.merged and len(one.parts) == 1


def test_parts_come_in_the_clusters_group_order_whatever_the_key_order() -> None:
    # Every multi-group write takes its groups in one order: no cross-server deadlock.
    for keys in ([K0, K1], [K1, K0]):
        p = run("DELETE FROM events WHERE user_id = ANY(%s)", (keys,), write=True)
        assert p.groups == GROUPS
        values = "INSERT INTO events (user_id) VALUES (%s), (%s)"
        assert run(values, tuple(keys), write=True).groups == GROUPS
    routed = ROUTER.read("COPY events (user_id) FROM STDIN")
    p = split_copy_rows(routed, DIRECTORY, "COPY", [(K1,), (K0,)], GROUPS)
    assert p.groups == GROUPS


def _items(n: int) -> str:
    return ", ".join(["%s"] * n)


def test_seventy_thousand_keys_on_one_group_are_one_array_parameter() -> None:
    keys = [k for k in range(200_000) if USERS.locate(k) == "g0"][:70_000]
    sql = "SELECT user_id FROM events WHERE user_id IN (LIST)".replace("LIST", _items(len(keys)))
    p = run(sql, keys, write=False)
    (part,) = p.parts
    assert part.group == "g0"
    assert part.sql == "SELECT user_id FROM events WHERE user_id = ANY(CAST(%s AS int8[]))"
    assert part.params == (keys,)


def test_seventy_thousand_keys_on_two_groups_are_an_array_each() -> None:
    keys = list(range(70_000))
    sql = "DELETE FROM events WHERE user_id IN (LIST)".replace("LIST", _items(len(keys)))
    p = run(sql, keys, write=True)
    assert p.groups == GROUPS
    by_group = {part.group: part for part in p.parts}
    for group, part in by_group.items():
        assert part.sql == "DELETE FROM events WHERE user_id = ANY(CAST(%s AS int8[]))"
        (values,) = part.params
        assert values == [k for k in keys if USERS.locate(k) == group]

"""Planning a read from a directory and described columns (no servers)."""

from __future__ import annotations

import pytest

from mlscale.core.copydecode import Kind
from mlscale.core.keyroute.results import ShardedTable
from mlscale.core.sharding import ShardDirectory
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.training.columns import Column
from mlscale.core.training.plan import Request, locate, plan_read
from mlscale.core.training.position import Position
from mlscale.core.training.units import Split
from mlscale.errors import ConfigError, RoutingError

MAP = SlotMap.even(KeyFamily.of("users", "int8"), ["g0", "g1"])
DIRECTORY = ShardDirectory(1, {"users": MAP}, {
    "events": ShardedTable("events", ("user_id",), "users"),
    "extra": ShardedTable("extra", ("user_id",), "users"),
})
DESCRIBED = [Column("user_id", Kind.INT8, False), Column("seq", Kind.INT4, False),
             Column("x", Kind.FLOAT4), Column("note", Kind.TEXT)]


def test_a_table_is_ordered_by_its_primary_key_which_is_read_too() -> None:
    request = Request(table="events", columns=("x",), split=Split(1, 2, 2, 3))
    shard_map, keys, refs = locate(request, DIRECTORY)
    plan = plan_read(request, shard_map, keys, refs, DESCRIBED, ("user_id", "seq"))
    assert [c.name for c in plan.columns] == ["x"]
    assert [c.name for c in plan.read_columns] == ["x", "user_id", "seq"]
    assert plan.source.order_by == ("user_id", "seq") and plan.fast
    assert len(plan.units) == 32 and len(plan.mine) == 32 // 6 + (5 < 32 % 6)


def test_a_query_is_ordered_by_its_shard_key_and_checked_for_fanout() -> None:
    request = Request(query="SELECT e.user_id, e.x FROM events e JOIN extra x "
                      "ON x.user_id = e.user_id", shard_key=("user_id",))
    _, keys, refs = locate(request, DIRECTORY)
    assert keys == ("user_id",) and len(refs) == 2
    with pytest.raises(RoutingError):
        locate(Request(query="SELECT 1", shard_key=("id",)), DIRECTORY)
    with pytest.raises(ConfigError, match="key column"):
        locate(Request(query="SELECT user_id FROM events", shard_key=("a", "b")), DIRECTORY)


def test_refusals() -> None:
    request = Request(table="events")
    args = locate(request, DIRECTORY)
    with pytest.raises(ConfigError, match="no primary key"):
        plan_read(request, *args, DESCRIBED, ())
    with pytest.raises(ConfigError, match="no column 'nope' to read"):
        plan_read(Request(table="events", columns=("nope",)), *args, DESCRIBED, ("seq",))
    with pytest.raises(ConfigError, match="resume with the same"):
        plan_read(Request(table="events", seed=1, start=Position(0, 1, 8, None)), *args,
                  DESCRIBED, ("seq",))



def test_only_array_columns_send_a_read_row_by_row() -> None:
    request = Request(table="events")
    args = locate(request, DIRECTORY)
    assert plan_read(request, *args, DESCRIBED, ("seq",)).fast  # text: an array_agg
    vec = [*DESCRIBED, Column("emb", Kind.FLOAT4_ARRAY)]
    assert not plan_read(request, *args, vec, ("seq",)).fast

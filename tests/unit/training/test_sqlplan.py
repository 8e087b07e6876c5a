"""The SQL of a unit's piece, and the order rows are put in."""

from __future__ import annotations

import numpy as np

from mlscale.core.copydecode import Kind
from mlscale.core.keyroute.results import ShardedTable
from mlscale.core.scatter.ownership import check_fanout
from mlscale.core.shardmaps import KeyFamily, SlotMap
from mlscale.core.training.columns import Column, aggregated, select_list
from mlscale.core.training.sqlplan import Source, piece_sql, row_order
from mlscale.core.training.units import Piece

FAMILY = KeyFamily.of("users", "int8")
MAP = SlotMap.even(FAMILY, ["g0", "g1"])
COLUMNS = (Column("id", Kind.INT8, False), Column("x", Kind.FLOAT4))


def test_a_table_piece_reads_its_slots_as_arrays_without_a_server_sort() -> None:
    text = piece_sql(Source(("id",), ("id",), table="events"), COLUMNS, Piece("g0", 0, 255),
                     MAP, 4096)
    assert text.startswith(
        "COPY (SELECT string_agg(int8send(\"q\".\"id\"), ''::bytea), "
        "string_agg(float4send(coalesce(\"q\".\"x\", 0::float4)), ''::bytea), "
    )
    # x's NULLs as the primary keys of its NULL rows
    nulls = "string_agg(int8send(\"q\".\"id\"), ''::bytea) FILTER (WHERE \"q\".\"x\" IS NULL)"
    assert nulls in text
    assert "BETWEEN 0 AND 255" in text and "ORDER BY" not in text
    assert "current_schema() IS NOT NULL" in text  # no parallel plan
    assert text.endswith("TO STDOUT (FORMAT binary)")


def test_a_query_piece_sends_nulls_as_masks() -> None:
    query = "SELECT id, x FROM events"
    tables = {"events": ShardedTable("events", ("id",), "users")}
    fan = check_fanout(query, tables)
    text = piece_sql(Source(("id",), ("id",), query=query, refs=fan.refs), COLUMNS,
                     Piece("g0", 0, 255), MAP, 4096)
    assert "string_agg(int8send((CAST(\"q\".\"x\" IS NULL AS int4)::int8 << 0)), ''::bytea)" in text
    assert "FILTER" not in text


def test_a_query_piece_filters_every_sharded_table_it_reads() -> None:
    tables = {"a": ShardedTable("a", ("id",), "users"), "b": ShardedTable("b", ("uid",), "users")}
    query = "SELECT a.id, a.x, b.y FROM a JOIN b ON b.uid = a.id"
    fan = check_fanout(query, tables)
    text = piece_sql(Source(("id",), ("id",), query=query, refs=fan.refs), COLUMNS,
                     Piece("g1", 2048, 2303), MAP, 4096)
    assert text.count("BETWEEN 2048 AND 2303") == 2  # in a and in b
    assert "hashint8extended(CAST(uid AS int8), 0)" in text


def test_a_map_without_slots_adds_its_own_predicate() -> None:
    text = piece_sql(Source(("id",), ("id",), table="t"), COLUMNS,
                     Piece("g0", 0, 4095, by_map=True), MAP, 4096)
    assert text.count("BETWEEN") == 2


def test_array_columns_are_read_row_by_row() -> None:
    cols = (Column("v", Kind.FLOAT4_ARRAY), Column("n", Kind.OTHER))
    assert not aggregated(cols)
    assert select_list(cols, "q").as_string(None) == '"q"."v", CAST("q"."n" AS text)'
    assert select_list(COLUMNS[:1], "q").as_string(None) == (
        "string_agg(int8send(\"q\".\"id\"), ''::bytea)"
    )
    texts = (Column("s", Kind.TEXT), Column("n", Kind.OTHER))
    assert select_list(texts, "q").as_string(None) == (
        'array_agg("q"."s"), array_agg(CAST("q"."n" AS text))'
    )


def test_row_order_sorts_by_the_order_columns() -> None:
    first = np.array([3, 1, 3, 1])
    keys = np.array(["b", "z", "a", "y"], dtype=object)
    both, one = row_order([first, keys]), row_order([np.array([5, 2, 9])])
    assert both is not None and both.tolist() == [3, 1, 2, 0]
    assert one is not None and one.tolist() == [1, 0, 2]


def test_rows_already_in_order_are_not_moved() -> None:
    assert row_order([np.array([1, 2, 7])]) is None
    assert row_order([np.array([], dtype=np.int64)]) is None

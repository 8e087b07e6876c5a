"""Which CREATE TABLEs can be sharded, and the errors for those that cannot."""

from __future__ import annotations

import pytest

from mlscale.core.keyroute import ShardedTable
from mlscale.core.shardschema import check_sharded_ddl, check_sharded_table
from mlscale.core.slots import KeyType
from mlscale.errors import SchemaError

I8 = (KeyType.INT8,)

ACCEPTED = [
    ("CREATE TABLE t (user_id bigint, id bigint, PRIMARY KEY (user_id, id))", ("user_id",), I8),
    ("CREATE TABLE t (user_id int PRIMARY KEY, v text)", ("user_id",), I8),
    ("CREATE TABLE t (user_id bigserial PRIMARY KEY)", ("user_id",), I8),
    (
        "CREATE TABLE t (u bigint, e text, PRIMARY KEY (u), UNIQUE (u, e),"
        " EXCLUDE USING btree (u WITH =))",
        ("u",),
        I8,
    ),
    ("CREATE TABLE t (name varchar(40) PRIMARY KEY)", ("name",), (KeyType.TEXT,)),
    (
        "CREATE TABLE t (a int, b text, c int, PRIMARY KEY (a, b, c))",
        ("a", "b"),
        (KeyType.INT8, KeyType.TEXT),
    ),
    ("CREATE TABLE app.t (k uuid PRIMARY KEY)", ("k",), (KeyType.UUID,)),
]

REFUSED = [
    ("CREATE TABLE t (user_id bigint, id bigint PRIMARY KEY)", ("user_id",), I8, "PRIMARY KEY"),
    ("CREATE TABLE t (user_id bigint, v text)", ("user_id",), I8, "needs a PRIMARY KEY"),
    (
        "CREATE TABLE t (user_id bigint PRIMARY KEY, email text UNIQUE)",
        ("user_id",),
        I8,
        r"UNIQUE \(email\) does not contain the shard key",
    ),
    (
        "CREATE TABLE t (u bigint PRIMARY KEY, e text, CONSTRAINT one_e UNIQUE (e))",
        ("u",),
        I8,
        "UNIQUE one_e",
    ),
    ("CREATE TABLE t (u text PRIMARY KEY)", ("u",), I8, "is text but its key family hashes int8"),
    ("CREATE TABLE t (u numeric PRIMARY KEY)", ("u",), I8, "cannot be hashed"),
    ("CREATE TABLE t (u bigint PRIMARY KEY)", ("v",), I8, "not a column"),
    ("CREATE TEMP TABLE t (u bigint PRIMARY KEY)", ("u",), I8, "temporary"),
    ("CREATE TABLE t (LIKE other)", ("u",), I8, "LIKE"),
    ("CREATE TABLE t (u bigint PRIMARY KEY); SELECT 1", ("u",), I8, "exactly one"),
    ("CREATE INDEX ON t (u)", ("u",), I8, "exactly one CREATE TABLE"),
    ("CREATE TABLE t (u bigint PRIMARY KEY", ("u",), I8, "does not parse"),
    ("CREATE TABLE t (u bigint PRIMARY KEY)", ("u",), (KeyType.INT8, KeyType.TEXT), "type"),
    ("CREATE TABLE IF NOT EXISTS t (u bigint PRIMARY KEY)", ("u",), I8, "IF NOT EXISTS"),
]


@pytest.mark.parametrize(("ddl", "keys", "types"), ACCEPTED)
def test_accepted(ddl: str, keys: tuple[str, ...], types: tuple[KeyType, ...]) -> None:
    table = check_sharded_table(ddl, keys, types)
    assert table.name == "t"
    assert table.key_columns == keys
    assert set(keys) <= set(table.columns)


@pytest.mark.parametrize(("ddl", "keys", "types", "message"), REFUSED)
def test_refused(ddl: str, keys: tuple[str, ...], types: tuple[KeyType, ...], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        check_sharded_table(ddl, keys, types)


def test_columns_and_types_in_order() -> None:
    table = check_sharded_table(
        "CREATE TABLE s.t (u bigint, n smallserial, v text, PRIMARY KEY (u, n))", ("u",), I8
    )
    assert table.schema == "s"
    assert table.columns == ("u", "n", "v")
    assert table.column_types == ("int8", "int2", "text")


SHARDED = {"t": ShardedTable("t", ("u",), "f")}


@pytest.mark.parametrize(
    ("ddl", "message"),
    [
        ("DROP TABLE t", "drop_sharded_table"),
        ("DROP TABLE IF EXISTS other, public.t", "drop_sharded_table"),
        ("ALTER TABLE t RENAME TO t2", "renaming"),
        ("ALTER TABLE t SET SCHEMA archive", "another schema"),
        ("CREATE UNIQUE INDEX ON t (email)", "must contain its shard key"),
        ("CREATE INDEX CONCURRENTLY ON t (email)", "CONCURRENTLY"),
        ("ALTER TABLE t ADD UNIQUE (email)", r"UNIQUE \(email\)"),
        ("ALTER TABLE t ADD COLUMN email text UNIQUE", r"UNIQUE \(email\)"),
        ("ALTER TABLE t ADD CONSTRAINT p PRIMARY KEY (id)", "PRIMARY KEY p"),
    ],
)
def test_ddl_that_would_break_sharding_is_refused(ddl: str, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        check_sharded_ddl(ddl, SHARDED)


@pytest.mark.parametrize(
    "ddl",
    [
        "CREATE INDEX ON t (email)",
        "CREATE UNIQUE INDEX ON t (u, email)",
        "ALTER TABLE t ADD COLUMN email text",
        "ALTER TABLE t ADD UNIQUE (u, email)",
        "DROP TABLE other",
        "ALTER TABLE other RENAME TO t3",
        "DROP TABLE archive.t",
        "not sql at all",
    ],
)
def test_other_ddl_passes(ddl: str) -> None:
    check_sharded_ddl(ddl, SHARDED)

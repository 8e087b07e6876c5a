"""Slot hashing against a real PostgreSQL: Python computes exactly what the server does."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from mlscale import Cluster
from mlscale.core.slots import (
    MAX_SLOTS,
    KeyType,
    composite_slot_of,
    composite_slot_sql,
    hash_composite,
    hash_key,
    hash_keys,
    hash_sql,
    slot_of,
    slot_sql,
    slots_of,
)

pytestmark = pytest.mark.integration

PER_TYPE = 10_000
BATCH = 2_500
TABLE_ROWS = 100_000


@pytest.fixture()
def conn(cluster: Cluster) -> Iterator[psycopg.Connection[Any]]:
    with cluster.connection(cluster.primary_node()) as c:
        yield c


def server_hashes(
    conn: psycopg.Connection[Any], values: Sequence[object], key_type: KeyType
) -> list[int]:
    """The server's hash of each value, one query per batch, values bound as an array."""
    expr = hash_sql(sql.Identifier("u", "v"), key_type)
    query = sql.SQL(
        "SELECT {} FROM unnest(CAST(%s AS {}[])) WITH ORDINALITY AS u(v, i) ORDER BY u.i"
    ).format(expr, sql.SQL(key_type.value))
    out: list[int] = []
    for start in range(0, len(values), BATCH):
        batch = list(values[start : start + BATCH])
        out.extend(row[0] for row in conn.execute(query, [batch]).fetchall())
    return out


def random_text(rng: random.Random, nbytes: int) -> str:
    """A str of exactly ``nbytes`` UTF-8 bytes mixing 1- to 4-byte characters (no NUL)."""
    chars: list[str] = []
    left = nbytes
    while left:
        width = rng.randint(1, min(left, 4))
        lo, hi = {1: (1, 0x7F), 2: (0x80, 0x7FF), 3: (0x800, 0xFFFF), 4: (0x10000, 0x10FFFF)}[width]
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:  # surrogates are not characters
            cp = 0xE000
        chars.append(chr(cp))
        left -= width
    return "".join(chars)


def random_values(key_type: KeyType, rng: random.Random) -> list[Any]:
    if key_type.is_integer:
        bits = {KeyType.INT2: 16, KeyType.INT4: 32, KeyType.INT8: 64}[key_type]
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        edges = [lo, lo + 1, -1, 0, 1, hi - 1, hi, -(2**15), 2**15 - 1, -(2**31), 2**31 - 1]
        small = [rng.randint(-1000, 1000) for _ in range(1000)]
        wide = [rng.randint(lo, hi) for _ in range(PER_TYPE - 1000 - len(edges))]
        return [e for e in edges if lo <= e <= hi] + small + wide
    if key_type in (KeyType.TEXT, KeyType.VARCHAR):
        return [random_text(rng, i % 41) for i in range(PER_TYPE)]
    if key_type is KeyType.UUID:
        return [uuid.UUID(int=rng.getrandbits(128)) for _ in range(PER_TYPE)]
    return [rng.randbytes(rng.randint(0, 40)) for _ in range(PER_TYPE)]


@pytest.mark.parametrize("key_type", list(KeyType))
def test_python_hashes_equal_the_servers(conn: psycopg.Connection[Any], key_type: KeyType) -> None:
    rng = random.Random(f"slots-{key_type}")
    values = random_values(key_type, rng)
    expected = server_hashes(conn, values, key_type)
    assert len(expected) == len(values)
    assert hash_keys(values, key_type).tolist() == expected
    assert [hash_key(v, key_type) for v in values[:2000]] == expected[:2000]
    assert slots_of(values, key_type, 4096).tolist() == [h & 4095 for h in expected]


def test_the_server_collates_text_deterministically(conn: psycopg.Connection[Any]) -> None:
    # hashtextextended hashes the bytes only under a deterministic collation.
    row = conn.execute("SELECT current_setting('lc_collate'), getdatabaseencoding()").fetchone()
    assert row == ("C", "UTF8")


def test_slot_sql_accepts_bound_parameters(conn: psycopg.Connection[Any]) -> None:
    # psycopg sends 5 as int2 and 40000 as int4: the CAST lets either reach
    # hashint2extended/hashint8extended.
    for key_type, value in [(KeyType.INT2, 5), (KeyType.INT8, 40000), (KeyType.UUID, uuid.uuid4())]:
        query = sql.SQL("SELECT {}").format(slot_sql(sql.Placeholder(), key_type, 1024))
        assert conn.execute(query, [value]).fetchone() == (slot_of(value, key_type, 1024),)


def copy_rows(conn: psycopg.Connection[Any], table: str, types: list[str], rows: Any) -> None:
    with conn.cursor().copy(
        sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(sql.Identifier(table))
    ) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


@pytest.mark.parametrize(
    ("key_type", "column_type", "slots"),
    [
        (KeyType.INT8, "int8", 4096),
        (KeyType.TEXT, "text", MAX_SLOTS),
        (KeyType.VARCHAR, "varchar(64)", 64),
    ],
)
def test_slot_sql_matches_python_on_every_row(
    conn: psycopg.Connection[Any], key_type: KeyType, column_type: str, slots: int
) -> None:
    rng = random.Random(f"table-{key_type}")
    keys: list[Any]
    if key_type is KeyType.INT8:
        keys = list({rng.randint(-(2**63), 2**63 - 1) for _ in range(TABLE_ROWS)})
    else:
        keys = list({f"{random_text(rng, rng.randint(0, 24))}:{i}" for i in range(TABLE_ROWS)})
    expected = slots_of(keys, key_type, slots)
    with conn.transaction():
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE slot_rows (k {} PRIMARY KEY, expected int4 NOT NULL)"
                " ON COMMIT DROP"
            ).format(sql.SQL(column_type))
        )
        copy_rows(
            conn, "slot_rows", [key_type.value, "int4"], zip(keys, expected.tolist(), strict=True)
        )
        slot = slot_sql(sql.Identifier("k"), key_type, slots)
        row = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE {} <> expected) FROM slot_rows"
            ).format(slot)
        ).fetchone()
    assert row == (len(keys), 0)
    # Keys really spread over the slots (uniform would fill all 64/4096, ~95% of 2**20).
    assert len(np.unique(expected)) >= 0.9 * min(slots, len(keys))


def test_composite_slot_sql_matches_python(conn: psycopg.Connection[Any]) -> None:
    rng = random.Random("composite")
    types = [KeyType.INT4, KeyType.TEXT, KeyType.UUID, KeyType.BYTEA, KeyType.INT2]
    rows = []
    for i in range(20_000):
        row: list[Any] = [
            rng.randint(-(2**31), 2**31 - 1),
            random_text(rng, i % 41),
            uuid.UUID(int=rng.getrandbits(128)),
            rng.randbytes(rng.randint(0, 30)),
            rng.randint(-(2**15), 2**15 - 1),
        ]
        if i % 7 == 0:  # a NULL element contributes 0 to the record hash
            row[i % len(types)] = None
        rows.append(row)
    columns = [sql.Identifier(f"c{i}") for i in range(len(types))]
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE comp_rows (c0 int4, c1 varchar, c2 uuid, c3 bytea, c4 int2,"
            " expected_hash int8, expected_slot int4) ON COMMIT DROP"
        )
        copy_rows(
            conn,
            "comp_rows",
            ["int4", "text", "uuid", "bytea", "int2", "int8", "int4"],
            ([*r, hash_composite(r, types), composite_slot_of(r, types, 4096)] for r in rows),
        )
        slot = composite_slot_sql(columns, types, 4096)
        bare_hash = sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(columns))
        result = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE {} <> expected_slot),"
                " count(*) FILTER (WHERE {} <> expected_hash) FROM comp_rows"
            ).format(slot, bare_hash)
        ).fetchone()
    # The bare ROW of the columns as stored (varchar, int2, ...) hashes the same too.
    assert result == (len(rows), 0, 0)


def test_slot_expressions_are_valid_publication_row_filters(
    conn: psycopg.Connection[Any],
) -> None:
    # Resharding publishes one slot's rows with a row filter on the slot expression:
    # the server must accept every form we generate (immutable, built-in only).
    with conn.transaction(force_rollback=True):
        conn.execute(
            "CREATE TABLE slot_pub (a int8, b text, c bytea, d uuid, PRIMARY KEY (a, b, c, d))"
        )
        exprs = [
            slot_sql(sql.Identifier("a"), KeyType.INT8, 4096),
            slot_sql(sql.Identifier("b"), KeyType.TEXT, 4096),
            slot_sql(sql.Identifier("c"), KeyType.BYTEA, 4096),
            slot_sql(sql.Identifier("d"), KeyType.UUID, 4096),
            composite_slot_sql(
                [sql.Identifier("a"), sql.Identifier("b")], [KeyType.INT8, KeyType.TEXT], 4096
            ),
        ]
        for i, expr in enumerate(exprs):
            conn.execute(
                sql.SQL(
                    "CREATE PUBLICATION {} FOR TABLE slot_pub WHERE ({} BETWEEN 0 AND 9)"
                ).format(sql.Identifier(f"slot_pub_{i}"), expr)
            )

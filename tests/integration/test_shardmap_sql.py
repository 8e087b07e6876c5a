"""Every shard map predicate, run by a real server over generated rows.

For each map, rows of random keys go into a temp table; one query evaluates
every group's predicate on every row. Each row must satisfy exactly one group's
predicate, and that group must be the one ``locate`` names in Python. Rows with
a NULL key belong to no group (a geo map's default group takes them).
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg import sql

from mlscale import Cluster
from mlscale.core.shardmaps import (
    GeoMap,
    HashRing,
    KeyFamily,
    KeyRange,
    LookupMap,
    RangeMap,
    ShardMap,
    SlotMap,
)
from mlscale.core.slots import KeyType

ROWS = 1500
G4 = ("g0", "g1", "g2", "g3")


def _text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + " 'é€😀"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


GENERATORS: dict[KeyType, Callable[[random.Random], Any]] = {
    KeyType.INT2: lambda r: r.randint(-(2**15), 2**15 - 1),
    KeyType.INT4: lambda r: r.randint(-(2**31), 2**31 - 1),
    KeyType.INT8: lambda r: r.randint(-(2**63), 2**63 - 1),
    KeyType.TEXT: _text,
    KeyType.VARCHAR: _text,
    KeyType.UUID: lambda r: uuid.UUID(int=r.getrandbits(128)),
    KeyType.BYTEA: lambda r: r.randbytes(r.randint(0, 20)),
}
EDGES: dict[KeyType, list[Any]] = {
    KeyType.INT2: [-(2**15), -1, 0, 1, 2**15 - 1],
    KeyType.INT4: [-(2**31), -1, 0, 2**31 - 1],
    KeyType.INT8: [-(2**63), -1, 0, 1, 2**63 - 1, 100, 99, 2**40],
    KeyType.TEXT: ["", "a", "Z", "m", "n", "mzz", "é"],
    KeyType.VARCHAR: ["", "a"],
    KeyType.UUID: [uuid.UUID(int=0), uuid.UUID(int=2**127), uuid.UUID(int=2**128 - 1)],
    KeyType.BYTEA: [b"", b"\x00", b"\x80", b"\xff" * 3, b"\\", b"{a,b}"],
}


def keys_for(family: KeyFamily, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    types = family.key_types
    out = [tuple(GENERATORS[t](rng) for t in types) for _ in range(ROWS)]
    out += [(e, *(GENERATORS[t](rng) for t in types[1:])) for e in EDGES[types[0]]]
    return out


INT8 = KeyFamily.of("users", "int8")
INT4 = KeyFamily.of("items", "int4")
INT2 = KeyFamily.of("shorts", "int2")
TEXT = KeyFamily.of("tenants", "text")
VARCHAR = KeyFamily.of("names", "varchar")
UUIDS = KeyFamily.of("devices", "uuid")
BYTES = KeyFamily.of("blobs", "bytea")
PAIR = KeyFamily.of("orders", "int8", "text")


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[list[tuple[Any, ...]]], ShardMap]
    family: KeyFamily


def _lookup(family: KeyFamily, default: str | None) -> Callable[[list[Any]], ShardMap]:
    def make(keys: list[tuple[Any, ...]]) -> ShardMap:
        picked = keys[:: 7 if default else 1]
        return LookupMap.of(
            family,
            {family.present(k): f"g{i % 3}" for i, k in enumerate(picked)},
            default,
        )

    return make


CASES = [
    Case("slots-int8", lambda _: SlotMap.even(INT8, G4).with_group("g4"), INT8),
    Case("slots-int4", lambda _: SlotMap.even(INT4, G4, slots=64).without_group("g2"), INT4),
    Case("slots-int2", lambda _: SlotMap.even(INT2, G4, slots=1024), INT2),
    Case("slots-text", lambda _: SlotMap.even(TEXT, G4).with_group("g4"), TEXT),
    Case("slots-varchar", lambda _: SlotMap.even(VARCHAR, ("a", "b")), VARCHAR),
    Case("slots-uuid", lambda _: SlotMap.even(UUIDS, G4), UUIDS),
    Case("slots-bytea", lambda _: SlotMap.even(BYTES, G4, slots=8), BYTES),
    Case("slots-composite", lambda _: SlotMap.even(PAIR, G4).with_group("g4"), PAIR),
    Case("ring-int8", lambda _: HashRing(INT8, G4), INT8),
    Case("ring-int4", lambda _: HashRing(INT4, G4, vnodes=16), INT4),
    Case("ring-text", lambda _: HashRing(TEXT, ("a", "b", "c"), vnodes=64), TEXT),
    Case("ring-uuid", lambda _: HashRing(UUIDS, ("a", "b"), vnodes=8), UUIDS),
    Case("ring-bytea", lambda _: HashRing(BYTES, ("a", "b"), vnodes=8), BYTES),
    Case("ring-composite", lambda _: HashRing(PAIR, G4, vnodes=32), PAIR),
    Case("ring-one-group", lambda _: HashRing(INT8, ("only",), vnodes=2), INT8),
    Case(
        "range-int8",
        lambda _: RangeMap(
            INT8,
            (KeyRange(None, -(2**62), "a"), KeyRange(-(2**62), 100, "b"), KeyRange(100, None, "c")),
        ),
        INT8,
    ),
    Case(
        "range-int8-default",
        lambda _: RangeMap(INT8, (KeyRange(0, 2**62, "a"), KeyRange(2**62, 2**63 - 1, "b")), "d"),
        INT8,
    ),
    Case(
        "range-text-collation",
        lambda _: RangeMap(
            TEXT, (KeyRange("B", "a", "upper"), KeyRange("a", "n", "low")), default="other"
        ),
        TEXT,
    ),
    Case(
        "range-uuid",
        lambda _: RangeMap(
            UUIDS,
            (
                KeyRange(None, uuid.UUID(int=2**127), "lo"),
                KeyRange(uuid.UUID(int=2**127), None, "hi"),
            ),
        ),
        UUIDS,
    ),
    Case(
        "range-bytea",
        lambda _: RangeMap(BYTES, (KeyRange(b"\x00", b"\x80", "lo"),), default="rest"),
        BYTES,
    ),
    Case(
        "range-composite",
        lambda _: RangeMap(
            PAIR,
            (KeyRange(None, (0, "m"), "lo"), KeyRange((0, "m"), (2**62, ""), "mid")),
            default="hi",
        ),
        PAIR,
    ),
    Case(
        "geo-text",
        lambda keys: GeoMap.of(TEXT, {k[0]: f"g{i % 3}" for i, k in enumerate(keys[:40])}, "g9"),
        TEXT,
    ),
    Case("geo-int4-empty", lambda _: GeoMap.of(INT4, {}, "all"), INT4),
    Case("lookup-int8", _lookup(INT8, "rest"), INT8),
    Case("lookup-int8-strict", _lookup(INT8, None), INT8),
    Case("lookup-text", _lookup(TEXT, "rest"), TEXT),
    Case("lookup-uuid", _lookup(UUIDS, "rest"), UUIDS),
    Case("lookup-bytea", _lookup(BYTES, "rest"), BYTES),
    Case("lookup-int2", _lookup(INT2, "rest"), INT2),
    Case("lookup-composite", _lookup(PAIR, "rest"), PAIR),
    Case("lookup-empty", lambda _: LookupMap.of(INT8, {}, "rest"), INT8),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_row_satisfies_exactly_its_groups_predicate(cluster: Cluster, case: Case) -> None:
    family = case.family
    keys = list(dict.fromkeys(keys_for(family, seed=len(case.name))))
    m = case.make(keys)
    columns = [sql.Identifier(f"k{i}") for i in range(len(family.key_types))]
    definitions = sql.SQL(", ").join(
        sql.SQL("{} {}").format(c, sql.SQL(t.value))
        for c, t in zip(columns, family.key_types, strict=True)
    )
    checks = sql.SQL(", ").join(m.predicate(g, columns) for g in m.groups)
    # Rows with a NULL key column (every column in turn) belong to no group.
    width = len(family.key_types)
    null_rows = [tuple(None if j == i else keys[0][j] for j in range(width)) for i in range(width)]
    with cluster.connection(cluster.primary_node()) as conn:
        conn.execute(sql.SQL("CREATE TEMP TABLE keys (id int, {})").format(definitions))
        try:
            copy_sql = sql.SQL("COPY keys (id, {}) FROM STDIN").format(sql.SQL(", ").join(columns))
            with conn.cursor().copy(copy_sql) as copy:
                for i, key in enumerate(keys):
                    copy.write_row((i, *key))
                for i, row in enumerate(null_rows):
                    copy.write_row((len(keys) + i, *row))
            rows = conn.execute(
                sql.SQL("SELECT id, {} FROM keys ORDER BY id").format(checks)
            ).fetchall()
        finally:
            conn.execute("DROP TABLE keys")
    assert len(rows) == len(keys) + len(null_rows)
    placed = {g: 0 for g in m.groups}
    for row in rows[: len(keys)]:
        key = family.present(keys[row[0]])
        true = [g for g, v in zip(m.groups, row[1:], strict=True) if v]
        assert true == [m.locate(key)], (key, true)
        placed[true[0]] += 1
    for row in rows[len(keys) :]:
        true = [g for g, v in zip(m.groups, row[1:], strict=True) if v]
        assert true == ([m.default] if isinstance(m, GeoMap) else []), null_rows
    # The generated keys really exercise the map: more than one group is used.
    if len(m.groups) > 1:
        assert sum(1 for n in placed.values() if n) > 1, placed

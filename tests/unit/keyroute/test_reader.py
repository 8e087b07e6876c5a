"""The key router itself: its plan cache, the one-off function, the registry."""

from __future__ import annotations

from typing import Any

import pytest

from mlscale.core.keyroute import (
    ByKeys,
    InsertRows,
    KeyReader,
    ShardedTable,
    Unsharded,
    read_keys,
)
from mlscale.core.keyroute import reader as router_module

from . import ORDERS, TABLES


def test_plans_are_cached_by_text(monkeypatch: pytest.MonkeyPatch) -> None:
    router = KeyReader(TABLES, cache_size=2)
    calls = []
    real = router_module.parse

    def counting(sql: str) -> Any:
        calls.append(sql)
        return real(sql)

    # Compilations counted (the router's parse calls); the shared parse cache below
    # has its own tests in test_sqltree.py.
    monkeypatch.setattr(router_module, "parse", counting)
    sql = "SELECT * FROM users WHERE id = %s"
    assert router.read(sql, (1,)) != router.read(sql, (2,))
    assert len(calls) == 1
    router.read(sql, None)  # without params psycopg reads no placeholders: another plan
    assert len(calls) == 2
    router.read("SELECT 1", ())
    router.read("SELECT 2", ())
    router.read(sql, (3,))  # evicted by the two above (cache_size=2)
    assert len(calls) == 5


def test_long_generated_texts_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    router = KeyReader(TABLES)
    calls = []
    real = router_module.parse

    def counting(sql: str) -> Any:
        calls.append(sql)
        return real(sql)

    # Compilations counted (the router's parse calls); the shared parse cache below
    # has its own tests in test_sqltree.py.
    monkeypatch.setattr(router_module, "parse", counting)
    sql = " ".join(["INSERT INTO users (id) VALUES", ", ".join(["(%s)"] * 1000)])
    params = tuple(range(1000))
    for _ in range(2):
        got = router.read(sql, params)
        assert isinstance(got, InsertRows) and len(got.keys) == 1000
    assert len(calls) == 2


def test_route_keys_without_a_router() -> None:
    got = read_keys("SELECT * FROM orders WHERE user_id = %s", (3,), TABLES)
    assert isinstance(got, ByKeys) and got.keys == ((3,),) and got.table is ORDERS


def test_no_sharded_tables_is_always_unsharded() -> None:
    assert KeyReader({}).read("SELECT * FROM users WHERE id = 1") == Unsharded()


def test_sharded_table_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ShardedTable("t", (), "f")
    with pytest.raises(ValueError, match="repeats"):
        ShardedTable("t", ("a", "a"), "f")

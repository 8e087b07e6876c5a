"""The shared parse cache: one pglast parse per statement text, for classifying and key routing."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections import OrderedDict
from typing import Any

import pytest
from pglast import ast
from pglast.parser import ParseError

from mlscale.core import sqltree
from mlscale.core.classify import Classifier, Target
from mlscale.core.keyroute import ByKeys, KeyReader, ShardedTable

TABLES = {"users": ShardedTable("users", ("id",), "user")}


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The texts pglast is asked to parse from now on."""
    calls: list[str] = []
    real = sqltree.parse_sql

    def counting(text: str) -> Any:
        calls.append(text)
        return real(text)

    monkeypatch.setattr(sqltree, "parse_sql", counting)
    return calls


def _unique(sql: str) -> str:
    # Texts other tests never used, so the process-wide cache has not seen them yet.
    return f"{sql} /* {uuid.uuid4()} */"


def test_classify_and_key_routing_parse_a_text_once(parses: list[str]) -> None:
    sql = _unique("SELECT * FROM users WHERE id = 5")
    assert Classifier().classify(sql).target is Target.REPLICA
    assert isinstance(KeyReader(TABLES).read(sql, None), ByKeys)
    assert parses == [sql]
    # New consumers (their own result caches empty) read the cached tree.
    Classifier().classify(sql)
    KeyReader(TABLES).read(sql, None)
    assert parses == [sql]


def test_psycopg_placeholders_are_parsed_once_as_dollar_params(parses: list[str]) -> None:
    sql = _unique("SELECT * FROM users WHERE id = %s")
    numbered = sql.replace("%s", "$1")
    # The classifier tries the text as is (it does not parse), then with $1; the key
    # router, given params, parses the same $1 text.
    assert Classifier().classify(sql).target is Target.REPLICA
    got = KeyReader(TABLES).read(sql, (5,))
    assert isinstance(got, ByKeys) and got.keys == ((5,),)
    assert parses == [sql, numbered]
    Classifier().classify(sql)
    KeyReader(TABLES).read(sql, (6,))
    assert parses == [sql, numbered]


def test_a_text_that_does_not_parse_is_refused_each_time_parsed_once(parses: list[str]) -> None:
    sql = _unique("SELEC 1")
    errors = []
    for _ in range(2):
        with pytest.raises(ParseError) as info:
            sqltree.parse(sql)
        errors.append(info.value)
    assert parses == [sql]
    assert errors[0] is not errors[1] and str(errors[0]) == str(errors[1])
    assert "syntax error" in str(errors[1])


def test_long_texts_are_parsed_every_time(parses: list[str]) -> None:
    sql = _unique("SELECT 1" + " " * sqltree.CACHED_TEXT_MAX)
    sqltree.parse(sql)
    sqltree.parse(sql)
    assert parses == [sql, sql]


def test_the_cache_is_bounded_by_entries_and_characters(
    parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqltree, "_cache", OrderedDict())
    monkeypatch.setattr(sqltree, "_cached_chars", 0)
    monkeypatch.setattr(sqltree, "_CACHE_ENTRIES", 2)
    a, b, c = "SELECT 1", "SELECT 2", "SELECT 3"
    for text in (a, b, a, c):  # a is used again, so b is the oldest when c comes
        sqltree.parse(text)
    assert list(sqltree._cache) == [a, c]
    assert sqltree._cached_chars == len(a) + len(c)
    long = "SELECT 12345"
    monkeypatch.setattr(sqltree, "_CACHE_ENTRIES", 10)
    monkeypatch.setattr(sqltree, "_CACHE_CHARS", len(c) + len(long))
    sqltree.parse(long)
    assert list(sqltree._cache) == [c, long]  # a out: the three are too many characters
    assert sqltree._cached_chars == len(c) + len(long)
    assert parses == [a, b, c, long]


def test_shared_trees_are_left_as_parsed(parses: list[str]) -> None:
    sql = _unique("SELECT * FROM users WHERE id IN (%s, %s) AND name LIKE 'a%%'")
    numbered = sql.replace("%s", "$1", 1).replace("%s", "$2", 1).replace("%%", "%")
    Classifier().classify(sql)
    got = KeyReader(TABLES).read(sql, (1, 2))
    assert isinstance(got, ByKeys)
    (tree,) = sqltree.parse(numbered)
    before = tree()
    out = got.split({"a": [0], "b": [1]})  # rewrites and prints a tree of its own
    assert out["b"][1] == (2,)
    assert sqltree.parse(numbered)[0] is tree and tree() == before
    # RawStream writes ``ancestors`` into every node it prints: none here was printed.
    assert not any(hasattr(n, "ancestors") for n in sqltree.walk(tree))
    assert parses.count(numbered) == 2  # the cached parse, and the split's own


def test_walk_prunes_subqueries_and_labels_statements() -> None:
    (raw,) = sqltree.parse("SELECT a FROM t WHERE b = (SELECT max(c) FROM u)")
    where = raw.stmt.whereClause
    pruned = list(sqltree.walk(where, (ast.SubLink,)))
    kept = list(sqltree.walk(where, (ast.SubLink,), keep_pruned=True))
    assert not any(isinstance(n, ast.SubLink | ast.SelectStmt) for n in pruned)
    assert [type(n) for n in kept if isinstance(n, ast.SubLink)] == [ast.SubLink]
    assert any(isinstance(n, ast.FuncCall) for n in sqltree.walk(where))
    labels = [
        sqltree.statement_label(r.stmt)
        for r in sqltree.parse(
            "ALTER TABLE t ADD c int; DROP MATERIALIZED VIEW v; REVOKE ALL ON t FROM x"
        )
    ]
    assert labels == ["ALTER TABLE", "DROP MATERIALIZED VIEW", "REVOKE"]


@pytest.mark.skipif(sys.platform == "win32", reason="needs os.fork")
def test_a_forked_child_does_not_wait_for_the_parents_lock() -> None:
    sql = _unique("SELECT 1")
    with sqltree._lock:  # as if a parent thread were inside the cache at the fork
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            signal.alarm(10)  # a child stuck on the parent's lock dies instead of hanging
            code = 0 if len(sqltree.parse(sql)) == 1 else 1
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0

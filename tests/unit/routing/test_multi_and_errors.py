"""Several statements in one string take the most restrictive route; unparseable SQL the primary.

psycopg's placeholders (``%s``, ``%(name)s``, ``%b``, ``%t``, ``%%``) are not
PostgreSQL grammar. The classifier parses the text as is first (``a %b`` is
valid SQL) and, if that fails, again with the placeholders read as ``$n``
parameters; placeholders inside string literals, quoted identifiers and
comments are left alone. Text that still does not parse goes to the primary.
"""

from __future__ import annotations

import pytest

from mlscale.core.classify import Classifier

from . import PRIMARY, REPLICA, Case, SessionEffect, TxAction, case, case_id, check

PARSE = "could not parse"

CASES = [
    # -- several statements --------------------------------------------------------------------
    case("SELECT 1; SELECT 2", REPLICA, "2 statements", statements=2),
    case("SELECT 1;", REPLICA, "read-only SELECT", id="trailing semicolon"),
    case(";;SELECT 1;;", REPLICA, "read-only SELECT", id="empty statements around"),
    case(
        "SELECT count(*) FROM features; INSERT INTO audit VALUES (now())",
        PRIMARY,
        "2 statements; most restrictive: INSERT writes",
        statements=2,
    ),
    case(
        "SELECT 1; SELECT * FROM jobs FOR UPDATE; SELECT 2",
        PRIMARY,
        "FOR UPDATE",
        statements=3,
    ),
    case(
        "SELECT * FROM features WHERE entity_id = %s; SELECT nextval('s')",
        PRIMARY,
        "nextval",
        creates={SessionEffect.SEQUENCE},
        statements=2,
    ),
    case(
        "BEGIN; UPDATE models SET status = 'prod' WHERE id = 1; COMMIT",
        PRIMARY,
        "BEGIN opens a transaction",
        transaction=TxAction.END,
        statements=3,
    ),
    case(
        "SET work_mem = '1GB'; SELECT * FROM features ORDER BY value",
        PRIMARY,
        "SET work_mem",
        creates={SessionEffect.SETTING},
        statements=2,
    ),
    case(
        "LISTEN a; LISTEN b; UNLISTEN *",
        PRIMARY,
        "LISTEN",
        creates={SessionEffect.LISTEN},
        clears={SessionEffect.LISTEN},
        statements=3,
    ),
    case(
        "SELECT currval('s'); SELECT 1",
        PRIMARY,
        "currval",
        needs_session=True,
        statements=2,
    ),
    case(
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1",
        PRIMARY,
        "SERIALIZABLE",
        transaction=TxAction.BEGIN,
        statements=2,
    ),
    case(
        "EXPLAIN SELECT 1; COPY features TO STDOUT; VALUES (1)",
        REPLICA,
        "3 statements",
        statements=3,
    ),
    # -- nothing to run --------------------------------------------------------------------------
    case("", REPLICA, "empty statement", statements=0),
    case("   \n\t", REPLICA, "empty statement", statements=0),
    case("-- just a comment", REPLICA, "empty statement", statements=0),
    case("/* nothing */ ;", REPLICA, "empty statement", statements=0),
    # -- unparseable ---------------------------------------------------------------------------
    case("SELEC 1", PRIMARY, PARSE),
    case("SELECT * FROM", PRIMARY, PARSE),
    case("INSERT INTO", PRIMARY, PARSE),
    case("SELECT 'unterminated", PRIMARY, PARSE),
    case("SELECT 1; SELEC 2", PRIMARY, PARSE, id="one bad statement spoils the string"),
    case("\\d features", PRIMARY, PARSE, id="psql meta-command"),
    case("SELECT * FROM t WHERE x = ?", PRIMARY, PARSE, id="qmark placeholder"),
    case("SELECT %(name", PRIMARY, PARSE, id="incomplete psycopg placeholder"),
    case("SELECT * FROM features WHERE %s %s", PRIMARY, PARSE, id="placeholders that stay invalid"),
    case("hello world", PRIMARY, PARSE),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_multi_and_error_route(c: Case) -> None:
    check(c)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM features WHERE entity_id = %s",
        "SELECT * FROM features WHERE entity_id = %(id)s",
        "SELECT %t::int",
        "SELECT * FROM features WHERE entity_id=%s",  # '=%' is one operator token
        "SELECT * FROM features WHERE name LIKE '%s' AND entity_id = %s",
        'SELECT "50%s" FROM features WHERE entity_id = %s',
        "SELECT 1 -- 100%s sure\n, %s",
        "SELECT $$%s$$ || %s",
    ],
)
def test_psycopg_placeholders_parse(sql: str) -> None:
    got = Classifier().classify(sql)
    assert got.target is REPLICA, got.reason


def test_a_placeholder_error_reports_the_text_as_written() -> None:
    got = Classifier().classify("SELECT %s FROM")
    assert got.target is PRIMARY
    assert 'at or near "%"' in got.reason  # the error of the text as written, not of its rewrite

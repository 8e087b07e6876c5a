"""COPY and EXPLAIN: they follow what they wrap (COPY FROM and server files aside)."""

from __future__ import annotations

import pytest

from . import PRIMARY, REPLICA, Case, SessionEffect, case, case_id, check

CASES = [
    # -- COPY ---------------------------------------------------------------------------------
    case("COPY features TO STDOUT", REPLICA, "COPY TO STDOUT reads"),
    case(
        "COPY (SELECT entity_id, name, value FROM features WHERE updated_at > $1) "
        "TO STDOUT WITH (FORMAT csv, HEADER)",
        REPLICA,
        "COPY TO STDOUT",
        id="export training set",
    ),
    case("copy features (entity_id, value) to stdout (format binary)", REPLICA, "COPY TO STDOUT"),
    case("COPY features FROM STDIN", PRIMARY, "COPY FROM writes"),
    case(
        "COPY features (entity_id, name, value) FROM STDIN WITH (FORMAT binary)",
        PRIMARY,
        "COPY FROM",
    ),
    case("COPY features FROM '/data/features.csv' CSV", PRIMARY, "COPY FROM"),
    case("COPY features FROM PROGRAM 'gunzip -c /data/f.gz'", PRIMARY, "COPY FROM"),
    case("COPY features TO '/tmp/features.csv'", PRIMARY, "server file or program"),
    case("COPY (SELECT 1) TO PROGRAM 'cat > /dev/null'", PRIMARY, "server file or program"),
    case(
        "COPY (SELECT nextval('s')) TO STDOUT",
        PRIMARY,
        "nextval",
        creates={SessionEffect.SEQUENCE},
    ),
    case("COPY (SELECT * FROM jobs FOR UPDATE) TO STDOUT", PRIMARY, "FOR UPDATE"),
    case("COPY (DELETE FROM jobs WHERE done RETURNING *) TO STDOUT", PRIMARY, "DELETE writes"),
    case(
        "COPY (WITH d AS (DELETE FROM jobs RETURNING *) SELECT * FROM d) TO STDOUT",
        PRIMARY,
        "writable CTE",
    ),
    case("COPY (SELECT currval('s')) TO STDOUT", PRIMARY, "currval", needs_session=True),
    # -- EXPLAIN ------------------------------------------------------------------------------
    case(
        "EXPLAIN SELECT * FROM features WHERE entity_id = $1",
        REPLICA,
        "EXPLAIN of a read-only SELECT",
    ),
    case(
        "EXPLAIN ANALYZE SELECT count(*) FROM predictions",
        REPLICA,
        "EXPLAIN ANALYZE of a read-only",
    ),
    case(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM features WHERE entity_id = ANY(%s)",
        REPLICA,
        "EXPLAIN ANALYZE",
    ),
    case("explain (costs off) values (1)", REPLICA, "EXPLAIN of a read-only"),
    case(
        "EXPLAIN INSERT INTO features VALUES (1, 'a', 0.5)",
        PRIMARY,
        "EXPLAIN of a statement that: INSERT writes",
    ),
    case(
        "EXPLAIN (ANALYZE false) UPDATE models SET status = 'prod'",
        PRIMARY,
        "EXPLAIN of a statement that: UPDATE",
    ),
    case(
        "EXPLAIN ANALYZE DELETE FROM jobs WHERE done",
        PRIMARY,
        "EXPLAIN ANALYZE of a statement that: DELETE",
    ),
    case(
        "EXPLAIN ANALYZE SELECT nextval('s')",
        PRIMARY,
        "nextval",
        creates={SessionEffect.SEQUENCE},
    ),
    case("EXPLAIN SELECT * FROM jobs FOR UPDATE SKIP LOCKED", PRIMARY, "FOR UPDATE"),
    case(
        "EXPLAIN ANALYZE WITH m AS (UPDATE models SET n = n + 1 RETURNING *) SELECT * FROM m",
        PRIMARY,
        "writable CTE",
    ),
    case("EXPLAIN EXECUTE top_features(42)", PRIMARY, "EXECUTE", needs_session=True),
    case("EXPLAIN ANALYZE SELECT currval('s')", PRIMARY, "currval", needs_session=True),
    case(
        "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)",
        PRIMARY,
        "pg_advisory_lock",
        creates={SessionEffect.ADVISORY_LOCK},
    ),
    case(
        "EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1",
        PRIMARY,
        "CREATE TEMP TABLE",
        creates={SessionEffect.TEMP_TABLE},
    ),
    case("EXPLAIN ANALYZE SELECT * INTO snap FROM features", PRIMARY, "SELECT INTO"),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_copy_explain_route(c: Case) -> None:
    check(c)

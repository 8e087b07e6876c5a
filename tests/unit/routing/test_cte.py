"""WITH: read-only CTEs stay on a replica; a write or a lock anywhere in WITH does not.

Prefix matching sees ``WITH`` and guesses; these rows are why the classifier
walks the tree instead.
"""

from __future__ import annotations

import pytest

from . import PRIMARY, REPLICA, Case, SessionEffect, case, case_id, check

CASES = [
    # -- read-only ----------------------------------------------------------------------
    case(
        "WITH latest AS (SELECT DISTINCT ON (entity_id) * FROM features "
        "ORDER BY entity_id, updated_at DESC) SELECT * FROM latest WHERE entity_id = ANY($1)",
        REPLICA,
        "read-only SELECT",
    ),
    case(
        "WITH RECURSIVE lineage(id, parent_id, depth) AS ("
        "SELECT id, parent_id, 0 FROM models WHERE id = $1 "
        "UNION ALL SELECT m.id, m.parent_id, l.depth + 1 FROM models m "
        "JOIN lineage l ON m.id = l.parent_id) SELECT * FROM lineage",
        REPLICA,
        "read-only SELECT",
        id="recursive model lineage",
    ),
    case(
        "WITH s AS MATERIALIZED (SELECT model_id, avg(score) FROM predictions GROUP BY 1), "
        "t AS NOT MATERIALIZED (SELECT * FROM s WHERE avg > 0.5) SELECT * FROM t",
        REPLICA,
        "read-only SELECT",
    ),
    case(
        "SELECT * FROM (WITH x AS (SELECT 1 AS a) SELECT a FROM x) s",
        REPLICA,
        "read-only SELECT",
        id="CTE in a subquery",
    ),
    case(
        "with params as (select %s::bigint as id) select f.* from features f, params p "
        "where f.entity_id = p.id",
        REPLICA,
        "read-only SELECT",
    ),
    case(
        "WITH deleted AS (SELECT 'DELETE FROM jobs' AS q) SELECT q FROM deleted",
        REPLICA,
        "read-only SELECT",
        id="a CTE named deleted, a write in a literal",
    ),
    # -- writable CTEs ------------------------------------------------------------------
    case(
        "WITH moved AS (INSERT INTO archive SELECT * FROM jobs WHERE done RETURNING id) "
        "SELECT count(*) FROM moved",
        PRIMARY,
        "writable CTE (INSERT in WITH moved)",
    ),
    case(
        "WITH claimed AS (UPDATE jobs SET state = 'running' WHERE id = $1 RETURNING *) "
        "SELECT * FROM claimed",
        PRIMARY,
        "writable CTE (UPDATE",
    ),
    case(
        "with gone as (delete from predictions where created_at < now() - interval '90 days' "
        "returning 1) select count(*) from gone",
        PRIMARY,
        "writable CTE (DELETE",
    ),
    case(
        "WITH m AS (MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE RETURNING *) "
        "SELECT * FROM m",
        PRIMARY,
        "writable CTE (MERGE",
    ),
    case(
        "WITH a AS (SELECT 1), b AS (SELECT 2), c AS (DELETE FROM jobs WHERE id = %s RETURNING id) "
        "SELECT * FROM a, b",
        PRIMARY,
        "writable CTE (DELETE in WITH c)",
        id="unreferenced writable CTE still runs",
    ),
    case(
        "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3), "
        "w AS (INSERT INTO log SELECT n FROM r RETURNING n) SELECT * FROM w",
        PRIMARY,
        "writable CTE (INSERT",
    ),
    case(
        "WITH d AS (DELETE FROM jobs WHERE done RETURNING *) INSERT INTO archive SELECT * FROM d",
        PRIMARY,
        "INSERT writes",
        id="INSERT fed by a writable CTE",
    ),
    case(
        "WITH src AS (SELECT * FROM staging) UPDATE features f SET value = src.value FROM src "
        "WHERE f.entity_id = src.entity_id",
        PRIMARY,
        "UPDATE writes",
    ),
    # -- locks and writing functions inside CTEs ----------------------------------------
    case(
        "WITH j AS (SELECT * FROM jobs WHERE state = 'queued' LIMIT 10 FOR UPDATE SKIP LOCKED) "
        "SELECT * FROM j",
        PRIMARY,
        "FOR UPDATE",
    ),
    case(
        "WITH j AS (SELECT * FROM models FOR SHARE) SELECT count(*) FROM j",
        PRIMARY,
        "FOR SHARE",
    ),
    case(
        "WITH ids AS (SELECT nextval('run_id_seq') AS id) SELECT id FROM ids",
        PRIMARY,
        "nextval",
        creates={SessionEffect.SEQUENCE},
    ),
    case(
        "WITH x AS (SELECT writes_something() AS n) SELECT n FROM x",
        PRIMARY,
        "not known to be read-only",
    ),
    case(
        "WITH x AS (SELECT id FROM models), y AS (SELECT pg_notify('models', id::text) FROM x) "
        "SELECT * FROM y",
        PRIMARY,
        "pg_notify",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_cte_route(c: Case) -> None:
    check(c)

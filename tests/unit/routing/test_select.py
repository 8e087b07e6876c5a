"""SELECT: read-only unless it locks rows or creates a table.

The read-only rows are the queries an ML platform sends all day: feature
lookups by key lists, jsonb filters, window functions over metrics, LATERAL
top-k, DISTINCT ON latest-row, GROUPING SETS reports. Writes hidden in CTEs and
function calls have their own files.
"""

from __future__ import annotations

import pytest

from . import PRIMARY, REPLICA, Case, case, case_id, check

READ = "read-only SELECT"

CASES = [
    # -- plain reads -----------------------------------------------------------------------
    case("SELECT 1", REPLICA, READ),
    case("select * from features where entity_id = $1", REPLICA, READ),
    case(
        "SELECT entity_id, name, value FROM features WHERE entity_id = ANY($1) AND name = ANY($2)",
        REPLICA,
        READ,
        id="feature lookup ANY($1)",
    ),
    case(
        "SELECT f.entity_id, f.value FROM features f "
        "JOIN unnest($1::bigint[]) WITH ORDINALITY AS k(id, pos) ON f.entity_id = k.id "
        "ORDER BY k.pos",
        REPLICA,
        READ,
        id="feature lookup keeping key order",
    ),
    case(
        "SELECT entity_id, attrs->>'country' AS country FROM features "
        'WHERE attrs @> \'{"segment": "vip"}\'::jsonb',
        REPLICA,
        READ,
    ),
    case(
        "SELECT attrs #>> '{geo,city}', attrs -> 'scores' -> 0 FROM features WHERE attrs ? 'geo'",
        REPLICA,
        READ,
    ),
    case(
        "SELECT jsonb_path_query(attrs, '$.scores[*] ? (@ > 0.5)') FROM features",
        REPLICA,
        READ,
    ),
    case(
        "SELECT jsonb_build_object('id', id, 'metrics', metrics), to_jsonb(m) FROM models m",
        REPLICA,
        READ,
    ),
    case("SELECT jsonb_agg(row_to_json(m)) FROM models m WHERE status = 'prod'", REPLICA, READ),
    case(
        "SELECT k, v FROM models m, jsonb_each_text(m.metrics) AS kv(k, v) WHERE m.id = $1",
        REPLICA,
        READ,
    ),
    # -- windows, grouping ---------------------------------------------------------------
    case(
        "SELECT entity_id, value, row_number() OVER (PARTITION BY entity_id "
        "ORDER BY updated_at DESC) AS rn FROM features",
        REPLICA,
        READ,
    ),
    case(
        "SELECT day, model_id, lag(auc) OVER w, avg(auc) OVER (w ROWS BETWEEN 6 PRECEDING "
        "AND CURRENT ROW) FROM daily_metrics WINDOW w AS (PARTITION BY model_id ORDER BY day)",
        REPLICA,
        READ,
        id="window with named frame",
    ),
    case(
        "SELECT model_id, day, sum(n) FROM daily_metrics "
        "GROUP BY GROUPING SETS ((model_id), (day), ())",
        REPLICA,
        READ,
    ),
    case("SELECT model_id, day, count(*) FROM runs GROUP BY ROLLUP (model_id, day)", REPLICA, READ),
    case(
        "SELECT a, b, grouping(a, b), count(*) FROM t GROUP BY CUBE (a, b) HAVING count(*) > 1",
        REPLICA,
        READ,
    ),
    case(
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) FROM predictions "
        "WHERE created_at > now() - interval '1 hour'",
        REPLICA,
        READ,
    ),
    case(
        "SELECT count(*) FILTER (WHERE label = 1) AS pos, count(*) FROM labels GROUP BY split",
        REPLICA,
        READ,
    ),
    case("SELECT string_agg(name, ',' ORDER BY name) FROM models", REPLICA, READ),
    # -- joins, LATERAL, DISTINCT ON, set operations ----------------------------------------
    case(
        "SELECT m.id, p.* FROM models m CROSS JOIN LATERAL (SELECT * FROM predictions p "
        "WHERE p.model_id = m.id ORDER BY created_at DESC LIMIT 5) p",
        REPLICA,
        READ,
        id="LATERAL top-5",
    ),
    case(
        "SELECT DISTINCT ON (entity_id) entity_id, value FROM features "
        "ORDER BY entity_id, updated_at DESC",
        REPLICA,
        READ,
    ),
    case(
        "SELECT * FROM models UNION ALL SELECT * FROM archived_models ORDER BY 1",
        REPLICA,
        READ,
    ),
    case(
        "SELECT id FROM train INTERSECT SELECT id FROM eval EXCEPT SELECT id FROM bad",
        REPLICA,
        READ,
    ),
    case(
        "SELECT * FROM runs r LEFT JOIN models m USING (model_id) "
        "FULL OUTER JOIN datasets d ON d.id = r.dataset_id",
        REPLICA,
        READ,
    ),
    case(
        "SELECT * FROM models m WHERE EXISTS (SELECT 1 FROM deployments d WHERE d.model_id = m.id)",
        REPLICA,
        READ,
    ),
    case(
        "SELECT name, (SELECT max(version) FROM models m2 WHERE m2.name = m.name) FROM models m",
        REPLICA,
        READ,
    ),
    case("SELECT * FROM t WHERE id IN (SELECT id FROM u WHERE flag)", REPLICA, READ),
    # -- arrays, series, casts, built-in syntax ---------------------------------------------
    case(
        "SELECT vec[1:3], array_length(vec, 1), cardinality(tags) FROM embeddings "
        "WHERE tags && ARRAY['train', 'eval']",
        REPLICA,
        READ,
    ),
    case(
        "SELECT e.id, u.x, u.i FROM embeddings e, unnest(e.vec) WITH ORDINALITY AS u(x, i)",
        REPLICA,
        READ,
    ),
    case(
        "SELECT d::date FROM generate_series(now() - interval '7 days', now(), interval '1 day') d",
        REPLICA,
        READ,
    ),
    case("SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY['a', 'b']))", REPLICA, READ),
    case(
        "SELECT '42'::int, CAST(value AS numeric(10, 2)), attrs::text FROM features", REPLICA, READ
    ),
    case(
        "SELECT substring(name FROM 1 FOR 3), trim(both ' ' FROM name), "
        "extract(epoch FROM updated_at), updated_at AT TIME ZONE 'UTC' FROM features",
        REPLICA,
        READ,
        id="SQL-syntax functions",
    ),
    case(
        "SELECT coalesce(a, b), nullif(x, 0), greatest(a, b), least(a, b), "
        "CASE WHEN score > 0.5 THEN 'pos' ELSE 'neg' END FROM predictions",
        REPLICA,
        READ,
    ),
    case(
        "SELECT to_char(created_at, 'YYYY-MM-DD'), date_trunc('hour', created_at), "
        "date_bin('15 minutes', created_at, TIMESTAMP '2001-01-01') FROM predictions",
        REPLICA,
        READ,
    ),
    case(
        "SELECT regexp_replace(name, '\\s+', ' ', 'g') FROM models WHERE name ~* '^bert'",
        REPLICA,
        READ,
    ),
    case("SELECT embedding <-> $1::vector AS dist FROM items ORDER BY 1 LIMIT 10", REPLICA, READ),
    case("SELECT * FROM features TABLESAMPLE SYSTEM (1) REPEATABLE (42)", REPLICA, READ),
    case("SELECT x FROM t ORDER BY x FETCH FIRST 10 ROWS WITH TIES", REPLICA, READ),
    case("SELECT x FROM t ORDER BY x LIMIT $1 OFFSET $2", REPLICA, READ),
    case("VALUES (1, 'a'), (2, 'b')", REPLICA, READ),
    case("TABLE models", REPLICA, READ),
    # -- volatile but read-only, catalog, monitoring -----------------------------------------
    case(
        "SELECT now(), current_timestamp, current_user, random(), gen_random_uuid(), "
        "clock_timestamp()",
        REPLICA,
        READ,
    ),
    case("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_backend_pid()", REPLICA, READ),
    case(
        "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database()",
        REPLICA,
        READ,
    ),
    case("SELECT version(), current_setting('server_version_num')::int", REPLICA, READ),
    case(
        "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class "
        "WHERE relkind = 'r' ORDER BY pg_relation_size(oid) DESC LIMIT 5",
        REPLICA,
        READ,
        id="table sizes (volatile, read-only)",
    ),
    case("SELECT pg_sleep(0.01)", REPLICA, READ),
    # -- spelling: qualified, quoted, comments, case, placeholders --------------------------
    case(
        "SELECT pg_catalog.lower(name), pg_catalog.count(*) FROM features GROUP BY 1", REPLICA, READ
    ),
    case('SELECT "Entity"."Value", "select" FROM "FeatureStore"."Entity"', REPLICA, READ),
    case("/* dashboard: hourly */ SELECT count(*) FROM predictions -- last hour", REPLICA, READ),
    case("sElEcT CoUnT(*) fRoM features wHeRe NaMe = 'x'", REPLICA, READ),
    case(
        "SELECT 'FOR UPDATE', 'nextval(''s'')' AS \"FOR SHARE\"",
        REPLICA,
        READ,
        id="keywords in literals",
    ),
    case("SELECT 1 -- FOR UPDATE\n", REPLICA, READ, id="FOR UPDATE in a comment"),
    case(
        "SELECT value FROM features WHERE entity_id = %s AND name = %s",
        REPLICA,
        READ,
        id="psycopg %s",
    ),
    case(
        "SELECT * FROM features WHERE entity_id = %(entity)s AND updated_at > %(since)s "
        "AND updated_at < %(since)s::timestamptz + interval '1 day'",
        REPLICA,
        READ,
        id="psycopg %(name)s",
    ),
    case("SELECT * FROM features WHERE entity_id = ANY(%s) LIMIT %s", REPLICA, READ),
    case(
        "SELECT entity_id FROM features WHERE entity_id %% %s = 0", REPLICA, READ, id="psycopg %%"
    ),
    case(
        "SELECT name FROM models WHERE name LIKE 'bert-%%' AND id = %b",
        REPLICA,
        READ,
        id="psycopg %b, %% in a literal",
    ),
    case("SELECT a %b FROM t", REPLICA, READ, id="modulo of column b, not a placeholder"),
    # -- row locks ---------------------------------------------------------------------------
    case(
        "SELECT * FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        PRIMARY,
        "FOR UPDATE locks rows",
        id="job queue SKIP LOCKED",
    ),
    case("SELECT * FROM models WHERE id = $1 FOR NO KEY UPDATE", PRIMARY, "FOR NO KEY UPDATE"),
    case("SELECT * FROM models WHERE id = $1 FOR SHARE", PRIMARY, "FOR SHARE"),
    case("SELECT * FROM models WHERE id = $1 FOR KEY SHARE", PRIMARY, "FOR KEY SHARE"),
    case(
        "SELECT * FROM jobs j JOIN models m ON m.id = j.model_id FOR UPDATE OF j NOWAIT",
        PRIMARY,
        "FOR UPDATE",
    ),
    case("select * from jobs for update", PRIMARY, "FOR UPDATE", id="lower-case for update"),
    case("SELECT * FROM (SELECT * FROM jobs FOR UPDATE) j", PRIMARY, "FOR UPDATE", id="in FROM"),
    case(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM models WHERE id = %s FOR SHARE)",
        PRIMARY,
        "FOR SHARE",
        id="in EXISTS",
    ),
    case(
        "SELECT (SELECT id FROM jobs LIMIT 1 FOR KEY SHARE) AS next_job",
        PRIMARY,
        "FOR KEY SHARE",
        id="in a scalar subquery",
    ),
    case(
        "SELECT * FROM models m, LATERAL (SELECT * FROM jobs j WHERE j.model_id = m.id "
        "FOR NO KEY UPDATE) x",
        PRIMARY,
        "FOR NO KEY UPDATE",
        id="in LATERAL",
    ),
    # -- SELECT INTO -------------------------------------------------------------------------
    case("SELECT * INTO features_2024 FROM features", PRIMARY, "SELECT INTO creates a table"),
    case(
        "select entity_id, avg(value) into unlogged feature_means from features group by 1",
        PRIMARY,
        "SELECT INTO",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_select_route(c: Case) -> None:
    check(c)

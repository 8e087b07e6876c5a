"""INSERT, UPDATE, DELETE, MERGE: always the primary, whatever they read or return."""

from __future__ import annotations

import pytest

from . import PRIMARY, Case, case, case_id, check

CASES = [
    # -- INSERT -------------------------------------------------------------------------
    case(
        "INSERT INTO features (entity_id, name, value) VALUES ($1, $2, $3)",
        PRIMARY,
        "INSERT writes",
    ),
    case("insert into features values (%s, %s, %s)", PRIMARY, "INSERT writes", id="psycopg insert"),
    case(
        "INSERT INTO features (entity_id, name, value) VALUES (%(id)s, %(name)s, %(value)s) "
        "ON CONFLICT (entity_id, name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        PRIMARY,
        "INSERT writes",
        id="upsert",
    ),
    case(
        "INSERT INTO features (entity_id, name, value) "
        "SELECT * FROM unnest($1::bigint[], $2::text[], $3::float8[]) ON CONFLICT DO NOTHING",
        PRIMARY,
        "INSERT writes",
        id="bulk insert from arrays",
    ),
    case(
        "INSERT INTO predictions (model_id, entity_id, score) VALUES ($1, $2, $3) RETURNING id",
        PRIMARY,
        "INSERT writes",
    ),
    case(
        "INSERT INTO daily_metrics SELECT model_id, date_trunc('day', created_at), count(*) "
        "FROM predictions GROUP BY 1, 2",
        PRIMARY,
        "INSERT writes",
    ),
    case("INSERT INTO audit DEFAULT VALUES", PRIMARY, "INSERT writes"),
    case(
        'INSERT INTO "FeatureStore"."Entity" ("Id") OVERRIDING SYSTEM VALUE VALUES (1)',
        PRIMARY,
        "INSERT",
    ),
    case("/* batch 7 */ INSERT INTO labels VALUES (1, 0.5)", PRIMARY, "INSERT writes"),
    # -- UPDATE -------------------------------------------------------------------------
    case("UPDATE models SET status = 'prod' WHERE id = $1", PRIMARY, "UPDATE writes"),
    case(
        "update models set metrics = metrics || %s::jsonb where id = %s", PRIMARY, "UPDATE writes"
    ),
    case(
        "UPDATE jobs SET state = 'running', started_at = now() WHERE id = (SELECT id FROM jobs "
        "WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING *",
        PRIMARY,
        "UPDATE writes",
        id="dequeue a job",
    ),
    case(
        "UPDATE features f SET value = s.value FROM staging s "
        "WHERE f.entity_id = s.entity_id AND f.name = s.name",
        PRIMARY,
        "UPDATE writes",
    ),
    case("UPDATE embeddings SET vec[1] = 0 WHERE id = ANY($1)", PRIMARY, "UPDATE writes"),
    # -- DELETE -------------------------------------------------------------------------
    case(
        "DELETE FROM features WHERE updated_at < now() - interval '30 days'",
        PRIMARY,
        "DELETE writes",
    ),
    case(
        "DELETE FROM predictions p USING models m WHERE p.model_id = m.id AND m.status = 'retired'",
        PRIMARY,
        "DELETE writes",
    ),
    case("delete from jobs where id = %s returning payload", PRIMARY, "DELETE writes"),
    # -- MERGE --------------------------------------------------------------------------
    case(
        "MERGE INTO features f USING staging s ON f.entity_id = s.entity_id AND f.name = s.name "
        "WHEN MATCHED THEN UPDATE SET value = s.value "
        "WHEN NOT MATCHED THEN INSERT VALUES (s.entity_id, s.name, s.value)",
        PRIMARY,
        "MERGE writes",
    ),
    case(
        "merge into models m using (values (1, 'prod')) v(id, status) on m.id = v.id "
        "when matched then delete",
        PRIMARY,
        "MERGE writes",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_dml_route(c: Case) -> None:
    check(c)

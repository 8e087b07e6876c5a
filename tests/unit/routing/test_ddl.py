"""DDL and the other statements a standby refuses: always the primary.

TEMP objects are session state and live in test_session_state.py.
"""

from __future__ import annotations

import pytest

from . import PRIMARY, Case, case, case_id, check

CASES = [
    case(
        "CREATE TABLE features (entity_id bigint, name text, value float8, "
        "PRIMARY KEY (entity_id, name))",
        PRIMARY,
        "CREATE TABLE changes the schema",
    ),
    case("create unlogged table staging (like features)", PRIMARY, "CREATE TABLE"),
    case(
        "CREATE TABLE predictions_2024 PARTITION OF predictions "
        "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        PRIMARY,
        "CREATE TABLE",
    ),
    case(
        "CREATE TABLE feature_means AS SELECT name, avg(value) FROM features GROUP BY 1",
        PRIMARY,
        "CREATE TABLE ... AS",
    ),
    case(
        "CREATE VIEW prod_models AS SELECT * FROM models WHERE status = 'prod'",
        PRIMARY,
        "CREATE VIEW",
    ),
    case(
        "CREATE MATERIALIZED VIEW daily AS SELECT date_trunc('day', created_at), count(*) "
        "FROM predictions GROUP BY 1",
        PRIMARY,
        "CREATE MATERIALIZED VIEW",
    ),
    case("REFRESH MATERIALIZED VIEW CONCURRENTLY daily", PRIMARY, "REFRESH MATERIALIZED VIEW"),
    case("CREATE SEQUENCE run_id_seq START 1000", PRIMARY, "CREATE SEQUENCE"),
    case("ALTER SEQUENCE run_id_seq RESTART WITH 1", PRIMARY, "ALTER SEQUENCE"),
    case(
        "CREATE INDEX CONCURRENTLY ON features USING gin (attrs jsonb_path_ops)",
        PRIMARY,
        "CREATE INDEX",
    ),
    case("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops)", PRIMARY, "CREATE INDEX"),
    case("DROP INDEX CONCURRENTLY IF EXISTS features_attrs_idx", PRIMARY, "DROP INDEX"),
    case("DROP TABLE IF EXISTS staging CASCADE", PRIMARY, "DROP TABLE"),
    case("drop materialized view daily", PRIMARY, "DROP MATERIALIZED VIEW"),
    case("ALTER TABLE features ADD COLUMN source text DEFAULT 'batch'", PRIMARY, "ALTER TABLE"),
    case("ALTER TABLE predictions DETACH PARTITION predictions_2023", PRIMARY, "ALTER TABLE"),
    case("ALTER TABLE models RENAME COLUMN status TO stage", PRIMARY, "RENAME"),
    case("TRUNCATE staging RESTART IDENTITY", PRIMARY, "TRUNCATE"),
    case("CREATE EXTENSION IF NOT EXISTS vector", PRIMARY, "CREATE EXTENSION"),
    case("CREATE SCHEMA IF NOT EXISTS features", PRIMARY, "CREATE SCHEMA"),
    case("CREATE TYPE stage AS ENUM ('dev', 'staging', 'prod')", PRIMARY, "CREATE TYPE"),
    case(
        "CREATE FUNCTION score(x float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS 'SELECT x * 2'",
        PRIMARY,
        "CREATE FUNCTION",
    ),
    case(
        "CREATE OR REPLACE PROCEDURE retrain() LANGUAGE plpgsql AS $$BEGIN NULL; END$$",
        PRIMARY,
        "CREATE PROCEDURE",
    ),
    case(
        "CREATE TRIGGER touch BEFORE UPDATE ON features FOR EACH ROW EXECUTE FUNCTION touch()",
        PRIMARY,
        "CREATE TRIGGER",
    ),
    case("GRANT SELECT ON ALL TABLES IN SCHEMA features TO reader", PRIMARY, "GRANT"),
    case("REVOKE INSERT ON features FROM trainer", PRIMARY, "REVOKE"),
    case("COMMENT ON TABLE features IS 'online features'", PRIMARY, "COMMENT"),
    case("CREATE ROLE reader LOGIN", PRIMARY, "CREATE ROLE"),
    case("CREATE STATISTICS s ON entity_id, name FROM features", PRIMARY, "CREATE STATISTICS"),
    case("ALTER SYSTEM SET work_mem = '64MB'", PRIMARY, "ALTER SYSTEM"),
    case("VACUUM (ANALYZE, VERBOSE) features", PRIMARY, "VACUUM"),
    case("ANALYZE features", PRIMARY, "ANALYZE"),
    case("REINDEX TABLE CONCURRENTLY features", PRIMARY, "REINDEX"),
    case("CLUSTER features USING features_pkey", PRIMARY, "CLUSTER"),
    case("CHECKPOINT", PRIMARY, "CHECKPOINT"),
    case("LOAD 'auto_explain'", PRIMARY, "LOAD"),
    # -- the non-DDL statements the issue lists next to them ----------------------------------
    case("LOCK TABLE jobs IN SHARE ROW EXCLUSIVE MODE", PRIMARY, "LOCK takes table locks"),
    case("lock table models in access share mode", PRIMARY, "LOCK"),
    case("NOTIFY model_updates, 'v42'", PRIMARY, "NOTIFY sends a notification"),
    case("CALL retrain($1)", PRIMARY, "CALL runs a procedure"),
    case("DO $$BEGIN PERFORM 1; END$$", PRIMARY, "DO runs code"),
    case("do language plpgsql 'begin null; end'", PRIMARY, "DO"),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_ddl_route(c: Case) -> None:
    check(c)

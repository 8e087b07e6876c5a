"""Function calls: a writer or an unknown function anywhere in the tree sends it to the primary.

Also the extendable list of read-only functions, and the classifier's cache.
"""

from __future__ import annotations

import pytest

from mlscale.core.classify import Classifier

from . import PRIMARY, REPLICA, Case, SessionEffect, case, case_id, check

SEQ = frozenset({SessionEffect.SEQUENCE})
LOCK = frozenset({SessionEffect.ADVISORY_LOCK})
UNKNOWN = "not known to be read-only"

CASES = [
    # -- sequences --------------------------------------------------------------------------
    case("SELECT nextval('run_id_seq')", PRIMARY, "nextval", creates=SEQ),
    case("SELECT pg_catalog.nextval('run_id_seq'::regclass)", PRIMARY, "nextval", creates=SEQ),
    case("select NEXTVAL('run_id_seq')", PRIMARY, "nextval", creates=SEQ, id="upper-case NEXTVAL"),
    case('SELECT "nextval"(%s)', PRIMARY, "nextval", creates=SEQ, id="quoted nextval"),
    case("SELECT setval('run_id_seq', 1000, false)", PRIMARY, "setval", creates=SEQ),
    case("SELECT currval('run_id_seq')", PRIMARY, "currval", needs_session=True),
    case("SELECT lastval()", PRIMARY, "lastval", needs_session=True),
    # -- transaction ids, settings, notifications -----------------------------------------
    case("SELECT txid_current()", PRIMARY, "txid_current"),
    case("SELECT pg_current_xact_id()", PRIMARY, "pg_current_xact_id"),
    case(
        "SELECT set_config('search_path', 'features, public', false)",
        PRIMARY,
        "set_config",
        creates={SessionEffect.SETTING},
    ),
    case("SELECT set_config('statement_timeout', '5s', true)", PRIMARY, "set_config", id="local"),
    case("SELECT pg_notify('model_updates', $1)", PRIMARY, "pg_notify"),
    # -- advisory locks ---------------------------------------------------------------------
    case("SELECT pg_advisory_lock(42)", PRIMARY, "pg_advisory_lock", creates=LOCK),
    case(
        "SELECT pg_try_advisory_lock(hashtext($1))", PRIMARY, "pg_try_advisory_lock", creates=LOCK
    ),
    case("SELECT pg_advisory_lock_shared(1, 2)", PRIMARY, "session advisory lock", creates=LOCK),
    case("SELECT pg_advisory_xact_lock(42)", PRIMARY, "transaction advisory lock"),
    case("SELECT pg_try_advisory_xact_lock_shared(7)", PRIMARY, "pg_try_advisory_xact_lock_shared"),
    case("SELECT pg_advisory_unlock(42)", PRIMARY, "pg_advisory_unlock"),
    case(
        "SELECT pg_advisory_unlock_all()",
        PRIMARY,
        "pg_advisory_unlock_all",
        clears={SessionEffect.ADVISORY_LOCK},
    ),
    # -- large objects, statistics, administration -------------------------------------------
    case("SELECT lo_create(0)", PRIMARY, "large objects"),
    case("SELECT lo_import('/tmp/model.bin')", PRIMARY, "lo_import"),
    case("SELECT lo_unlink(oid) FROM model_blobs WHERE stale", PRIMARY, "lo_unlink"),
    case("SELECT lo_put($1, 0, $2)", PRIMARY, "lo_put"),
    case("SELECT pg_stat_reset()", PRIMARY, "resets statistics"),
    case(
        "SELECT pg_stat_reset_single_table_counters('features'::regclass)", PRIMARY, "pg_stat_reset"
    ),
    case(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle'",
        PRIMARY,
        "terminates",
    ),
    case("SELECT pg_cancel_backend($1)", PRIMARY, "pg_cancel_backend"),
    case("SELECT pg_reload_conf()", PRIMARY, "pg_reload_conf"),
    case("SELECT pg_switch_wal()", PRIMARY, "pg_switch_wal"),
    case("SELECT pg_create_restore_point('before-migration')", PRIMARY, "writes WAL"),
    case("SELECT pg_logical_emit_message(true, 'ml', 'retrain')", PRIMARY, "writes WAL"),
    case("SELECT pg_export_snapshot()", PRIMARY, "pg_export_snapshot"),
    case("SELECT pg_walfile_name(pg_current_wal_lsn())", PRIMARY, "during recovery"),
    case("SELECT pg_current_wal_lsn()", PRIMARY, UNKNOWN, id="volatile, fails during recovery"),
    case("SELECT pg_create_logical_replication_slot('s', 'pgoutput')", PRIMARY, "replication slot"),
    case("SELECT pg_replication_origin_create('o')", PRIMARY, "replication origins"),
    # -- unknown (user) functions ------------------------------------------------------------
    case("SELECT score_model($1, $2)", PRIMARY, "calls score_model(), " + UNKNOWN),
    case("SELECT features.embed(text) FROM docs", PRIMARY, "calls features.embed()"),
    case("SELECT public.lower('X')", PRIMARY, "public.lower", id="a user's lower in public"),
    case('SELECT "Lower"(name) FROM models', PRIMARY, "Lower", id="quoted Lower is not lower"),
    case("SELECT * FROM refresh_features()", PRIMARY, UNKNOWN, id="in FROM"),
    case("SELECT id FROM models WHERE should_retrain(id)", PRIMARY, UNKNOWN, id="in WHERE"),
    case("SELECT id FROM models ORDER BY rank_model(id)", PRIMARY, UNKNOWN, id="in ORDER BY"),
    case("SELECT dblink_exec('remote', 'DELETE FROM t')", PRIMARY, "dblink_exec"),
    # -- writers anywhere in the tree ----------------------------------------------------------
    case("SELECT (nextval('s'))::text || '-run'", PRIMARY, "nextval", creates=SEQ, id="in a cast"),
    case(
        "SELECT CASE WHEN $1 THEN nextval('s') ELSE 0 END",
        PRIMARY,
        "nextval",
        creates=SEQ,
        id="in CASE",
    ),
    case(
        "SELECT count(*) FILTER (WHERE pg_try_advisory_xact_lock(id)) FROM jobs",
        PRIMARY,
        "pg_try_advisory_xact_lock",
        id="in FILTER",
    ),
    case(
        "SELECT * FROM models m, LATERAL (SELECT setval('s', m.id)) x",
        PRIMARY,
        "setval",
        creates=SEQ,
        id="in LATERAL",
    ),
    case(
        "SELECT id FROM models WHERE id IN (SELECT nextval('s'))",
        PRIMARY,
        "nextval",
        creates=SEQ,
        id="in IN subquery",
    ),
    case(
        "SELECT 1 WHERE EXISTS (SELECT txid_current())",
        PRIMARY,
        "txid_current",
        id="in EXISTS",
    ),
    case("SELECT * FROM t LIMIT nextval('s')", PRIMARY, "nextval", creates=SEQ, id="in LIMIT"),
    case("SELECT coalesce(NULL, lo_create(0))", PRIMARY, "lo_create", id="inside COALESCE"),
    case("VALUES (nextval('s')), (1)", PRIMARY, "nextval", creates=SEQ, id="in VALUES"),
    case(
        "SELECT 1 UNION ALL SELECT pg_advisory_lock(7)",
        PRIMARY,
        "pg_advisory_lock",
        creates=LOCK,
        id="in a UNION arm",
    ),
    case(
        "SELECT sum(x) OVER (ORDER BY writes_something()) FROM t",
        PRIMARY,
        UNKNOWN,
        id="in a window ORDER BY",
    ),
    # -- read-only functions (IMMUTABLE/STABLE built-ins and known volatile readers) ----------
    case(
        "SELECT lower(name), abs(score), round(score::numeric, 3), md5(name), length(name) FROM t",
        REPLICA,
        "read-only",
    ),
    case("SELECT random() < 0.1 AS sampled, setseed(0.5)", REPLICA, "read-only"),
    case("SELECT txid_current_if_assigned(), pg_current_snapshot()", REPLICA, "read-only"),
    case(
        "SELECT to_regclass('features'), has_table_privilege('features', 'SELECT')",
        REPLICA,
        "read-only",
    ),
    case("SELECT information_schema._pg_truetypid(a, t) FROM x", REPLICA, "read-only"),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_function_route(c: Case) -> None:
    check(c)


# -- the extendable list ----------------------------------------------------------------------


def test_caller_vouches_for_unqualified_and_qualified_functions() -> None:
    classifier = Classifier(read_only_functions=["score_model", "features.embed"])
    assert classifier.classify("SELECT score_model($1)").target is REPLICA
    assert classifier.classify("SELECT SCORE_MODEL($1)").target is REPLICA
    # "score_model" vouches for the unqualified call only: another schema's is another function
    assert classifier.classify("SELECT anywhere.score_model($1)").target is PRIMARY
    assert classifier.classify("SELECT features.embed('x')").target is REPLICA
    assert classifier.classify("SELECT other.embed('x')").target is PRIMARY
    assert classifier.classify("SELECT embed('x')").target is PRIMARY
    assert Classifier().classify("SELECT score_model($1)").target is PRIMARY


def test_vouched_names_are_read_as_unquoted_sql() -> None:
    classifier = Classifier(read_only_functions=["Score_Model", "Features.Embed"])
    assert classifier.classify("SELECT score_model(1), features.embed('x')").target is REPLICA


def test_known_writers_cannot_be_vouched_for() -> None:
    classifier = Classifier(read_only_functions=["nextval", "pg_advisory_lock", "lo_create"])
    for sql in ("SELECT nextval('s')", "SELECT pg_advisory_lock(1)", "SELECT lo_create(0)"):
        assert classifier.classify(sql).target is PRIMARY, sql


def test_vouched_function_still_goes_to_the_primary_next_to_a_writer() -> None:
    classifier = Classifier(read_only_functions=["score_model"])
    got = classifier.classify("SELECT score_model(nextval('s'))")
    assert got.target is PRIMARY
    assert "nextval" in got.reason


# -- the cache --------------------------------------------------------------------------------


def test_same_text_twice_is_one_miss() -> None:
    classifier = Classifier()
    first = classifier.classify("SELECT lower($1)")
    second = classifier.classify("SELECT lower($1)")
    assert first is second
    assert (classifier.misses, classifier.hits) == (1, 1)
    classifier.classify("select lower($1)")  # other text, other entry
    assert (classifier.misses, classifier.hits) == (2, 1)


def test_cache_is_bounded_and_keeps_recent_entries() -> None:
    classifier = Classifier(cache_size=2)
    classifier.classify("SELECT 1")
    classifier.classify("SELECT 2")
    classifier.classify("SELECT 1")  # hit: now the most recent
    classifier.classify("SELECT 3")  # evicts SELECT 2
    classifier.classify("SELECT 1")
    assert (classifier.misses, classifier.hits) == (3, 2)
    classifier.classify("SELECT 2")
    assert classifier.misses == 4

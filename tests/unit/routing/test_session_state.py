"""Session state: what a statement creates, clears or needs on its connection.

A pool hands the next statement to any connection; these fields are how the
router knows to pin a session (creates), to need the pinned one (needs_session)
or to unpin it (clears).
"""

from __future__ import annotations

import pytest

from . import PRIMARY, Case, SessionEffect, TxAction, case, case_id, check

SETTING = frozenset({SessionEffect.SETTING})
PREPARED = frozenset({SessionEffect.PREPARED})
TEMP = frozenset({SessionEffect.TEMP_TABLE})
SEQ = frozenset({SessionEffect.SEQUENCE})
LOCK = frozenset({SessionEffect.ADVISORY_LOCK})
LISTEN = frozenset({SessionEffect.LISTEN})
HOLD = frozenset({SessionEffect.HOLD_CURSOR})

CASES = [
    # -- settings -----------------------------------------------------------------------------
    case("SET work_mem = '256MB'", PRIMARY, "SET work_mem creates session state", creates=SETTING),
    case("set search_path to features, public", PRIMARY, "SET search_path", creates=SETTING),
    case("SET SESSION statement_timeout = 5000", PRIMARY, "SET statement_timeout", creates=SETTING),
    case("SET TIME ZONE 'UTC'", PRIMARY, "SET timezone", creates=SETTING),
    case("SET ROLE analyst", PRIMARY, "SET role", creates=SETTING),
    case("SET application_name = %s", PRIMARY, "SET application_name", creates=SETTING),
    case("RESET work_mem", PRIMARY, "RESET work_mem", creates=SETTING),
    case("RESET ALL", PRIMARY, "RESET ALL", clears=SETTING),
    case("SET LOCAL work_mem = '1GB'", PRIMARY, "SET LOCAL", transaction=TxAction.INSIDE),
    case("SELECT set_config('work_mem', '1GB', false)", PRIMARY, "set_config", creates=SETTING),
    case(
        "SELECT set_config('work_mem', '1GB', true)", PRIMARY, "set_config", id="set_config local"
    ),
    # -- prepared statements -------------------------------------------------------------------
    case(
        "PREPARE top_features (bigint) AS SELECT * FROM features WHERE entity_id = $1",
        PRIMARY,
        "PREPARE top_features creates session state",
        creates=PREPARED,
    ),
    case(
        "PREPARE ins AS INSERT INTO labels VALUES ($1, $2)",
        PRIMARY,
        "PREPARE ins",
        creates=PREPARED,
    ),
    case("EXECUTE top_features(42)", PRIMARY, "EXECUTE top_features", needs_session=True),
    case("DEALLOCATE top_features", PRIMARY, "DEALLOCATE", needs_session=True),
    case("DEALLOCATE ALL", PRIMARY, "DEALLOCATE", needs_session=True, clears=PREPARED),
    # -- temporary objects ---------------------------------------------------------------------
    case(
        "CREATE TEMP TABLE batch (entity_id bigint, value float8)",
        PRIMARY,
        "CREATE TEMP TABLE creates session state",
        creates=TEMP,
    ),
    case(
        "create temporary table batch (like features) on commit drop",
        PRIMARY,
        "CREATE TEMP TABLE",
        creates=TEMP,
    ),
    case(
        "CREATE TEMP TABLE ids AS SELECT unnest(%s::bigint[]) AS id",
        PRIMARY,
        "CREATE TEMP TABLE ... AS",
        creates=TEMP,
    ),
    case("CREATE TEMP VIEW v AS SELECT 1", PRIMARY, "CREATE TEMP VIEW", creates=TEMP),
    case("CREATE TEMP SEQUENCE batch_seq", PRIMARY, "CREATE TEMP SEQUENCE", creates=TEMP),
    case(
        "CREATE TABLE pg_temp.scratch (id int)",
        PRIMARY,
        "CREATE TEMP TABLE",
        creates=TEMP,
        id="a table in pg_temp is temporary",
    ),
    case("SELECT * INTO TEMP snap FROM features", PRIMARY, "SELECT INTO", creates=TEMP),
    case("SELECT * INTO pg_temp.snap FROM features", PRIMARY, "SELECT INTO", creates=TEMP),
    case("CREATE UNLOGGED TABLE scratch (id int)", PRIMARY, "CREATE TABLE changes the schema"),
    # -- sequence state, advisory locks ---------------------------------------------------------
    case("SELECT nextval('run_id_seq')", PRIMARY, "nextval", creates=SEQ),
    case("SELECT currval('run_id_seq')", PRIMARY, "currval", needs_session=True),
    case("SELECT lastval()", PRIMARY, "lastval", needs_session=True),
    case("SELECT pg_advisory_lock(hashtext('retrain'))", PRIMARY, "pg_advisory_lock", creates=LOCK),
    case(
        "SELECT pg_try_advisory_lock_shared(1)",
        PRIMARY,
        "pg_try_advisory_lock_shared",
        creates=LOCK,
    ),
    case("SELECT pg_advisory_xact_lock(1)", PRIMARY, "transaction advisory lock"),
    case("SELECT pg_advisory_unlock_all()", PRIMARY, "pg_advisory_unlock_all", clears=LOCK),
    # -- LISTEN, cursors, DISCARD -------------------------------------------------------------
    case("LISTEN model_updates", PRIMARY, "LISTEN creates session state", creates=LISTEN),
    case('LISTEN "Model Updates"', PRIMARY, "LISTEN", creates=LISTEN),
    case("UNLISTEN model_updates", PRIMARY, "UNLISTEN"),
    case("UNLISTEN *", PRIMARY, "UNLISTEN", clears=LISTEN),
    case(
        "DECLARE big CURSOR WITH HOLD FOR SELECT * FROM features",
        PRIMARY,
        "WITH HOLD creates session state",
        creates=HOLD,
    ),
    case(
        "DECLARE ids NO SCROLL CURSOR WITH HOLD FOR SELECT nextval('s')",
        PRIMARY,
        "WITH HOLD",
        creates=HOLD | SEQ,
    ),
    case("FETCH 1000 FROM big", PRIMARY, "FETCH reads a cursor", needs_session=True),
    case("MOVE FORWARD 10 IN big", PRIMARY, "MOVE reads a cursor", needs_session=True),
    case("CLOSE big", PRIMARY, "CLOSE", needs_session=True),
    case("CLOSE ALL", PRIMARY, "CLOSE", needs_session=True, clears=HOLD),
    case("DISCARD ALL", PRIMARY, "DISCARD", clears=frozenset(SessionEffect)),
    case("DISCARD TEMP", PRIMARY, "DISCARD", clears=TEMP),
    case("DISCARD SEQUENCES", PRIMARY, "DISCARD", clears=SEQ),
    case("DISCARD PLANS", PRIMARY, "DISCARD"),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_session_state(c: Case) -> None:
    check(c)

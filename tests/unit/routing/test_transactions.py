"""Transaction control: on the primary, with what it does to the session's transaction.

A standby refuses SERIALIZABLE, so every way of asking for it goes to the primary
and says so.
"""

from __future__ import annotations

import pytest

from . import PRIMARY, Case, SessionEffect, TxAction, case, case_id, check

SERIALIZABLE = "SERIALIZABLE"
BEGIN, END, INSIDE = TxAction.BEGIN, TxAction.END, TxAction.INSIDE

CASES = [
    case("BEGIN", PRIMARY, "BEGIN opens a transaction", transaction=BEGIN),
    case("begin read write", PRIMARY, "BEGIN", transaction=BEGIN),
    case("BEGIN READ ONLY", PRIMARY, "BEGIN", transaction=BEGIN),
    case("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", PRIMARY, "BEGIN", transaction=BEGIN),
    case("BEGIN ISOLATION LEVEL SERIALIZABLE", PRIMARY, SERIALIZABLE, transaction=BEGIN),
    case(
        "begin transaction isolation level serializable", PRIMARY, SERIALIZABLE, transaction=BEGIN
    ),
    case(
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
        PRIMARY,
        SERIALIZABLE,
        transaction=BEGIN,
    ),
    case("COMMIT", PRIMARY, "ends a transaction", transaction=END),
    case("END", PRIMARY, "ends a transaction", transaction=END),
    case("ROLLBACK", PRIMARY, "ends a transaction", transaction=END),
    case("abort", PRIMARY, "ends a transaction", transaction=END),
    case("COMMIT AND CHAIN", PRIMARY, "ends a transaction", transaction=END),
    case("SAVEPOINT before_upsert", PRIMARY, "belongs to a transaction", transaction=INSIDE),
    case(
        "RELEASE SAVEPOINT before_upsert", PRIMARY, "belongs to a transaction", transaction=INSIDE
    ),
    case(
        "ROLLBACK TO SAVEPOINT before_upsert",
        PRIMARY,
        "belongs to a transaction",
        transaction=INSIDE,
    ),
    case("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", PRIMARY, SERIALIZABLE, transaction=INSIDE),
    case("SET TRANSACTION READ ONLY", PRIMARY, "SET TRANSACTION", transaction=INSIDE),
    case(
        "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
        PRIMARY,
        "SET TRANSACTION",
        transaction=INSIDE,
    ),
    case("SET transaction_isolation = 'serializable'", PRIMARY, SERIALIZABLE, transaction=INSIDE),
    case("SET LOCAL statement_timeout = '5s'", PRIMARY, "SET LOCAL", transaction=INSIDE),
    case(
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        PRIMARY,
        SERIALIZABLE,
        creates={SessionEffect.SETTING},
    ),
    case(
        "SET default_transaction_isolation = 'serializable'",
        PRIMARY,
        SERIALIZABLE,
        creates={SessionEffect.SETTING},
    ),
    case(
        "SET default_transaction_isolation TO 'read committed'",
        PRIMARY,
        "SET default_transaction_isolation creates session state",
        creates={SessionEffect.SETTING},
    ),
    case("DECLARE c CURSOR FOR SELECT * FROM features", PRIMARY, "DECLARE", transaction=INSIDE),
    # -- two-phase commit ---------------------------------------------------------------------
    case(
        "PREPARE TRANSACTION 'train-42'",
        PRIMARY,
        "PREPARE TRANSACTION is two-phase",
        transaction=END,
    ),
    case("COMMIT PREPARED 'train-42'", PRIMARY, "COMMIT PREPARED"),
    case("ROLLBACK PREPARED 'train-42'", PRIMARY, "ROLLBACK PREPARED"),
]


@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_transaction_route(c: Case) -> None:
    check(c)

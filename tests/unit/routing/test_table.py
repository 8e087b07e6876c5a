"""The tables themselves: big enough, no row twice, and the checker really checks."""

from __future__ import annotations

from collections import Counter

import pytest

from . import (
    PRIMARY,
    REPLICA,
    Case,
    SessionEffect,
    case,
    check,
    test_copy_explain,
    test_cte,
    test_ddl,
    test_dml,
    test_functions,
    test_multi_and_errors,
    test_select,
    test_session_state,
    test_transactions,
)

TABLES = {
    m.__name__.rsplit(".", 1)[-1]: m.CASES
    for m in (
        test_select,
        test_dml,
        test_cte,
        test_functions,
        test_ddl,
        test_copy_explain,
        test_transactions,
        test_session_state,
        test_multi_and_errors,
    )
}
ALL: list[Case] = [c for rows in TABLES.values() for c in rows]


def test_at_least_150_statements_with_their_route() -> None:
    # issue 4: "a table-driven test of at least 150 statements with their expected route"
    assert len(ALL) >= 150, {name: len(rows) for name, rows in TABLES.items()}


def test_both_routes_are_covered() -> None:
    routes = Counter(c.target for c in ALL)
    assert routes[PRIMARY] >= 50 and routes[REPLICA] >= 50, routes


def test_no_statement_is_listed_twice_in_one_table() -> None:
    for name, rows in TABLES.items():
        twice = [sql for sql, n in Counter(c.sql for c in rows).items() if n > 1]
        assert not twice, (name, twice)


def test_every_session_effect_is_created_or_cleared_somewhere() -> None:
    seen = {e for c in ALL for e in c.creates | c.clears}
    assert seen == set(SessionEffect)


@pytest.mark.parametrize(
    "wrong",
    [
        case("SELECT 1", PRIMARY, "read-only"),
        case("SELECT 1", REPLICA, "FOR UPDATE"),
        case("SELECT nextval('s')", PRIMARY, "nextval"),  # creates SEQUENCE, not said
        case("SELECT 1", REPLICA, "read-only", statements=2),
    ],
)
def test_a_wrong_row_fails(wrong: Case) -> None:
    with pytest.raises(AssertionError):
        check(wrong)

"""The tables themselves: big enough, and no row twice."""

from __future__ import annotations

from .test_copy import COPY_CASES
from .test_ddl import DDL_CASES
from .test_insert import INSERT_CASES
from .test_joins import JOIN_CASES
from .test_multi_and_errors import ERROR_CASES
from .test_select import COMPOSITE_CASES, SELECT_CASES
from .test_subqueries import SUBQUERY_CASES
from .test_update_delete import WRITE_CASES


def test_tables_are_counted() -> None:
    tables = [
        SELECT_CASES,
        COMPOSITE_CASES,
        JOIN_CASES,
        SUBQUERY_CASES,
        WRITE_CASES,
        INSERT_CASES,
        COPY_CASES,
        DDL_CASES,
        ERROR_CASES,
    ]
    rows = [r for t in tables for r in t]
    assert len(rows) >= 180
    assert len({(r.sql, repr(r.params)) for r in rows}) == len(rows), "a row is repeated"

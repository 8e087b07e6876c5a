"""Driver errors become the package's errors here, once, keeping the cause."""

from __future__ import annotations

import psycopg

from ..errors import (
    DatabaseError,
    IntegrityViolation,
    NodeUnavailableError,
    QueryError,
    ReadOnlyViolation,
    TransactionConflict,
)
from .connect import describe_failure

__all__ = ["translate"]


def _query_error_class(sqlstate: str) -> type[QueryError]:
    if sqlstate.startswith("23"):
        return IntegrityViolation
    if sqlstate in ("40001", "40P01"):
        return TransactionConflict
    if sqlstate == "25006":
        return ReadOnlyViolation
    return QueryError


def translate(exc: psycopg.Error, node: str, role: str | None = None) -> DatabaseError:
    """The mlscale error for ``exc`` raised on ``node`` (raise it ``from exc``)."""
    sqlstate = exc.sqlstate
    if sqlstate is None or sqlstate.startswith(("08", "57P")):
        if isinstance(exc, psycopg.OperationalError):
            lost = NodeUnavailableError(f"lost node {node}: {describe_failure(exc)}")
            lost.node, lost.node_role = node, role
            return lost
        return DatabaseError(f"{describe_failure(exc)} (node {node})")
    err = _query_error_class(sqlstate)(
        f"{describe_failure(exc)} (node {node}, SQLSTATE {sqlstate})"
    )
    err.sqlstate = sqlstate
    err.node = node
    return err

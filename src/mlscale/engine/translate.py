"""Driver errors become the package's errors here, once, keeping the cause."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import BaseConnection

from ..errors import (
    DatabaseError,
    IntegrityViolation,
    MlscaleError,
    NodeUnavailableError,
    QueryError,
    ReadOnlyViolation,
    TransactionConflict,
)
from .connect import describe_failure

__all__ = ["node_failed", "translate", "translating"]


def _query_error_class(sqlstate: str) -> type[QueryError]:
    if sqlstate.startswith("23"):
        return IntegrityViolation
    if sqlstate in ("40001", "40P01"):
        return TransactionConflict
    if sqlstate == "25006":
        return ReadOnlyViolation
    return QueryError


def node_failed(exc: psycopg.Error, conn: BaseConnection[Any] | None = None) -> bool:
    """Whether ``exc`` means the node (or the way to it) failed, not the statement.

    With ``conn``, the connection the error came from, the connection decides: one
    that is closed or broken lost its server; on one that is still healthy, only a
    server going away (SQLSTATE 57P: shutdown, crash) or a connection-class error is
    the node's. The driver's own refusals (more than 65,535 parameters, a value it
    cannot adapt) leave the connection healthy and are the caller's, as is a
    protocol violation (08P01) the server reports for bad COPY data and then goes
    on. Without ``conn``, an OperationalError with no SQLSTATE counts as lost.
    """
    if conn is not None and conn.closed:  # broken too: a broken connection is closed
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate
    if conn is None:
        return sqlstate is None or sqlstate.startswith(("08", "57P"))
    return sqlstate is not None and sqlstate.startswith(("08", "57P")) and sqlstate != "08P01"


def translate(
    exc: psycopg.Error,
    node: str,
    role: str | None = None,
    conn: BaseConnection[Any] | None = None,
) -> DatabaseError:
    """The mlscale error for ``exc`` raised on ``node`` (raise it ``from exc``); ``conn``,
    the connection it came from if known, tells a lost node from a refused statement
    (see :func:`node_failed`)."""
    if node_failed(exc, conn):
        return NodeUnavailableError(
            f"lost node {node}: {describe_failure(exc)}", node=node, node_role=role
        )
    sqlstate = exc.sqlstate
    if sqlstate is None:  # the driver refused the statement: nothing ran
        message = describe_failure(exc)
        if "number of parameters" in message:  # libpq: "... must be between 0 and 65535"
            message += "; pass a long list as one array parameter: col = ANY(%s)"
        return QueryError(f"{message} (refused by the driver; node {node})", node=node)
    return _query_error_class(sqlstate)(
        f"{describe_failure(exc)} (node {node}, SQLSTATE {sqlstate})", sqlstate=sqlstate, node=node
    )


@contextmanager
def translating(
    node: str, role: str | None = "primary", conn: BaseConnection[Any] | None = None
) -> Iterator[None]:
    """Driver errors raised in the block become mlscale errors naming ``node``; pass
    ``conn``, the connection the block uses, to tell a lost node from a refused
    statement.

    An mlscale error (already translated, say for a node nested inside) passes
    through as it is. Works around ``await`` too: the block's exceptions reach it.
    """
    try:
        yield
    except MlscaleError:
        raise
    except psycopg.Error as exc:
        raise translate(exc, node, role, conn) from exc

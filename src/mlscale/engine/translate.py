"""Driver errors become the package's errors here, once, keeping the cause."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

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

__all__ = ["translate", "translating"]


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
            return NodeUnavailableError(
                f"lost node {node}: {describe_failure(exc)}", node=node, node_role=role
            )
        return DatabaseError(f"{describe_failure(exc)} (node {node})")
    return _query_error_class(sqlstate)(
        f"{describe_failure(exc)} (node {node}, SQLSTATE {sqlstate})", sqlstate=sqlstate, node=node
    )


@contextmanager
def translating(node: str, role: str | None = "primary") -> Iterator[None]:
    """Driver errors raised in the block become mlscale errors naming ``node``.

    An mlscale error (already translated, say for a node nested inside) passes
    through as it is. Works around ``await`` too: the block's exceptions reach it.
    """
    try:
        yield
    except MlscaleError:
        raise
    except psycopg.Error as exc:
        raise translate(exc, node, role) from exc

"""Driver errors as mlscale errors: a lost node only when the node (or the connection
to it) failed; the driver's refusals and the server's rejections are the caller's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import errors as e

from mlscale import NodeUnavailableError, QueryError
from mlscale.engine.translate import translate, translating

TOO_MANY = psycopg.OperationalError(
    "sending query and params failed: number of parameters must be between 0 and 65535"
)


@dataclass
class Conn:
    """What translate reads of a connection."""

    closed: bool = False


HEALTHY, CLOSED = Conn(closed=False), Conn(closed=True)


@pytest.mark.parametrize(
    ("exc", "conn", "lost"),
    [
        # The driver refused to send: the connection is fine, the statement is not.
        (TOO_MANY, HEALTHY, False),
        (psycopg.ProgrammingError("the query has 2 placeholders but 1 parameters"), HEALTHY, False),
        (psycopg.DataError("cannot dump type dict"), None, False),
        # The server reported bad COPY data as a protocol violation and carried on.
        (e.ProtocolViolation("insufficient data left in message"), HEALTHY, False),
        # The connection is gone, whatever the error says.
        (psycopg.OperationalError("server closed the connection unexpectedly"), CLOSED, True),
        (e.ProtocolViolation("insufficient data left in message"), CLOSED, True),
        (TOO_MANY, CLOSED, True),
        # The server is going away: shutdown, crash.
        (e.AdminShutdown("terminating connection due to administrator command"), HEALTHY, True),
        (e.CrashShutdown("terminating connection because of crash"), None, True),
        (e.ConnectionFailure("connection failure"), HEALTHY, True),
        # Without the connection, an OperationalError with no SQLSTATE counts as lost.
        (psycopg.OperationalError("consuming input failed: EOF"), None, True),
        # The server rejected the statement.
        (e.UndefinedTable('relation "nope" does not exist'), HEALTHY, False),
        (e.UniqueViolation("duplicate key"), CLOSED, True),  # ... and then went away
    ],
)
def test_lost_node_or_callers_error(exc: psycopg.Error, conn: Any, lost: bool) -> None:
    err = translate(exc, "g0-replica1", "replica", conn)
    if lost:
        assert isinstance(err, NodeUnavailableError)
        assert err.node == "g0-replica1" and err.node_role == "replica"
        assert str(err).startswith("lost node g0-replica1: ")
    else:
        assert isinstance(err, QueryError) and not isinstance(err, NodeUnavailableError)
        assert err.node == "g0-replica1"
        assert err.sqlstate == exc.sqlstate


def test_too_many_parameters_says_what_to_do() -> None:
    err = translate(TOO_MANY, "g0-primary", "primary", HEALTHY)
    assert isinstance(err, QueryError) and err.sqlstate is None
    assert "65535" in str(err) and "= ANY(%s)" in str(err) and "refused by the driver" in str(err)


def test_translating_takes_the_connection() -> None:
    with pytest.raises(QueryError) as caught, translating("g1-primary", conn=HEALTHY):
        raise TOO_MANY
    assert caught.value.__cause__ is TOO_MANY
    with pytest.raises(NodeUnavailableError), translating("g1-primary", conn=CLOSED):
        raise TOO_MANY

"""SQL the engine sends on its own behalf: session reset, transaction options."""

from __future__ import annotations

import enum

from psycopg import sql

__all__ = ["RESET_SESSION", "Isolation", "set_transaction"]


class Isolation(enum.StrEnum):
    """Transaction isolation levels."""

    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"


def set_transaction(isolation: Isolation | None, readonly: bool) -> sql.Composed | None:
    """``SET TRANSACTION ...`` for the options given, or None if there are none."""
    parts: list[sql.Composable] = []
    if isolation is not None:
        parts.append(sql.SQL("ISOLATION LEVEL ") + sql.SQL(Isolation(isolation).value.upper()))
    if readonly:
        parts.append(sql.SQL("READ ONLY"))
    if not parts:
        return None
    return sql.SQL("SET TRANSACTION ") + sql.SQL(", ").join(parts)


# DISCARD ALL minus DEALLOCATE ALL: the driver's prepared statements stay (it
# tracks them); the last result lists statements the user PREPAREd, to deallocate.
RESET_SESSION = (
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES; "
    "SELECT name FROM pg_prepared_statements WHERE name !~ '^_pg3_'"
)

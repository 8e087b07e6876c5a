"""Tables partitioned by UTC day: partition names, their DDL, and the catalog query
that lists them. Shared by the stores that keep data a day at a time and drop it a
whole day at a time (prediction logs, metrics). No I/O.

A day's partition of table ``t`` is ``t_dYYYYMMDD``, bounded ``[day, day + 1)`` in UTC.
"""

from __future__ import annotations

import datetime as dt
import re

from psycopg import sql

__all__ = [
    "PARTITIONS_SQL",
    "day_of_partition",
    "drop_sql",
    "partition_ddl",
    "partition_name",
    "utc_day",
    "utc_midnight",
]

_DAY = re.compile(r"_d(\d{8})$")

# The partitions of a table (one ``%s``: its name), by name.
PARTITIONS_SQL = (
    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_class p ON p.oid = i.inhparent "
    "WHERE p.relname = %s AND p.relnamespace = 'public'::regnamespace ORDER BY 1"
)


def utc_midnight(day: dt.date) -> dt.datetime:
    """The start of ``day`` in UTC."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def utc_day(when: dt.datetime) -> dt.date:
    """The UTC day of ``when`` (naive = UTC)."""
    return (when if when.tzinfo is None else when.astimezone(dt.UTC)).date()


def day_of_partition(name: str) -> dt.date | None:
    """The day a partition named ``<table>_dYYYYMMDD`` holds (None: not such a name)."""
    m = _DAY.search(name)
    if m is None:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%Y%m%d").date()
    except ValueError:
        return None


def partition_name(table: str, day: dt.date) -> str:
    """The name of ``table``'s partition of ``day``."""
    return f"{table}_d{day:%Y%m%d}"


def _utc(day: dt.date) -> str:
    return f"{day.isoformat()} 00:00:00+00"


def partition_ddl(table: str, day: dt.date) -> str:
    """CREATE TABLE IF NOT EXISTS of ``table``'s partition of ``day`` (UTC)."""
    return (
        sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})")
        .format(
            sql.Identifier(partition_name(table, day)),
            sql.Identifier(table),
            sql.Literal(_utc(day)),
            sql.Literal(_utc(day + dt.timedelta(days=1))),
        )
        .as_string(None)
    )


def drop_sql(partition: str) -> str:
    """DROP TABLE of one partition."""
    return sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(partition)).as_string(None)

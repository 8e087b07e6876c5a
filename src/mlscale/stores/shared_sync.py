# Generated from shared_async.py by scripts/async_to_sync.py: do not edit.
# Change shared_async.py and run the script again.
"""What every store uses (async source): a connection to the catalog that names a
catalog older than the store, work run on every shard group at once, key families
made on first need, tables sharded by a text key family made on the first write,
and tables partitioned by UTC day whose partitions are made ahead and dropped whole.

``shared_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection

from ..core import dayparts
from ..core.shardmaps import KeyFamily, SlotMap
from ..engine.cluster_sync import Cluster
from ..engine.concurrency_sync import SMALL_WORK_IN_PLACE, gather_all
from ..engine.scopes_sync import Transaction
from ..engine.translate import translating
from ..errors import CatalogError, MlscaleError

__all__ = ["DayPartitions", "LazyTables", "catalog", "ensure_family", "run_all"]

_EXISTS = ("42P07", "23505")  # duplicate table; a racing CREATE's catalog collision


@contextmanager
def catalog(cluster: Cluster, what: str) -> Iterator[Connection[Any]]:
    """A connection to the catalog, driver errors translated; a catalog that lacks the
    store's table (``what``, e.g. "feature views") is named as older than it."""
    try:
        with translating("control"):
            with cluster.connection("control") as conn:
                yield conn
    except CatalogError:
        raise
    except MlscaleError as exc:
        if isinstance(exc.__cause__, psycopg.errors.UndefinedTable):
            raise CatalogError(
                f"the catalog has no {what} yet (it predates them): run `mlscale catalog migrate`"
            ) from exc
        raise


def run_all(
    calls: Sequence[Callable[[], Any]], raise_first: bool = True, small: bool = False
) -> list[BaseException]:
    """Run ``calls`` at once; their errors, or the first raised. One call, or ``small``
    ones (about a millisecond each) where the world's concurrency costs more than
    that (threads), run in place, one after another."""
    if len(calls) == 1 or (small and SMALL_WORK_IN_PLACE):
        errors: list[BaseException] = []
        for call in calls:
            try:
                call()
            except MlscaleError as exc:
                if raise_first:
                    raise
                errors.append(exc)
        return errors
    outcomes = gather_all(calls, timeout=None, fatal=lambda e: False, on_abort=_nothing)
    errors = [o.error for o in outcomes if o.error is not None]
    if errors and raise_first:
        raise errors[0]
    return errors


def _nothing() -> None:
    return None


class LazyTables:
    """A store's tables, sharded on ``shard_key`` by the text key family ``family``:
    made on every group on the first write (the family gets an even slot map over every
    group if it has none), never by a read. Two processes making them at once is
    harmless: the loser finds them made. ``ddl``: table name -> CREATE TABLE;
    ``error``: the store's error class; ``what``: the store, in words."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        family: str,
        shard_key: str,
        ddl: Mapping[str, str],
        error: type[MlscaleError],
        what: str,
        keys: str,
    ) -> None:
        self._cluster = cluster
        self._family_name = family
        self._shard_key = shard_key
        self._ddl = ddl
        self._error = error
        self._what = what
        self._keys = keys  # what the family's keys are, in words (e.g. "model names")
        self._made = False  # every table known to exist (they are never dropped by us)
        self._refreshed = 0.0  # monotonic time of the last directory refresh for a miss

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    def exist(self) -> bool:
        """Whether the tables exist (as far as this client's directory knows)."""
        if self._made:
            return True
        tables = (self._cluster.shards()).tables
        made = all(name in tables for name in self._ddl)
        if not made and time.monotonic() - self._refreshed > 1.0:
            # Made by another process moments ago: its NOTIFY may not have reached us yet.
            self._refreshed = time.monotonic()
            tables = (self._cluster.refresh_shards()).tables
        self._made = all(name in tables for name in self._ddl)
        return self._made

    def ensure(self) -> None:
        """Make the key family's map and the tables where missing."""
        if self.exist():
            return
        self._family()
        known = (self._cluster.shards()).tables
        for name, ddl in self._ddl.items():
            if name in known:
                continue
            try:
                self._cluster.create_sharded_table(
                    ddl, shard_key=self._shard_key, family=self._family_name
                )
            except MlscaleError:
                known = (self._cluster.refresh_shards()).tables
                if name not in known:  # not a racing creation: a real failure
                    raise
        self._made = True

    def _family(self) -> None:
        ensure_family(
            self._cluster,
            self._family_name,
            "text",
            what=self._what,
            error=self._error,
            keys=self._keys,
        )


def ensure_family(
    cluster: Cluster,
    name: str,
    key_type: str,
    *,
    what: str,
    error: type[MlscaleError],
    keys: str,
) -> None:
    """Key family ``name`` of one key of ``key_type`` ("text", "int8", ...): made with an
    even slot map over every shard group if missing (a racing creation is harmless),
    else checked to have that key type (``error`` naming ``what`` needs it, for
    ``keys``, if not)."""
    shards = cluster.shards()
    if name in shards.maps:
        have = tuple(shards.map_of(name).key_types)
        if have != (key_type,):
            raise error(
                f"key family {name!r} exists with key types {', '.join(have)}; the "
                f"{what} needs it to have one {key_type} key ({keys})"
            )
        return
    try:
        groups = [g.name for g in cluster.config.shard_groups]
        even = SlotMap.even(KeyFamily.of(name, key_type), groups)
        cluster.create_shard_map(even, what)
    except MlscaleError:
        shards = cluster.refresh_shards()
        if name not in shards.maps:  # not a racing creation: a real failure
            raise


class DayPartitions:
    """Partitions by UTC day of tables on every shard group (see
    :mod:`mlscale.core.dayparts`): made when needed and remembered per process, so a
    steady writer checks nothing it already made; listed; and dropped whole."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._made: set[tuple[str, str]] = set()  # (group, partition) known to exist

    @property
    def groups(self) -> list[str]:
        """The cluster's shard groups."""
        return [g.name for g in self._cluster.config.shard_groups]

    def ensure(
        self,
        tables: Sequence[str],
        days: Iterable[dt.date],
        groups: Iterable[str] | None = None,
    ) -> None:
        """The partitions of ``days`` of ``tables`` on ``groups`` (default: every
        group), made if missing."""
        wanted = list(days)
        for group in self.groups if groups is None else groups:
            for day in wanted:
                for table in tables:
                    name = dayparts.partition_name(table, day)
                    if (group, name) in self._made:
                        continue
                    try:
                        self._cluster.as_written(group).execute(dayparts.partition_ddl(table, day))
                    except MlscaleError as exc:
                        if getattr(exc, "sqlstate", None) not in _EXISTS:
                            raise
                    self._made.add((group, name))

    def forget(self, tables: Sequence[str], days: Iterable[dt.date], group: str) -> None:
        """Forget that ``days``' partitions of ``tables`` exist on ``group`` (one was
        dropped since this process made it): the next :meth:`ensure` makes them again."""
        for day in days:
            for table in tables:
                self._made.discard((group, dayparts.partition_name(table, day)))

    def forget_tables(self, tables: Sequence[str]) -> None:
        """Forget every partition of ``tables`` (they were dropped)."""
        prefixes = tuple(f"{t}_d" for t in tables)
        self._made = {(g, p) for g, p in self._made if not p.startswith(prefixes)}

    def days(self, table: str) -> dict[str, list[dt.date]]:
        """Per group, the days whose partitions of ``table`` exist."""
        out: dict[str, list[dt.date]] = {}
        for group in self.groups:
            rows = self._cluster.as_written(group).fetch_all(
                dayparts.PARTITIONS_SQL, (table,), consistency="strong"
            )
            days = [dayparts.day_of_partition(r[0]) for r in rows]
            out[group] = sorted(d for d in days if d is not None)
        return out

    def drop_before(
        self, tx: Transaction, group: str, tables: Sequence[str], before: dt.date
    ) -> list[tuple[str, dt.date]]:
        """In ``tx`` (a transaction on ``group``), drop the partitions of ``tables`` of
        every day before ``before``; the partitions dropped and their days."""
        dropped: list[tuple[str, dt.date]] = []
        for table in tables:
            for (name,) in tx.fetch_all(dayparts.PARTITIONS_SQL, (table,)):
                day = dayparts.day_of_partition(name)
                if day is not None and day < before:
                    tx.execute(dayparts.drop_sql(name))
                    dropped.append((name, day))
        self._made -= {(group, name) for name, _ in dropped}
        return dropped

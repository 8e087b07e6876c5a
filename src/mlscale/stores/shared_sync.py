# Generated from shared_async.py by scripts/async_to_sync.py: do not edit.
# Change shared_async.py and run the script again.
"""What every store uses (async source): a connection to the catalog that names a
catalog older than the store, work run on every shard group at once, and tables
sharded by a text key family made on the first write.

``shared_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection

from ..core.shardmaps import KeyFamily, SlotMap
from ..engine.cluster_sync import Cluster
from ..engine.concurrency_sync import SMALL_WORK_IN_PLACE, gather_all
from ..engine.translate import translating
from ..errors import CatalogError, MlscaleError

__all__ = ["LazyTables", "catalog", "run_all"]


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
        name = self._family_name
        shards = self._cluster.shards()
        if name in shards.maps:
            have = tuple(shards.map_of(name).key_types)
            if have != ("text",):
                raise self._error(
                    f"key family {name!r} exists with key types {', '.join(have)}; the "
                    f"{self._what} needs it to have one text key ({self._keys})"
                )
            return
        try:
            even = SlotMap.even(KeyFamily.of(name, "text"), self.groups)
            self._cluster.create_shard_map(even, self._what)
        except MlscaleError:
            shards = self._cluster.refresh_shards()
            if name not in shards.maps:  # not a racing creation: a real failure
                raise

# Generated from shared_async.py by scripts/async_to_sync.py: do not edit.
# Change shared_async.py and run the script again.
"""What every store uses (async source): a connection to the catalog that names a
catalog older than the store, and work run on every shard group at once.

``shared_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import Connection

from ..engine.cluster_sync import Cluster
from ..engine.concurrency_sync import SMALL_WORK_IN_PLACE, gather_all
from ..engine.translate import translating
from ..errors import CatalogError, MlscaleError

__all__ = ["catalog", "run_all"]


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

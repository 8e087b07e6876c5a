# Generated from tables_async.py by scripts/async_to_sync.py: do not edit.
# Change tables_async.py and run the script again.
"""The experiment store's tables: made on every group on the first write, placed by
the key family of experiment names (async source).

The family (``experiments``, text keys) gets an even slot map over every shard
group if it has none; the two tables (:mod:`mlscale.core.experiments.sql`) are then
created sharded on ``experiment``. Two processes making them at once is harmless:
the loser finds them made. Reads never make anything: before the first write there
is no document.

``tables_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from ...core.experiments import sql
from ...engine.cluster_sync import Cluster
from ...errors import ExperimentError
from ..shared_sync import LazyTables

__all__ = ["ExperimentTables"]


class ExperimentTables(LazyTables):
    """Where an experiment's rows live, and the tables made when first needed."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(
            cluster,
            family=sql.FAMILY,
            shard_key="experiment",
            ddl=sql.DDL,
            error=ExperimentError,
            what="experiment store",
            keys="experiment names",
        )

    def group_of(self, experiment: str) -> str:
        """The shard group holding experiment ``experiment``'s documents."""
        return self._cluster.locate(sql.FAMILY, experiment)

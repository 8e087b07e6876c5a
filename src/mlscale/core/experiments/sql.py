"""The experiment store's tables (text only; the store runs it).

Two tables of the same shape, sharded on ``experiment`` by key family
:data:`FAMILY` (text keys), so an experiment and all of its runs sit on one shard
group: ``mlscale_experiments`` (one row per experiment, ``id`` = its name) and
``mlscale_runs``. ``doc`` is the whole document, ``_id`` and ``experiment``
included, so filters on them work like filters on any field.
"""

from __future__ import annotations

__all__ = ["COLLECTIONS", "DDL", "EXPERIMENTS", "FAMILY", "RUNS", "table_of"]

from ...errors import ExperimentError

FAMILY = "experiments"
EXPERIMENTS = "mlscale_experiments"
RUNS = "mlscale_runs"
COLLECTIONS = {"experiments": EXPERIMENTS, "runs": RUNS}

DDL = {
    name: (
        f"CREATE TABLE {name} (experiment text NOT NULL, id text NOT NULL, "
        "doc jsonb NOT NULL, PRIMARY KEY (experiment, id))"
    )
    for name in (EXPERIMENTS, RUNS)
}


def table_of(collection: str) -> str:
    """The table of collection ``runs`` or ``experiments``."""
    try:
        return COLLECTIONS[collection]
    except KeyError:
        raise ExperimentError(
            f"no collection {collection!r} (there are: {', '.join(COLLECTIONS)})"
        ) from None

"""Experiments and runs as JSON documents on sharded PostgreSQL, queried with a
MongoDB-style subset (filters, updates, counts, a small aggregate, path indexes).

    from mlscale.stores.experiments import ExperimentStore

    store = ExperimentStore(cluster)
    store.create_experiment("ranker-sweep", {"owner": "ana", "tags": ["search"]})
    run = store.log_run("ranker-sweep", {"params": {"lr": 0.01, "layers": [64, 32]},
                                         "metrics": {"auc": 0.91}, "notes": "baseline"})
    store.find({"params.lr": {"$lte": 0.01}, "tags": "search"},
               sort={"metrics.auc": -1}, limit=10, projection={"params": 1})
    store.update_many({"experiment": "ranker-sweep"}, {"$inc": {"metrics.reruns": 1}})
    store.aggregate([{"$group": {"_id": "$params.lr", "best": {"$max": "$metrics.auc"}}}])
    store.create_index("params.lr")

See :mod:`mlscale.core.experiments` for the semantics supported and
:mod:`.store_async` for where queries run.
"""

from ...core.experiments.results import IndexInfo, UpdateResult
from .store_async import AsyncExperimentStore
from .store_sync import ExperimentStore

__all__ = ["AsyncExperimentStore", "ExperimentStore", "IndexInfo", "UpdateResult"]

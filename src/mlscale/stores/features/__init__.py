"""The feature store: typed, versioned feature views on sharded PostgreSQL, online reads
at array speed with an optional cache in front, pushes through binary COPY, and
point-in-time training sets.

    from mlscale.stores.features import FeatureStore, FeatureView, Feature, Entity

    view = FeatureView("user_stats", entities=(Entity("user_id", "int8"),),
                       features=(Feature("clicks_7d"), Feature("spend_30d")), ttl_s=86400)
    store = FeatureStore(cluster)
    store.register(view)
    result = store.push("user_stats", frame)            # DataFrame, Arrow table or records
    got = store.get_online_features(["user_stats:*"], [1, 2, 3], token=result.token)
    matrix, columns = got.to_numpy()
"""

from ...core.features.online import OnlineFeatures
from ...core.features.results import MaterializeResult, PushResult, ViewInfo
from ...core.features.spec import Entity, Feature, FeatureType, FeatureView
from .store_async import AsyncFeatureStore
from .store_sync import FeatureStore

__all__ = [
    "AsyncFeatureStore",
    "Entity",
    "Feature",
    "FeatureStore",
    "FeatureType",
    "FeatureView",
    "MaterializeResult",
    "OnlineFeatures",
    "PushResult",
    "ViewInfo",
]

"""The model registry: models, numbered versions, aliases (staging, production,
archived, or any name) moved with optimistic concurrency and a history, metadata,
metrics, artifact URIs and lineage to feature views, on sharded PostgreSQL; lookups by
alias served from the cache's L1 and L2, invalidated on every change.

    from mlscale.stores.registry import ModelRegistry

    registry = ModelRegistry(cluster, cache=cache)          # cache optional
    registry.create_model("ranker", description="search ranker", actor="ana")
    v = registry.register_version("ranker", artifact_uri="s3://models/ranker/7",
                                  metrics={"auc": 0.91}, feature_views=["user_stats:2"],
                                  actor="ana")
    state = registry.alias_state("ranker", "production", consistency="strong")
    registry.transition("ranker", v.version, "production",
                        expected_revision=state.revision, actor="ana", reason="auc +2%")
    registry.get_production_model("ranker").artifact_uri

See :mod:`.store_async` for the guarantees, :mod:`.visibility` for measuring how soon
every process sees a transition.
"""

from ...core.registry.names import ARCHIVED, PRODUCTION, STAGING, WELL_KNOWN_ALIASES
from ...core.registry.results import (
    AliasState,
    Model,
    ModelVersion,
    Transition,
    TransitionResult,
)
from .store_async import AsyncModelRegistry
from .store_sync import ModelRegistry

__all__ = [
    "ARCHIVED",
    "PRODUCTION",
    "STAGING",
    "WELL_KNOWN_ALIASES",
    "AliasState",
    "AsyncModelRegistry",
    "Model",
    "ModelRegistry",
    "ModelVersion",
    "Transition",
    "TransitionResult",
]

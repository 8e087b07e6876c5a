"""mlscale: outgrow a single PostgreSQL server without rewriting the ML platform's data code.

The public API::

    from mlscale import Cluster
    with Cluster.from_file(".mlscale/mlscale.toml") as cluster:
        cluster.execute("INSERT INTO features VALUES (%s, %s)", (42, 0.5))  # primary
        cluster.fetch_all("SELECT * FROM features")                          # a replica

Sharding: a key family's map places keys on shard groups; sharded tables route by key::

    cluster.create_shard_map(SlotMap.even(KeyFamily.of("users", "int8"), ["g0", "g1"]))
    cluster.create_sharded_table(
        "CREATE TABLE events (user_id bigint, id bigint DEFAULT mlscale_sys.next_id(), "
        "PRIMARY KEY (user_id, id))", shard_key="user_id", family="users")
    cluster.execute("INSERT INTO events (user_id) VALUES (%s), (%s)", (1, 2))  # split by key
    cluster.fetch_all("SELECT * FROM events WHERE user_id = %s", (1,))          # one group
"""

import importlib
from typing import TYPE_CHECKING, Any

from .core.scatter.result import ScatterResult
from .core.sharding import ShardDirectory
from .core.shardmaps import (
    GeoMap,
    HashRing,
    KeyFamily,
    KeyRange,
    LookupMap,
    RangeMap,
    ShardMap,
    SlotMap,
)
from .core.slots import KeyType
from .core.topology import Node, Role
from .engine.cluster_async import AsyncCluster
from .engine.cluster_sync import Cluster
from .engine.context import ClusterState
from .engine.scopes_async import AsyncScope, AsyncTransaction
from .engine.scopes_sync import Scope, Transaction
from .engine.session_async import AsyncSession
from .engine.session_sync import Session
from .engine.statements import Isolation
from .engine.stats import BanInfo, ClusterStats, RouteExplanation
from .errors import (
    AuthenticationError,
    CacheError,
    CacheValueTooLarge,
    CatalogError,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNotFound,
    ClusterDirError,
    ClusterError,
    CollectionNotFound,
    CommitOutcomeUnknown,
    ConfigError,
    DatabaseError,
    ExperimentError,
    ExperimentNotFound,
    FeatureError,
    FeatureViewNotFound,
    IntegrityViolation,
    LineProtocolError,
    MeasurementNotFound,
    MetricsError,
    MissingBinaryError,
    MlscaleError,
    ModelExists,
    ModelNotFound,
    NodeStartError,
    NodeUnavailableError,
    NoReplicaAvailable,
    NotFound,
    PartialWriteError,
    PortInUseError,
    PredictionError,
    PredictionLogNotFound,
    QueryError,
    ReadOnlyViolation,
    RegistryConflict,
    RegistryError,
    RoutingError,
    SchemaError,
    ShardGroupError,
    ShardKeyError,
    TransactionConflict,
    UnsupportedQuery,
    VectorError,
    WriterQueueFull,
)

if TYPE_CHECKING:
    from .config import ClusterConfig, load_config, parse_config
    from .local.cluster import LocalCluster

__version__ = "0.1.0"

__all__ = [
    "AsyncCluster",
    "AsyncScope",
    "AsyncSession",
    "AsyncTransaction",
    "AuthenticationError",
    "BanInfo",
    "CacheError",
    "CacheValueTooLarge",
    "CatalogError",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNotFound",
    "Cluster",
    "ClusterConfig",
    "ClusterDirError",
    "ClusterError",
    "ClusterState",
    "ClusterStats",
    "CollectionNotFound",
    "CommitOutcomeUnknown",
    "ConfigError",
    "DatabaseError",
    "ExperimentError",
    "ExperimentNotFound",
    "FeatureError",
    "FeatureViewNotFound",
    "GeoMap",
    "HashRing",
    "IntegrityViolation",
    "Isolation",
    "KeyFamily",
    "KeyRange",
    "KeyType",
    "LineProtocolError",
    "LocalCluster",
    "LookupMap",
    "MeasurementNotFound",
    "MetricsError",
    "MissingBinaryError",
    "MlscaleError",
    "ModelExists",
    "ModelNotFound",
    "NoReplicaAvailable",
    "Node",
    "NodeStartError",
    "NodeUnavailableError",
    "NotFound",
    "PartialWriteError",
    "PortInUseError",
    "PredictionError",
    "PredictionLogNotFound",
    "QueryError",
    "RangeMap",
    "ReadOnlyViolation",
    "RegistryConflict",
    "RegistryError",
    "Role",
    "RouteExplanation",
    "RoutingError",
    "ScatterResult",
    "SchemaError",
    "Scope",
    "Session",
    "ShardDirectory",
    "ShardGroupError",
    "ShardKeyError",
    "ShardMap",
    "SlotMap",
    "Transaction",
    "TransactionConflict",
    "UnsupportedQuery",
    "VectorError",
    "WriterQueueFull",
    "__version__",
    "load_config",
    "parse_config",
]


# Imported on first use (PEP 562), so that `import mlscale` stays cheap: LocalCluster
# runs servers on this machine (subprocesses, cgroups, Redis: ~80 ms to load) and a
# process using an existing cluster never needs it; the config models load pydantic
# (~70 ms), needed only once a config is read.
_LAZY = {
    "ClusterConfig": "config",
    "load_config": "config",
    "parse_config": "config",
    "LocalCluster": "local.cluster",
}


# Hidden from type checkers, which see the imports above instead: a visible module
# __getattr__ would make them accept any misspelt name as Any.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """A name of :data:`_LAZY`, imported from its module on first use."""
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value  # later lookups find it without calling this
        return value


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted({*globals(), *__all__})

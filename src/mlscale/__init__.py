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

from .config import ClusterConfig, load_config, parse_config
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
from .engine.base import ClusterState, Isolation
from .engine.cluster_async import AsyncCluster, AsyncScope, AsyncSession, AsyncTransaction
from .engine.cluster_sync import Cluster, Scope, Session, Transaction
from .errors import (
    CatalogError,
    ClusterDirError,
    ClusterError,
    ConfigError,
    DatabaseError,
    IntegrityViolation,
    MissingBinaryError,
    MlscaleError,
    NodeStartError,
    NodeUnavailableError,
    PartialWriteError,
    PortInUseError,
    QueryError,
    ReadOnlyViolation,
    RoutingError,
    SchemaError,
    ShardKeyError,
    TransactionConflict,
)
from .local.cluster import LocalCluster

__version__ = "0.1.0"

__all__ = [
    "AsyncCluster",
    "AsyncScope",
    "AsyncSession",
    "AsyncTransaction",
    "CatalogError",
    "Cluster",
    "ClusterConfig",
    "ClusterDirError",
    "ClusterError",
    "ClusterState",
    "ConfigError",
    "DatabaseError",
    "GeoMap",
    "HashRing",
    "IntegrityViolation",
    "Isolation",
    "KeyFamily",
    "KeyRange",
    "KeyType",
    "LocalCluster",
    "LookupMap",
    "MissingBinaryError",
    "MlscaleError",
    "Node",
    "NodeStartError",
    "NodeUnavailableError",
    "PartialWriteError",
    "PortInUseError",
    "QueryError",
    "RangeMap",
    "ReadOnlyViolation",
    "Role",
    "RoutingError",
    "SchemaError",
    "Scope",
    "Session",
    "ShardDirectory",
    "ShardKeyError",
    "ShardMap",
    "SlotMap",
    "Transaction",
    "TransactionConflict",
    "__version__",
    "load_config",
    "parse_config",
]

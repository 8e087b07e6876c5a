"""mlscale: outgrow a single PostgreSQL server without rewriting the ML platform's data code.

The public API::

    from mlscale import Cluster
    with Cluster.from_file(".mlscale/mlscale.toml") as cluster:
        cluster.execute("INSERT INTO features VALUES (%s, %s)", (42, 0.5))  # primary
        cluster.fetch_all("SELECT * FROM features")                          # a replica
"""

from .config import ClusterConfig, load_config, parse_config
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
    PortInUseError,
    QueryError,
    ReadOnlyViolation,
    RoutingError,
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
    "IntegrityViolation",
    "Isolation",
    "LocalCluster",
    "MissingBinaryError",
    "MlscaleError",
    "Node",
    "NodeStartError",
    "NodeUnavailableError",
    "PortInUseError",
    "QueryError",
    "ReadOnlyViolation",
    "Role",
    "RoutingError",
    "Scope",
    "Session",
    "Transaction",
    "TransactionConflict",
    "__version__",
    "load_config",
    "parse_config",
]

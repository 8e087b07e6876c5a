"""mlscale: outgrow a single PostgreSQL server without rewriting the ML platform's data code.

The public API::

    from mlscale import Cluster
    with Cluster.from_file(".mlscale/mlscale.toml") as cluster:
        with cluster.connection() as conn:
            conn.execute("SELECT 1")
"""

from .config import ClusterConfig, load_config, parse_config
from .core.topology import Node, Role
from .engine.cluster import AsyncCluster, Cluster, ClusterState
from .errors import (
    CatalogError,
    ClusterDirError,
    ClusterError,
    ConfigError,
    DatabaseError,
    MissingBinaryError,
    MlscaleError,
    NodeStartError,
    NodeUnavailableError,
    PortInUseError,
)
from .local.cluster import LocalCluster

__version__ = "0.1.0"

__all__ = [
    "AsyncCluster",
    "CatalogError",
    "Cluster",
    "ClusterConfig",
    "ClusterDirError",
    "ClusterError",
    "ClusterState",
    "ConfigError",
    "DatabaseError",
    "LocalCluster",
    "MissingBinaryError",
    "MlscaleError",
    "Node",
    "NodeStartError",
    "NodeUnavailableError",
    "PortInUseError",
    "Role",
    "__version__",
    "load_config",
    "parse_config",
]

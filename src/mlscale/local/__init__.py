"""Real local clusters: PostgreSQL primaries, streaming replicas and Redis on loopback."""

from .cluster import LocalCluster, UpReport

__all__ = ["LocalCluster", "UpReport"]

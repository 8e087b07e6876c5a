# Generated from rooms_async.py by scripts/async_to_sync.py: do not edit.
# Change rooms_async.py and run the script again.
"""The rooms of one cluster, which its scopes, sessions and transactions share (async
source).

``rooms_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import ConnectionPool

from .context import ClusterContext
from .directory_sync import Directory
from .fanout_sync import Fanout
from .hooks import CommitHooks
from .nodes_sync import Nodes
from .router_sync import Router
from .scatter_sync import Scatter

__all__ = ["Rooms"]


@dataclass(frozen=True, slots=True)
class Rooms:
    """The rooms of one cluster, shared by its scopes, sessions and transactions."""

    context: ClusterContext[ConnectionPool[Any]]
    nodes: Nodes
    router: Router
    directory: Directory
    fanout: Fanout
    scatter: Scatter
    hooks: CommitHooks = field(default_factory=CommitHooks)

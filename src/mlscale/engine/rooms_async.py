"""The rooms of one cluster, which its scopes, sessions and transactions share (async
source).

``rooms_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from .context import ClusterContext
from .directory_async import AsyncDirectory
from .fanout_async import AsyncFanout
from .hooks import CommitHooks
from .nodes_async import AsyncNodes
from .router_async import AsyncRouter
from .scatter_async import AsyncScatter

__all__ = ["AsyncRooms"]


@dataclass(frozen=True, slots=True)
class AsyncRooms:
    """The rooms of one cluster, shared by its scopes, sessions and transactions."""

    context: ClusterContext[AsyncConnectionPool[Any]]
    nodes: AsyncNodes
    router: AsyncRouter
    directory: AsyncDirectory
    fanout: AsyncFanout
    scatter: AsyncScatter
    hooks: CommitHooks = field(default_factory=CommitHooks)

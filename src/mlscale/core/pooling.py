"""Connection pool sizing and per-node pool parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations name them; importing config loads pydantic
    from ..config import PoolConfig

__all__ = ["PoolSize", "formula_size", "pool_size"]


def formula_size(cores: int, spindles: int) -> int:
    """The classic PostgreSQL pool size: connections = 2 x cores + spindles."""
    if cores < 1 or spindles < 0:
        raise ValueError(f"need cores >= 1 and spindles >= 0, got {cores=}, {spindles=}")
    return 2 * cores + spindles


@dataclass(frozen=True, slots=True)
class PoolSize:
    """Bounds of one node's pool, in connections."""

    min_size: int
    max_size: int


def pool_size(config: PoolConfig, cpu_count: int | None) -> PoolSize:
    """The pool bounds for ``config`` on a machine with ``cpu_count`` cores.

    ``max_size`` from the config wins; otherwise the formula with the config's
    ``cores`` or the machine's. ``min_size`` never exceeds ``max_size``.
    """
    if config.max_size is not None:
        max_size = config.max_size
    else:
        max_size = formula_size(config.cores or cpu_count or 1, config.spindles)
    return PoolSize(min_size=min(config.min_size, max_size), max_size=max_size)

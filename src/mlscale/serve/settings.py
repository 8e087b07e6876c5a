"""What one ``mlscale serve`` process is told: where the cluster's config is, and its
limits. Passed to uvicorn's worker processes through the environment as JSON (a path
and numbers only: the config file keeps its own secrets, none travel in argv)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

__all__ = ["ENV_VAR", "ServeSettings"]

ENV_VAR = "MLSCALE_SERVE_SETTINGS"


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Settings of the HTTP service.

    ``config_path``: the cluster's topology config (``mlscale.toml``).
    ``max_body_bytes``: a request body over this is refused (413) before it is parsed.
    ``key_cache_s``: how long a verified API key is trusted without asking the
    catalog again (seconds), so a revoked key stops working within that.
    ``ready_timeout_s``: how long ``/readyz`` waits for every node to answer (seconds).
    ``flush_interval_s``: the prediction writers' batching interval (seconds).
    ``flush_wait_s``: how long a ``wait=true`` prediction request waits for its
    commit before it answers 503 (the rows stay queued and are written later).
    ``shutdown_flush_s``: at shutdown, how long the writers may take to write what
    they acknowledged (seconds).
    """

    config_path: str
    max_body_bytes: int = 1 << 20
    key_cache_s: float = 5.0
    ready_timeout_s: float = 1.0
    flush_interval_s: float = 0.2
    flush_wait_s: float = 30.0
    shutdown_flush_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be at least 1024, got {self.max_body_bytes}")
        for name in (
            "key_cache_s",
            "ready_timeout_s",
            "flush_interval_s",
            "flush_wait_s",
            "shutdown_flush_s",
        ):
            value = getattr(self, name)
            if not value >= 0:
                raise ConfigError(f"{name} must be >= 0, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)

    def to_env(self) -> dict[str, str]:
        """The environment entry that hands these settings to worker processes."""
        return {ENV_VAR: json.dumps(self.to_dict())}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        """The settings :meth:`to_env` wrote (``environ``: default ``os.environ``)."""
        env = os.environ if environ is None else environ
        text = env.get(ENV_VAR)
        if not text:
            raise ConfigError(f"{ENV_VAR} is not set: start the service with `mlscale serve`")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_VAR} is not JSON: {exc}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or "config_path" not in data or set(data) - known:
            raise ConfigError(f"{ENV_VAR} must be an object with config_path and {sorted(known)}")
        return cls(**data)

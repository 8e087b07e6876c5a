"""How to reach a node: connection parameters and one-off connections.

Secrets stay out of conninfo strings and logs: a passfile is handed to libpq by
path, an environment password is passed as a separate keyword.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import psycopg

from ..core.topology import Node
from ..errors import ConfigError, NodeUnavailableError

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["connect", "connect_kwargs", "describe_failure", "redis_password"]


def connect_kwargs(
    node: Node, config: ClusterConfig, *, connect_timeout: float | None = None
) -> dict[str, Any]:
    """libpq parameters for ``node``, the secret included as passfile or password."""
    timeout = connect_timeout if connect_timeout is not None else config.pools.connect_timeout_s
    kwargs: dict[str, Any] = {
        "host": node.host,
        "port": node.port,
        "dbname": node.dbname,
        "user": node.user,
        "connect_timeout": max(1, round(timeout)),
        "application_name": "mlscale",
    }
    auth = config.auth
    if auth.passfile is not None:
        kwargs["passfile"] = str(config.resolve(auth.passfile))
    elif auth.password_env:
        password = os.environ.get(auth.password_env)
        if password is None:
            raise ConfigError(
                f"auth.password_env names ${auth.password_env}, which is not set; "
                "export it or use auth.passfile"
            )
        kwargs["password"] = password
    return kwargs


def redis_password(config: ClusterConfig) -> str | None:
    """The Redis password from its env var or file, if one is configured."""
    rc = config.redis
    if rc is None:
        return None
    if rc.password_env:
        value = os.environ.get(rc.password_env)
        if value is None:
            raise ConfigError(f"redis.password_env names ${rc.password_env}, which is not set")
        return value
    if rc.password_file is not None:
        path = config.resolve(rc.password_file)
        try:
            return path.read_text().strip() if path else None
        except OSError as exc:
            raise ConfigError(f"redis.password_file {path}: cannot read ({exc.strerror})") from exc
    return None


def describe_failure(exc: BaseException) -> str:
    """The first line of a driver error: enough to act on, never a secret."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connect(
    node: Node,
    config: ClusterConfig,
    *,
    dbname: str | None = None,
    autocommit: bool = True,
    connect_timeout: float | None = None,
) -> psycopg.Connection[Any]:
    """A new connection to ``node`` (not pooled), errors in the package's terms."""
    kwargs = connect_kwargs(node, config, connect_timeout=connect_timeout)
    if dbname is not None:
        kwargs["dbname"] = dbname
    try:
        return psycopg.connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise NodeUnavailableError(
            f"cannot connect to node {node.name} at {node.address}: {describe_failure(exc)}",
            node=node.name,
            node_role=node.role.value,
        ) from exc

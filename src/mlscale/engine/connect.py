"""How to reach a node: connection parameters, one-off connections, refused logins.

Secrets stay out of conninfo strings and logs: a passfile is handed to libpq by
path, an environment password is passed as a separate keyword.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

import psycopg

from ..core.topology import Node
from ..errors import AuthenticationError, ConfigError, NodeUnavailableError

if TYPE_CHECKING:
    from ..config import ClusterConfig, RedisClusterConfig, RedisConfig

__all__ = [
    "auth_problems",
    "connect",
    "connect_kwargs",
    "describe_failure",
    "login_refused",
    "redis_cluster_password",
    "redis_password",
    "refused_login_error",
]

# A login that failed never opened a session, so libpq has no SQLSTATE to give
# (psycopg's error has none): the words are all there is. The server's messages of
# class 28 (28P01 invalid_password, 28000 invalid_authorization_specification) and
# libpq's own when it has no password to send; clusters run with lc_messages C.
_REFUSED_LOGIN = (
    "authentication failed",  # password, SCRAM, md5, peer, ident, ...
    "no password supplied",  # libpq: no passfile entry, no password given
    "no pg_hba.conf entry",
    "pg_hba.conf rejects connection",
    "password is required",
)


def connect_kwargs(
    node: Node, config: ClusterConfig, *, connect_timeout: float | None = None
) -> dict[str, Any]:
    """libpq parameters for ``node``, the secret included as passfile or password, and
    the socket timeouts of ``config.pools`` (seconds; ``tcp_user_timeout`` in ms)."""
    timeout = connect_timeout if connect_timeout is not None else config.pools.connect_timeout_s
    kwargs: dict[str, Any] = {
        "host": node.host,
        "port": node.port,
        "dbname": node.dbname,
        "user": node.user,
        "connect_timeout": max(1, round(timeout)),
        "application_name": "mlscale",
        # A host that stops answering must not hold a connection forever (see
        # PoolConfig): keepalives for an idle one, a user timeout for a busy one.
        "keepalives": 1,
        "keepalives_idle": config.pools.keepalives_idle_s,
        "keepalives_interval": config.pools.keepalives_interval_s,
        "keepalives_count": config.pools.keepalives_count,
    }
    if config.pools.tcp_user_timeout_s > 0:
        kwargs["tcp_user_timeout"] = max(1, round(config.pools.tcp_user_timeout_s * 1000))
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


def _redis_secret(config: ClusterConfig, section: str) -> str | None:
    """The password of the ``[redis]`` or ``[redis_cluster]`` section, from its env var
    or file, if one is configured."""
    rc: RedisConfig | RedisClusterConfig | None = getattr(config, section)
    if rc is None:
        return None
    if rc.password_env:
        value = os.environ.get(rc.password_env)
        if value is None:
            raise ConfigError(f"{section}.password_env names ${rc.password_env}, which is not set")
        return value
    if rc.password_file is not None:
        path = config.resolve(rc.password_file)
        try:
            return path.read_text().strip() if path else None
        except OSError as exc:
            raise ConfigError(
                f"{section}.password_file {path}: cannot read ({exc.strerror})"
            ) from exc
    return None


def redis_password(config: ClusterConfig) -> str | None:
    """The Redis password from its env var or file, if one is configured."""
    return _redis_secret(config, "redis")


def redis_cluster_password(config: ClusterConfig) -> str | None:
    """The Redis Cluster's password from its env var or file, if one is configured."""
    return _redis_secret(config, "redis_cluster")


def _passfile_problem(path: os.PathLike[str] | str) -> str | None:
    """Why libpq would not read passfile ``path``, or None if it would."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "is not a plain file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # libpq warns on stderr and skips such a file, then has no password to send.
        return "has group or world access, so libpq ignores it (chmod 600 it)"
    return None


def auth_problems(config: ClusterConfig) -> list[str]:
    """What keeps the configured PostgreSQL and Redis secrets from being read: a
    passfile that is missing, unreadable or too open; an unset variable."""
    problems = []
    auth = config.auth
    if auth.passfile is not None:
        path = config.resolve(auth.passfile)
        problem = _passfile_problem(path) if path is not None else None
        if problem:
            problems.append(f"auth.passfile {path} {problem}")
    elif auth.password_env and auth.password_env not in os.environ:
        problems.append(f"auth.password_env names ${auth.password_env}, which is not set")
    for section in ("redis", "redis_cluster"):
        rc: RedisConfig | RedisClusterConfig | None = getattr(config, section)
        if rc is not None and rc.password_env and rc.password_env not in os.environ:
            problems.append(f"{section}.password_env names ${rc.password_env}, which is not set")
        if rc is not None and rc.password_file is not None:
            path = config.resolve(rc.password_file)
            if path is not None and not os.access(path, os.R_OK):
                problems.append(f"{section}.password_file {path} cannot be read")
    return problems


def _password_source(config: ClusterConfig) -> str:
    """Where the password of a refused login came from, and what may be wrong with it."""
    auth = config.auth
    if auth.passfile is not None:
        path = config.resolve(auth.passfile)
        problem = _passfile_problem(path) if path is not None else None
        if problem:
            return f"auth.passfile {path} {problem}"
        return f"check the entry for user {auth.user} in auth.passfile {path}"
    if auth.password_env:
        return f"check the password in ${auth.password_env} (auth.password_env)"
    return "no password is configured: set auth.passfile or auth.password_env"


def login_refused(exc: BaseException) -> bool:
    """Whether driver error ``exc`` says the server refused the login (credentials or
    pg_hba.conf), rather than that it could not be reached."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc)
    return any(words in text for words in _REFUSED_LOGIN)


def refused_login_error(
    node: Node, config: ClusterConfig, exc: BaseException
) -> AuthenticationError:
    """The error for ``node`` refusing the login with driver error ``exc``."""
    # libpq's text: "connection failed: connection to server at ... failed: FATAL:  why"
    why = describe_failure(exc).rsplit(" failed: ", 1)[-1]
    why = why.removeprefix("FATAL:").removeprefix("fe_sendauth:").strip()
    return AuthenticationError(
        f"node {node.name} at {node.address} refused the login: {why}; {_password_source(config)}",
        node=node.name,
        node_role=node.role.value,
    )


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
    """A new connection to ``node`` (not pooled), errors in the package's terms: an
    :class:`AuthenticationError` if it refuses the login, else a
    :class:`NodeUnavailableError` if it cannot be had."""
    kwargs = connect_kwargs(node, config, connect_timeout=connect_timeout)
    if dbname is not None:
        kwargs["dbname"] = dbname
    try:
        return psycopg.connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        if login_refused(exc):
            raise refused_login_error(node, config, exc) from exc
        raise NodeUnavailableError(
            f"cannot connect to node {node.name} at {node.address}: {describe_failure(exc)}",
            node=node.name,
            node_role=node.role.value,
        ) from exc

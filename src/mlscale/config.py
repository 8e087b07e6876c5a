"""Topology config: one TOML file describes a cluster, local or remote.

A config names a control database (it holds the catalog), one or more shard
groups (each a primary and zero or more streaming replicas), an optional Redis,
pool settings and policies. Passwords are never written inline: they come from
an environment variable (``password_env``) or a libpq passfile (``passfile``).
Relative paths are resolved against the config file's own directory, so a
cluster directory can be moved as a whole.

Example::

    name = "prod"

    [auth]
    user = "mlscale"
    dbname = "mlscale"
    passfile = "pgpass"          # or: password_env = "MLSCALE_PASSWORD"

    [control]
    host = "10.0.0.5"
    port = 5432

    [[shard_groups]]
    name = "g0"
    primary = { host = "10.0.0.10", port = 5432 }
    replicas = [{ host = "10.0.0.11", port = 5432 }]
    # optional: the group is a Patroni cluster; its members' REST endpoints
    patroni = ["http://10.0.0.10:8008", "http://10.0.0.11:8008"]

    [redis]
    host = "10.0.0.20"
    port = 6379
    password_env = "REDIS_PASSWORD"

    [redis_cluster]              # optional: a Redis Cluster for the cache tier
    nodes = [{ host = "10.0.0.30", port = 6379 }, { host = "10.0.0.31", port = 6379 },
             { host = "10.0.0.32", port = 6379 }]
    password_env = "REDIS_PASSWORD"

    [pools]
    max_size = 17                # default: 2 x cores + spindles
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

__all__ = [
    "AuthConfig",
    "ClusterConfig",
    "ControlConfig",
    "LocalConfig",
    "LocalHaConfig",
    "NodeConfig",
    "PolicyConfig",
    "PoolConfig",
    "RedisClusterConfig",
    "RedisClusterNodeConfig",
    "RedisConfig",
    "RoutingConfig",
    "ShardGroupConfig",
    "load_config",
    "parse_config",
    "patroni_address",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,30}$")
_NAME_HINT = "use 1-31 lowercase letters, digits or '_', starting with a letter"


_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _server_host(host: str) -> str:
    """One spelling per machine for ``host``, to tell whether two endpoints are one
    server: names are case-insensitive, an address has one canonical form, and the
    loopback's names (``localhost``, ``127.0.0.1``, ``::1``) are one."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return "loopback" if name in _LOOPBACK_NAMES else name
    if address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        return "loopback"
    return address.compressed


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse_inline_password(value: object, where: str, file_field: str = "passfile") -> None:
    if value is not None:
        raise ValueError(
            f"inline passwords are not accepted in {where}; "
            f'set password_env = "ENV_VAR" or {file_field} = "path" instead'
        )


class NodeConfig(_Model):
    """One PostgreSQL server. ``user`` and ``dbname`` default to those of ``[auth]``;
    ``weight`` is a replica's share of reads relative to its peers (0 drains it)."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str | None = None
    user: str | None = None
    password: str | None = None
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)

    @field_validator("password", mode="before")
    @classmethod
    def _no_password(cls, value: object) -> None:
        _refuse_inline_password(value, "a node")
        return None

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("host must be a non-empty name or address without spaces")
        return value


class AuthConfig(_Model):
    """How mlscale authenticates to PostgreSQL: one role, secret from env or passfile."""

    user: str = "mlscale"
    dbname: str = "mlscale"
    password_env: str | None = None
    passfile: Path | None = None
    password: str | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _no_password(cls, value: object) -> None:
        _refuse_inline_password(value, "[auth]")
        return None

    @model_validator(mode="after")
    def _one_source(self) -> AuthConfig:
        if self.password_env and self.passfile:
            raise ValueError("set either password_env or passfile, not both")
        return self


PATRONI_DEFAULT_PORT = 8008


def _patroni_endpoints(value: list[str] | None) -> list[str] | None:
    """Check a list of Patroni REST endpoints (``http(s)://host[:port]``); each in one
    spelling (no trailing slash), none twice, no credentials inline."""
    if value is None:
        return None
    if not value:
        raise ValueError("patroni needs at least one REST endpoint, e.g. http://10.0.0.10:8008")
    out: list[str] = []
    seen: set[tuple[str, int]] = set()
    for raw in value:
        url = urllib.parse.urlsplit(raw.strip())
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(
                f"patroni endpoint {raw!r} is not an http(s)://host:port URL of a Patroni REST API"
            )
        if url.username is not None or url.password is not None:
            _refuse_inline_password(raw, "a patroni endpoint")
        if url.path not in ("", "/") or url.query or url.fragment:
            raise ValueError(
                f"patroni endpoint {raw!r} has a path or query; give only scheme, host and port"
            )
        try:
            port = url.port or PATRONI_DEFAULT_PORT
        except ValueError:
            raise ValueError(f"patroni endpoint {raw!r} has an invalid port") from None
        key = (_server_host(url.hostname), port)
        if key in seen:
            raise ValueError(f"patroni endpoint {raw!r} is listed twice")
        seen.add(key)
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        out.append(f"{url.scheme}://{host}:{port}")
    return out


def patroni_address(endpoint: str) -> tuple[str, int]:
    """The (host, port) of a validated Patroni endpoint."""
    url = urllib.parse.urlsplit(endpoint)
    return url.hostname or "", url.port or PATRONI_DEFAULT_PORT


class ShardGroupConfig(_Model):
    """A shard group: one primary and its streaming replicas.

    ``patroni``, when set, says the group is a Patroni cluster and lists its members'
    REST endpoints (``http://host:8008``); ``mlscale up --ha`` writes it, in the
    order primary, replicas.
    """

    name: str
    primary: NodeConfig
    replicas: list[NodeConfig] = Field(default_factory=list)
    patroni: list[str] | None = None

    @field_validator("patroni")
    @classmethod
    def _patroni(cls, value: list[str] | None) -> list[str] | None:
        return _patroni_endpoints(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"invalid shard group name {value!r}; {_NAME_HINT}")
        return value


class RedisConfig(_Model):
    """A Redis endpoint for the shared cache tier."""

    host: str = "127.0.0.1"
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0)
    password_env: str | None = None
    password_file: Path | None = None
    password: str | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _no_password(cls, value: object) -> None:
        _refuse_inline_password(value, "[redis]", "password_file")
        return None

    @model_validator(mode="after")
    def _one_source(self) -> RedisConfig:
        if self.password_env and self.password_file:
            raise ValueError("set either password_env or password_file, not both")
        return self


class RedisClusterNodeConfig(_Model):
    """One master of a Redis Cluster. ``bus_port`` is its cluster-bus port, recorded
    for a local cluster (``mlscale up --redis-cluster N``) so that no other server is
    given it; clients do not need it."""

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    bus_port: int | None = Field(default=None, ge=1, le=65535)


class RedisClusterConfig(_Model):
    """A Redis Cluster for the cache tier: its masters (any one lets a client find the
    rest; all are listed so each is inspected) and the password source."""

    nodes: list[RedisClusterNodeConfig] = Field(min_length=3)
    password_env: str | None = None
    password_file: Path | None = None
    password: str | None = None

    @field_validator("password", mode="before")
    @classmethod
    def _no_password(cls, value: object) -> None:
        _refuse_inline_password(value, "[redis_cluster]", "password_file")
        return None

    @model_validator(mode="after")
    def _one_source(self) -> RedisClusterConfig:
        if self.password_env and self.password_file:
            raise ValueError("set either password_env or password_file, not both")
        return self


class PoolConfig(_Model):
    """Per-node connection pools. Sizes are connections; times are seconds.

    ``max_size`` defaults to the classic formula 2 x cores + spindles, where
    ``cores`` defaults to this machine's CPU count.

    ``keepalives_*`` and ``tcp_user_timeout_s`` (0: the OS's default) bound how long a
    connection to a host that stopped answering (frozen VM, lost network) waits:
    libpq's TCP keepalives find an idle one dead after about idle + interval x count
    seconds, and data sent but not acknowledged for ``tcp_user_timeout_s`` breaks it.
    A frozen *process* on a live host is not caught this way (its kernel still
    acknowledges): the Patroni follower cuts those when the node loses its role.
    """

    min_size: int = Field(default=1, ge=0)
    max_size: int | None = Field(default=None, ge=1)
    cores: int | None = Field(default=None, ge=1)
    spindles: int = Field(default=1, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    max_idle_s: float = Field(default=10 * 60.0, gt=0)
    max_lifetime_s: float = Field(default=60 * 60.0, gt=0)
    # Which idle connection a request gets: "lifo" the one returned last (its
    # backend's caches are warm, and idle ones stay idle), "fifo" the oldest.
    reuse: Literal["lifo", "fifo"] = "lifo"
    keepalives_idle_s: int = Field(default=10, ge=1)
    keepalives_interval_s: int = Field(default=3, ge=1)
    keepalives_count: int = Field(default=3, ge=1)
    tcp_user_timeout_s: float = Field(default=20.0, ge=0)

    @model_validator(mode="after")
    def _sizes(self) -> PoolConfig:
        if self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(
                f"min_size ({self.min_size}) is larger than max_size ({self.max_size}); "
                "lower min_size or raise max_size"
            )
        return self


class PolicyConfig(_Model):
    """How reads are balanced and when replicas are banned. Bytes, milliseconds, seconds.

    ``max_replica_lag_*``: a replica lagging more is banned until it recovers.
    ``balance``: round_robin | random | least_outstanding | least_lag.
    ``read_wait_ms``: how long a read-your-writes or monotonic read may wait for
    a replica to replay its position before it reads the primary.
    ``primary_reads``: whether the primary serves reads no replica can.
    ``monitor_interval_s``: how often replicas are sampled (and heartbeats written).
    ``shard_map_poll_s``: how often clients check the catalog for a new shard map
    when no notification came (NOTIFY is the fast path; this covers a lost one).
    ``ownership_filter``: when a cross-shard read keeps each group to the rows its
    map gives it: ``moves`` while its key family has a move open (rows may then be on
    two groups; see ``cluster.begin_move``), ``always`` on every read (a hash per row).
    ``gather_limit``: most rows a cross-shard read may gather from the groups to
    compute COUNT(DISTINCT), percentiles, mode() or ARRAY_AGG/STRING_AGG exactly.
    ``failover_wait_s``: how long a write to a Patroni group (or the catalog) that
    finds no leader waits for the next one before it fails (seconds; Patroni's
    ttl bounds a whole node's loss at about 20-30 s).
    """

    max_replica_lag_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    max_replica_lag_ms: float = Field(default=5_000.0, ge=0)
    balance: Literal["round_robin", "random", "least_outstanding", "least_lag"] = "round_robin"
    read_wait_ms: float = Field(default=200.0, ge=0)
    primary_reads: bool = True
    monitor_interval_s: float = Field(default=0.1, gt=0)
    error_backoff_s: float = Field(default=1.0, gt=0)
    shard_map_poll_s: float = Field(default=5.0, gt=0)
    ownership_filter: Literal["moves", "always"] = "moves"
    gather_limit: int = Field(default=1_000_000, ge=0)
    failover_wait_s: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False)


class RoutingConfig(_Model):
    """How statements are routed. ``read_only_functions`` adds functions (``"score"`` or
    ``"features.score"``) that may run on a replica; unknown functions go to the primary."""

    read_only_functions: list[str] = Field(default_factory=list)


class ControlConfig(NodeConfig):
    """The control database (it holds the catalog). ``host``/``port`` is where clients
    reach it. When it is a Patroni cluster (``mlscale up --ha``), ``replicas`` are its
    standbys and ``patroni`` its members' REST endpoints (order: this node, replicas)."""

    replicas: list[NodeConfig] | None = None
    patroni: list[str] | None = None

    @field_validator("patroni")
    @classmethod
    def _patroni(cls, value: list[str] | None) -> list[str] | None:
        return _patroni_endpoints(value)


class LocalHaConfig(_Model):
    """How ``mlscale up --ha`` runs a local cluster on Patroni and etcd.

    ``sync``: ``off`` (asynchronous replication), ``on`` (Patroni's synchronous_mode:
    commits wait for a sync standby while one is healthy) or ``strict``
    (synchronous_mode_strict: commits wait even when none is, so no acknowledged
    write is lost on failover). ``etcd`` lists the (client port, peer port) of each of
    the 3 loopback etcd members. ``watchdog``: whether /dev/watchdog existed when the
    cluster was made (Patroni uses it then; otherwise it runs without one).
    """

    sync: Literal["off", "on", "strict"] = "strict"
    etcd: list[tuple[int, int]] = Field(min_length=1)
    watchdog: bool = False

    @field_validator("etcd")
    @classmethod
    def _etcd(cls, value: list[tuple[int, int]]) -> list[tuple[int, int]]:
        ports = [p for pair in value for p in pair]
        if any(not 1 <= p <= 65535 for p in ports):
            raise ValueError("etcd ports must be between 1 and 65535")
        if len(set(ports)) != len(ports):
            raise ValueError("every etcd member needs its own client and peer port")
        return value


class LocalConfig(_Model):
    """Present when ``mlscale up`` made the cluster: how its servers are run.

    ``node_cpu`` caps every PostgreSQL node at that many CPUs (cgroups).
    ``redis_fsync`` is the ``appendfsync`` of its Redis servers (all run with
    ``appendonly yes``): ``everysec`` may lose the last second of acknowledged
    writes when the machine or Redis dies; ``always`` fsyncs each write before its
    reply (what a durable write-behind journal needs).
    """

    os_user: str | None = None
    sync_replication: bool = False
    pg_bindir: Path | None = None
    node_cpu: float | None = Field(default=None, gt=0, le=64)
    redis_fsync: Literal["always", "everysec"] = "everysec"
    ha: LocalHaConfig | None = None


class ClusterConfig(_Model):
    """A whole cluster: catalog, shard groups, cache, pools, policies."""

    name: str = "mlscale"
    auth: AuthConfig = Field(default_factory=AuthConfig)
    control: ControlConfig
    shard_groups: list[ShardGroupConfig] = Field(min_length=1)
    redis: RedisConfig | None = None
    redis_cluster: RedisClusterConfig | None = None
    pools: PoolConfig = Field(default_factory=PoolConfig)
    policies: PolicyConfig = Field(default_factory=PolicyConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    local: LocalConfig | None = None
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        seen: dict[str, int] = {}
        for i, group in enumerate(self.shard_groups):
            if group.name in seen:
                raise ValueError(
                    f"shard_groups[{i}].name {group.name!r} repeats shard_groups"
                    f"[{seen[group.name]}].name; give every shard group its own name"
                )
            seen[group.name] = i
        endpoints: dict[tuple[str, int], tuple[str, str]] = {}
        located: list[tuple[str, str, int]] = [
            (where, n.host, n.port) for where, n in self._located_nodes()
        ]
        if self.redis is not None:
            located.append(("redis", self.redis.host, self.redis.port))
        patroni = [("control.patroni", self.control.patroni)] + [
            (f"shard_groups[{i}].patroni", g.patroni) for i, g in enumerate(self.shard_groups)
        ]
        for where, endpoints_of in patroni:
            for j, endpoint in enumerate(endpoints_of or ()):
                located.append((f"{where}[{j}]", *patroni_address(endpoint)))
        if self.local is not None and self.local.ha is not None:
            for j, (client, peer) in enumerate(self.local.ha.etcd):
                located.append((f"local.ha.etcd[{j}]", "127.0.0.1", client))
                located.append((f"local.ha.etcd[{j}].peer", "127.0.0.1", peer))
        if self.redis_cluster is not None:
            for i, rn in enumerate(self.redis_cluster.nodes):
                located.append((f"redis_cluster.nodes[{i}]", rn.host, rn.port))
                if rn.bus_port is not None:
                    located.append((f"redis_cluster.nodes[{i}].bus_port", rn.host, rn.bus_port))
        for where, host, port in located:
            key = (_server_host(host), port)
            if key in endpoints:
                other, other_host = endpoints[key]
                same = "" if other_host == host else f" (as {other_host}:{port})"
                fix = (
                    "give redis its own port"
                    if where == "redis"
                    else "every server needs its own host:port"
                )
                raise ValueError(f"{where} and {other} both use {host}:{port}{same}; {fix}")
            endpoints[key] = (where, host)
        return self

    def _located_nodes(self) -> list[tuple[str, NodeConfig]]:
        out: list[tuple[str, NodeConfig]] = [("control", self.control)]
        out.extend((f"control.replicas[{j}]", r) for j, r in enumerate(self.control.replicas or ()))
        for i, group in enumerate(self.shard_groups):
            out.append((f"shard_groups[{i}].primary", group.primary))
            out.extend(
                (f"shard_groups[{i}].replicas[{j}]", r) for j, r in enumerate(group.replicas)
            )
        return out

    def resolve(self, path: Path | None) -> Path | None:
        """``path`` made absolute against the config file's directory."""
        if path is None or path.is_absolute() or self.source is None:
            return path
        return (self.source.parent / path).resolve()


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(err: Mapping[str, Any]) -> str:
    where = _field_path(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown field; check its spelling against the documented fields"
    if kind == "missing":
        return f"{where}: required field is missing; add it"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    secret = any("password" in str(part) for part in err["loc"])
    if not secret and kind in (
        "int_parsing",
        "int_type",
        "float_parsing",
        "bool_parsing",
        "string_type",
    ):
        msg = f"{msg} (got {got!r})"
    return f"{where}: {msg}"


def parse_config(data: Mapping[str, Any], source: Path | None = None) -> ClusterConfig:
    """Validate a config mapping; raise :class:`ConfigError` naming each bad field."""
    try:
        config = ClusterConfig.model_validate(dict(data))
    except ValidationError as exc:
        where = f"{source}: " if source else ""
        details = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{where}{details}") from None
    return config.model_copy(update={"source": source.resolve() if source else None})


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a TOML topology config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=path)

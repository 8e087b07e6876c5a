"""A whole local cluster: create, start what is down, stop, destroy, inspect.

``LocalCluster(dir).up(...)`` builds a control database, S shard groups of a
primary and R streaming replicas (pg_basebackup over physical replication
slots), a Redis and optionally an N-master Redis Cluster on free loopback ports,
writes the topology config for it, and registers the topology in the catalog.
On a directory that already holds a cluster it only starts what is down. A
creation that fails stops whatever it started and removes what it wrote.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from psycopg import sql

from ..config import ClusterConfig, load_config, parse_config
from ..core.topology import Node, Role, nodes_of, primary_name, replica_name
from ..engine import migrations
from ..engine.connect import connect
from ..engine.inspect import (
    NodeStatus,
    RedisStatus,
    inspect_cluster,
    inspect_redis,
    inspect_redis_cluster,
)
from ..errors import ClusterDirError, ClusterError, MlscaleError, NodeStartError
from . import ports as portsmod
from . import procs
from .binaries import PgBinaries, find_patroni, find_postgres, find_redis
from .cgroups import Cgroups, cap_of_process, cluster_id, detect
from .etcd import ETCD_MEMBERS, find_etcd, member_name
from .ha import LocalHa, control_replica_name, ha_members, watchdog_present
from .layout import Layout
from .locks import cluster_lock
from .osuser import ServiceUser, check_reachable, resolve_service_user
from .pgnode import PgNode
from .rediscluster import LocalRedisCluster, RedisClusterNode
from .redisnode import RedisNode
from .settings import postgres_settings, quote_conf, replica_settings, sync_standby_names
from .state import ClusterRecord, read_record, record_of, write_record

__all__ = ["DEFAULT_DIR", "LocalCluster", "UpReport"]

log = logging.getLogger(__name__)

DEFAULT_DIR = Path(".mlscale")
MAX_SHARDS = 32
MAX_REPLICAS = 8
MAX_REDIS_MASTERS = 16
_T = TypeVar("_T")
_SINGLE_SYNC_REPLICA = (
    "--sync-replication with one replica per shard group: while that replica is down, "
    "every commit of its group stalls until it is back (mlscale status counts the waiting "
    "commits); use --replicas 2 or more so that commits go on with either"
)


@dataclass
class UpReport:
    """What ``up`` did: whether it created the cluster, which servers it started."""

    created: bool
    started: list[str] = field(default_factory=list)
    already_running: list[str] = field(default_factory=list)
    migrations: list[int] = field(default_factory=list)
    epoch: int = 0
    config_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def redis_cluster_name(index: int) -> str:
    """The name (in ``processes()``, ``status``, ``down``) of the Redis Cluster's
    master number ``index``, in the order of ``[redis_cluster].nodes``."""
    return f"redis-cluster-{index}"


def _masters(rcluster: LocalRedisCluster | None) -> list[tuple[str, RedisClusterNode]]:
    """The Redis Cluster's masters with their names, in config order."""
    return [(redis_cluster_name(i), n) for i, n in enumerate(rcluster.nodes if rcluster else ())]


def _parallel(fn: Callable[[_T], object], items: Iterable[_T]) -> None:
    """Run ``fn`` over ``items`` in threads; wait for all, then raise the first error.

    Even Ctrl-C or SIGTERM waits for every thread to finish first: a rollback
    must not run while a server is still being started behind its back.
    """
    items = list(items)
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=len(items))
    futures = [pool.submit(fn, item) for item in items]
    interrupted: BaseException | None = None
    for future in futures:
        while True:
            try:
                future.exception()
                break
            except BaseException as exc:  # KeyboardInterrupt: note it, keep waiting
                interrupted = interrupted or exc
    pool.shutdown(wait=True)
    if interrupted is not None:
        raise interrupted
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]  # type: ignore[misc]


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (delivered afterwards) while a rollback runs."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


# The two spellings of each on/off option of `up`.
_SWITCHES = {
    "--redis": ("--redis", "--no-redis"),
    "--sync-replication": ("--sync-replication", "--async-replication"),
    "--ha": ("--ha", "--no-ha"),
}


def _as_made(flag: str, value: object) -> str:
    """How an ``up`` option with ``value`` reads: 'with --no-redis', 'without --node-cpu',
    'with --shards 2'."""
    if flag in _SWITCHES:
        on, off = _SWITCHES[flag]
        return f"with {on if value else off}"
    if value is None:
        return f"without {flag}"
    return f"with {flag} {value}"


class LocalCluster:
    """The cluster in one directory on this machine."""

    def __init__(self, root: str | Path = DEFAULT_DIR) -> None:
        self.layout = Layout(Path(root).absolute())
        self._cgroups: tuple[Cgroups | None, str] | None = None
        self.warnings: list[str] = []

    @property
    def root(self) -> Path:
        return self.layout.root

    # -- reading what is there ------------------------------------------------

    def _require_cluster(self) -> None:
        if not self.layout.is_cluster():
            raise ClusterDirError(
                f"no mlscale cluster in {self.root} (no mlscale.toml); "
                "start one with `mlscale up --dir ...`"
            )

    def config(self) -> ClusterConfig:
        """The cluster's topology config (``mlscale.toml``)."""
        self._require_cluster()
        return load_config(self.layout.config)

    def _service_user(self, config: ClusterConfig) -> ServiceUser:
        return resolve_service_user(config.local.os_user if config.local else None)

    def _bins(self, config: ClusterConfig) -> PgBinaries:
        bindir = config.local.pg_bindir if config.local else None
        return find_postgres(bindir)

    def _pg_nodes(
        self, nodes: Iterable[Node], bins: PgBinaries | None, user: ServiceUser
    ) -> list[PgNode]:
        return [
            PgNode(n, self.layout.data_dir(n.name), self.layout.log(n.name), bins, user)
            for n in nodes
        ]

    def _redis_node(self, config: ClusterConfig, user: ServiceUser) -> RedisNode | None:
        """The cluster's Redis; its binary is looked up only when it must be started."""
        if config.redis is None:
            return None
        return RedisNode(None, self.layout.redis_dir, config.redis.port, user)

    def _redis_cluster(
        self, ports: Sequence[tuple[int, int]], user: ServiceUser, appendfsync: str = "everysec"
    ) -> LocalRedisCluster | None:
        """The cluster's Redis Cluster (masters' client and bus ports), or None. The
        password is read only when a master must be started or waited for."""
        if not ports:
            return None
        password = self._secret() if self.layout.secret.exists() else None
        return LocalRedisCluster(
            self.layout.redis_cluster_dir,
            password=password,
            user=user,
            ports=ports,
            appendfsync=appendfsync,
        )

    def _secret(self) -> str:
        return self.layout.secret.read_text().strip()

    def processes(self) -> dict[str, list[int]]:
        """PIDs of every running server process of the cluster, by node name."""
        config = self.config()
        user = self._service_user(config)
        out = {n.name: n.processes() for n in self._pg_nodes(nodes_of(config), None, user)}
        if _is_ha(config):
            out.update(LocalHa(self.layout, user).processes())
        if config.redis is not None:
            redis_node = self._redis_node(config, user)
            pid = redis_node.pid() if redis_node else None
            out["redis"] = [pid] if pid else []
        for name, master in _masters(self._redis_cluster(record_of(config).redis_cluster, user)):
            pid = master.pid()
            out[name] = [pid] if pid else []
        return out

    # -- up ----------------------------------------------------------------------

    def up(
        self,
        *,
        shards: int | None = None,
        replicas: int | None = None,
        redis: bool | None = None,
        sync_replication: bool | None = None,
        base_port: int | None = None,
        os_user: str | None = None,
        pg_bindir: str | Path | None = None,
        node_cpu: float | None = None,
        redis_cluster: int | None = None,
        redis_fsync: str | None = None,
        ha: bool | None = None,
        ha_sync: str | None = None,
    ) -> UpReport:
        """Create the cluster, or start whichever of its servers are down.

        ``ha`` runs it on Patroni and etcd (see :mod:`.ha`): every shard group and the
        control database is a Patroni scope of 1 + ``replicas`` nodes; ``ha_sync``
        (``off`` | ``on`` | ``strict``, default ``strict``) is Patroni's synchronous mode.

        ``node_cpu`` caps each PostgreSQL node at that many CPUs (cgroups; where
        they are not writable the report carries a warning and nodes run uncapped).
        ``redis_cluster`` (>= 3) adds a Redis Cluster of that many masters;
        ``redis_fsync`` (``always`` | ``everysec``, default ``everysec``) is the AOF
        fsync policy of every Redis server of the cluster.
        """
        self.warnings = []
        with cluster_lock(self.root, "up"):
            if self.layout.is_cluster():
                self._check_same_shape(
                    {
                        "--shards": shards,
                        "--replicas": replicas,
                        "--redis": redis,
                        "--sync-replication": sync_replication,
                        "--base-port": base_port,
                        "--os-user": os_user,
                        "--node-cpu": node_cpu,
                        "--redis-cluster": redis_cluster,
                        "--redis-fsync": redis_fsync,
                        "--ha": ha,
                        "--sync": ha_sync,
                    }
                )
                config = self.config()
                if sync_replication and any(len(g.replicas) == 1 for g in config.shard_groups):
                    self._warn(_SINGLE_SYNC_REPLICA)
                with portsmod.port_lock():
                    return self._start_existing()
            with portsmod.port_lock():
                return self._create(
                    shards=2 if shards is None else shards,
                    replicas=1 if replicas is None else replicas,
                    redis=True if redis is None else redis,
                    sync=bool(sync_replication),
                    base_port=base_port,
                    os_user=os_user,
                    pg_bindir=pg_bindir,
                    node_cpu=node_cpu,
                    redis_cluster=redis_cluster,
                    redis_fsync=redis_fsync or "everysec",
                    ha=bool(ha),
                    ha_sync=ha_sync,
                )

    def _check_same_shape(self, asked: dict[str, object]) -> None:
        """Refuse options of ``up`` (flag -> value, None when not given) that differ
        from how the existing cluster was made."""
        if not self.layout.is_complete():
            raise ClusterDirError(
                f"the cluster in {self.root} was never completely created (its creation was "
                f"interrupted); run `mlscale destroy --dir {self.root}` and start again"
            )
        config = self.config()
        local = config.local
        have = {
            "--shards": len(config.shard_groups),
            "--replicas": max((len(g.replicas) for g in config.shard_groups), default=0),
            "--redis": config.redis is not None,
            "--sync-replication": bool(local and local.sync_replication),
            "--base-port": config.control.port,
            "--os-user": local.os_user if local else None,
            "--node-cpu": local.node_cpu if local else None,
            "--redis-cluster": len(config.redis_cluster.nodes) if config.redis_cluster else None,
            "--redis-fsync": local.redis_fsync if local else "everysec",
            "--ha": _is_ha(config),
            "--sync": local.ha.sync if local and local.ha else None,
        }
        for flag, value in asked.items():
            if value is not None and value != have[flag]:
                raise ClusterError(
                    f"the cluster in {self.root} was created {_as_made(flag, have[flag])}, "
                    f"not with {_as_made(flag, value).removeprefix('with ')}; drop the option, "
                    "or `mlscale destroy` it first"
                )

    def _create(
        self,
        *,
        shards: int,
        replicas: int,
        redis: bool,
        sync: bool,
        base_port: int | None,
        os_user: str | None,
        pg_bindir: str | Path | None,
        node_cpu: float | None,
        redis_cluster: int | None,
        redis_fsync: str,
        ha: bool = False,
        ha_sync: str | None = None,
    ) -> UpReport:
        if not 1 <= shards <= MAX_SHARDS:
            raise ClusterError(f"--shards must be between 1 and {MAX_SHARDS}, got {shards}")
        if not 0 <= replicas <= MAX_REPLICAS:
            raise ClusterError(f"--replicas must be between 0 and {MAX_REPLICAS}, got {replicas}")
        if sync and replicas == 0:
            raise ClusterError("--sync-replication needs at least one replica (--replicas 1)")
        if sync and replicas == 1:
            self._warn(_SINGLE_SYNC_REPLICA)
        if node_cpu is not None and not 0 < node_cpu <= 64:
            raise ClusterError(f"--node-cpu must be a number of CPUs in (0, 64], got {node_cpu}")
        if redis_cluster is not None and not 3 <= redis_cluster <= MAX_REDIS_MASTERS:
            raise ClusterError(
                f"--redis-cluster must be between 3 and {MAX_REDIS_MASTERS} masters "
                f"(Redis Cluster needs 3 at least), got {redis_cluster}"
            )
        if redis_fsync not in ("always", "everysec"):
            raise ClusterError(f"--redis-fsync must be always or everysec, got {redis_fsync!r}")
        if ha_sync is not None and not ha:
            raise ClusterError("--sync chooses Patroni's synchronous mode; it needs --ha")
        if ha:
            ha_sync = ha_sync or "strict"
            if ha_sync not in ("off", "on", "strict"):
                raise ClusterError(f"--sync must be off, on or strict, got {ha_sync!r}")
            if replicas == 0:
                raise ClusterError("--ha needs at least one replica per group (--replicas 1)")
            if node_cpu is not None:
                raise ClusterError(
                    "--node-cpu is not supported with --ha yet: Patroni starts PostgreSQL, "
                    "outside the cgroup mlscale would cap it in"
                )
            if sync:
                raise ClusterError(
                    "--sync-replication does not apply with --ha: Patroni manages synchronous "
                    "replication (choose it with --sync off|on|strict)"
                )
            find_patroni()  # refuse early, before anything is started
            find_etcd()
        bins = find_postgres(pg_bindir)
        redis_bin = find_redis() if redis or redis_cluster else None
        user = resolve_service_user(os_user)
        check_reachable(self.root, user)

        groups = [f"g{i}" for i in range(shards)]
        names = ["control"]
        if ha:
            # The control database is a Patroni scope as large as a shard group.
            names.extend(control_replica_name(r) for r in range(1, replicas + 1))
        for g in groups:
            names.append(primary_name(g))
            names.extend(replica_name(g, r) for r in range(1, replicas + 1))
        pg_names = list(names)
        if ha:
            names += [f"{n}-rest" for n in pg_names]
            names += [member_name(i) for i in range(ETCD_MEMBERS)]
            names += [f"{member_name(i)}-peer" for i in range(ETCD_MEMBERS)]
        if redis:
            names.append("redis")
        masters = [redis_cluster_name(i) for i in range(redis_cluster or 0)]
        names += masters + [f"{m}-bus" for m in masters]
        chosen = portsmod.choose_ports(
            names, base_port, reserved=portsmod.reserved_ports(self.root)
        )
        port = dict(zip(names, chosen, strict=True))
        config = parse_config(
            {
                "name": self.root.name.lstrip(".") or "mlscale",
                "auth": {"user": "mlscale", "dbname": "mlscale", "passfile": "pgpass"},
                "control": {
                    "host": "127.0.0.1",
                    "port": port["control"],
                    **(
                        {
                            "replicas": [
                                {"host": "127.0.0.1", "port": port[control_replica_name(r)]}
                                for r in range(1, replicas + 1)
                            ],
                            "patroni": _rest_urls(
                                port,
                                ["control"]
                                + [control_replica_name(r) for r in range(1, replicas + 1)],
                            ),
                        }
                        if ha
                        else {}
                    ),
                },
                "shard_groups": [
                    {
                        "name": g,
                        "primary": {"host": "127.0.0.1", "port": port[primary_name(g)]},
                        "replicas": [
                            {"host": "127.0.0.1", "port": port[replica_name(g, r)]}
                            for r in range(1, replicas + 1)
                        ],
                        **(
                            {
                                "patroni": _rest_urls(
                                    port,
                                    [primary_name(g)]
                                    + [replica_name(g, r) for r in range(1, replicas + 1)],
                                )
                            }
                            if ha
                            else {}
                        ),
                    }
                    for g in groups
                ],
                **(
                    {
                        "redis": {
                            "host": "127.0.0.1",
                            "port": port["redis"],
                            "password_file": "secret",
                        }
                    }
                    if redis
                    else {}
                ),
                **(
                    {
                        "redis_cluster": {
                            "nodes": [
                                {"host": "127.0.0.1", "port": port[m], "bus_port": port[f"{m}-bus"]}
                                for m in masters
                            ],
                            "password_file": "secret",
                        }
                    }
                    if masters
                    else {}
                ),
                "local": {
                    "os_user": user.name,
                    "sync_replication": sync,
                    "pg_bindir": str(bins.bindir),
                    **({"node_cpu": node_cpu} if node_cpu else {}),
                    "redis_fsync": redis_fsync,
                    **(
                        {
                            "ha": {
                                "sync": ha_sync,
                                "etcd": [
                                    [port[member_name(i)], port[f"{member_name(i)}-peer"]]
                                    for i in range(ETCD_MEMBERS)
                                ],
                                "watchdog": watchdog_present(),
                            }
                        }
                        if ha
                        else {}
                    ),
                },
            },
            source=self.layout.config,
        )
        pg_nodes = self._pg_nodes(nodes_of(config), bins, user)
        redis_node = (
            RedisNode(redis_bin, self.layout.redis_dir, port["redis"], user) if redis else None
        )
        rcluster = self._redis_cluster(record_of(config).redis_cluster, user, redis_fsync)
        made_root = self._claim_directory(user)
        try:
            self._build(config, bins, user, pg_nodes, redis_node, rcluster, sync)
            report = UpReport(created=True, config_path=self.layout.config, warnings=self.warnings)
            report.started = (
                [m.name for m in ha_members(config)] + [member_name(i) for i in range(ETCD_MEMBERS)]
                if ha
                else [n.name for n in pg_nodes]
            ) + (["redis"] if redis_node else [])
            report.started += masters
            report.migrations, report.epoch = self._register(config)
            write_record(self.layout.state, config, bins.version)
            portsmod.record_ports(self.root, chosen)
            return report
        except BaseException as exc:
            log.info("creation of %s failed; stopping what was started", self.root)
            with _signals_held():
                if ha:
                    LocalHa(self.layout, user).stop()
                self._stop_all(pg_nodes, redis_node, _masters(rcluster), record_of(config).node_cpu)
                self._remove_created(made_root)
            if isinstance(exc, MlscaleError):
                # The logs it points at were removed with the directory.
                message = re.sub(r" \(log: [^)]*\)", "", str(exc))
                raise type(exc)(
                    f"{message}; rolled back: stopped what had started, removed {self.root}"
                ) from exc
            raise

    def _claim_directory(self, user: ServiceUser) -> Path | None:
        """Check the directory can hold a new cluster; create it. The topmost dir created."""
        root = self.root
        if re.search(r"[\s'\"\\]", str(root)):
            raise ClusterDirError(
                f"cluster directory {str(root)!r} contains a space, quote or backslash, which "
                "server config files cannot carry safely; choose a plainer --dir"
            )
        if root.exists():
            if not root.is_dir():
                raise ClusterDirError(f"cannot use {root} as cluster directory: not a directory")
            if any(root.iterdir()):
                raise ClusterDirError(
                    f"{root} is not empty and holds no mlscale cluster; choose a new or empty --dir"
                )
            made: Path | None = None
        else:
            made = root
            while not made.parent.exists():
                made = made.parent
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Whatever the umask, every directory made here must let the servers through.
            for path in [root, *root.parents]:
                os.chmod(path, 0o755)
                if path == made or made is None:
                    break
            probe = root / ".mlscale-write-test"
            probe.write_text("")
            probe.unlink()
            user.own(root)
        except OSError as exc:
            if made is not None and made.exists():
                shutil.rmtree(made, ignore_errors=True)
            raise ClusterDirError(
                f"cannot write cluster directory {root}: {exc.strerror or exc}"
            ) from None
        return made

    def _remove_created(self, made_root: Path | None) -> None:
        if made_root is not None:
            shutil.rmtree(made_root, ignore_errors=True)
        elif self.root.exists():
            for child in self.root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)

    def _build(
        self,
        config: ClusterConfig,
        bins: PgBinaries,
        user: ServiceUser,
        pg_nodes: list[PgNode],
        redis_node: RedisNode | None,
        rcluster: LocalRedisCluster | None,
        sync: bool,
    ) -> None:
        layout = self.layout
        owner = None if user.is_caller else (user.uid, user.gid)
        secret = secrets.token_urlsafe(24)
        layout.write_private(layout.secret, secret + "\n", owner)
        layout.write_private(layout.pgpass, f"*:*:*:{config.auth.user}:{secret}\n", owner)
        layout.config.write_text(tomli_w.dumps(config.model_dump(mode="json", exclude_none=True)))
        preload = ["pg_stat_statements"] if bins.has_library("pg_stat_statements") else []
        if not preload:
            log.warning("pg_stat_statements is not installed; query statistics are off")

        for node in pg_nodes:
            node.data_dir.parent.mkdir(parents=True, exist_ok=True)
            user.own(node.data_dir.parent)
            user.own(node.data_dir.parent.parent)
        if _is_ha(config):
            self._build_ha(config, bins, user, secret, preload)
        else:
            self._build_plain(config, pg_nodes, preload, sync)
        fsync = config.local.redis_fsync if config.local else "everysec"
        if redis_node is not None:
            redis_node.write_conf(secret, fsync)
            redis_node.start(secret)
        if rcluster is not None:
            rcluster.password = secret
            rcluster.start()

    def _build_ha(
        self,
        config: ClusterConfig,
        bins: PgBinaries,
        user: ServiceUser,
        secret: str,
        preload: Sequence[str],
    ) -> None:
        """etcd, then the Patroni agents (which initdb and clone the nodes), then the
        databases mlscale needs, created on each scope's leader once its standbys stream
        (in strict synchronous mode a commit waits for one)."""
        ha = LocalHa(self.layout, user)
        for m in ha_members(config):
            self.layout.node_dir(m.name).mkdir(parents=True, exist_ok=True)
            user.own(self.layout.node_dir(m.name))
        ha.write_configs(
            config, bins, secret, lambda port: postgres_settings(port=port, preload=preload)
        )
        ha.start_etcd(config)
        ha.start_agents(config, find_patroni(), bootstrap=True)
        for node in nodes_of(config):
            if node.role is not Role.REPLICA:
                scope = node.group or "control"
                self._prepare_databases(ha.leader_node(config, scope, node), config, preload)

    def _build_plain(
        self,
        config: ClusterConfig,
        pg_nodes: list[PgNode],
        preload: Sequence[str],
        sync: bool,
    ) -> None:
        layout = self.layout
        writers = [n for n in pg_nodes if n.node.role is not Role.REPLICA]
        standbys = [n for n in pg_nodes if n.node.role is Role.REPLICA]
        by_name = {n.name: n for n in pg_nodes}

        def init(node: PgNode) -> None:
            node.initdb(layout.secret)
            node.configure(postgres_settings(port=node.node.port, preload=preload))
            self._start_node(config, node)

        _parallel(init, writers)
        for node in writers:
            self._prepare_databases(node.node, config, preload)
        for node in standbys:
            with connect(by_name[primary_name(node.node.group or "")].node, config) as conn:
                conn.execute(
                    "SELECT pg_create_physical_replication_slot(%s) WHERE NOT EXISTS "
                    "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                    (node.node.slot_name, node.node.slot_name),
                )

        def clone(node: PgNode) -> None:
            primary = by_name[primary_name(node.node.group or "")].node
            node.basebackup(primary, node.node.slot_name, layout.pgpass)
            settings = postgres_settings(port=node.node.port, preload=preload)
            settings.update(
                replica_settings(
                    primary_port=primary.port,
                    user=primary.user,
                    passfile=layout.pgpass,
                    application_name=node.node.slot_name,
                    slot=node.node.slot_name,
                )
            )
            node.configure(settings)
            node.make_standby()
            self._start_node(config, node)

        _parallel(clone, standbys)
        self._wait_streaming(config, 60.0)
        if sync:
            for node in writers:
                if node.node.role is not Role.PRIMARY:
                    continue
                names = [s.node.slot_name for s in standbys if s.node.group == node.node.group]
                settings = postgres_settings(port=node.node.port, preload=preload)
                settings["synchronous_standby_names"] = quote_conf(sync_standby_names(names))
                node.configure(settings)
                node.reload()

    def _prepare_databases(self, node: Node, config: ClusterConfig, preload: Sequence[str]) -> None:
        with connect(node, config, dbname="postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (node.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(node.dbname), sql.Identifier(node.user)
                    )
                )
        if "pg_stat_statements" in preload:
            with connect(node, config) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        # pgvector (built by scripts/setup.sh) on each shard group's primary, for the
        # vector store; replicas get it by streaming. Creating it needs a superuser, which
        # the store's clients may not be.
        if node.group is not None and self._bins(config).has_library("vector"):
            with connect(node, config) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")

    def _wait_streaming(self, config: ClusterConfig, timeout: float) -> None:
        """Wait until every replica streams from its primary."""
        deadline = time.monotonic() + timeout
        nodes = nodes_of(config)
        for primary in (n for n in nodes if n.role is Role.PRIMARY):
            want = {
                n.slot_name for n in nodes if n.role is Role.REPLICA and n.group == primary.group
            }
            if not want:
                continue
            with connect(primary, config) as conn:
                while True:
                    rows = conn.execute(
                        "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'"
                    ).fetchall()
                    if want <= {r[0] for r in rows}:
                        break
                    if time.monotonic() > deadline:
                        missing = ", ".join(sorted(want - {r[0] for r in rows}))
                        raise NodeStartError(
                            f"replicas {missing} of {primary.name} are not streaming after "
                            f"{timeout:.0f} s; see their postgres.log"
                        )
                    time.sleep(0.1)

    def _warn(self, warning: str) -> None:
        """Tell the caller of ``up`` once, in its report's warnings (the CLI prints them;
        the log has them at INFO, so they are not printed twice)."""
        if warning not in self.warnings:
            log.info("warning: %s", warning)
            self.warnings.append(warning)

    # -- CPU caps ------------------------------------------------------------------

    def _node_cgroups(self, node_cpu: float | None) -> Cgroups | None:
        """The cgroup hierarchy to cap nodes in, if nodes are capped and it exists."""
        if node_cpu is None:
            return None
        if self._cgroups is None:
            self._cgroups = detect()
        cgroups, why = self._cgroups
        if cgroups is None:
            self._warn(f"nodes run without a CPU cap: {why}")
        return cgroups

    def _start_node(self, config: ClusterConfig, node: PgNode) -> None:
        node_cpu = config.local.node_cpu if config.local else None
        cgroups = self._node_cgroups(node_cpu)
        if cgroups is None or node_cpu is None:
            node.start()
            return
        path = cgroups.node_dir(cluster_id(self.root), node.name)
        cgroups.create(path, node_cpu)
        node.start(cgroup_procs=cgroups.procs_file(path))

    def _release_cgroups(self, node_cpu: float | None, pg_nodes: Sequence[PgNode]) -> None:
        cgroups = self._node_cgroups(node_cpu)
        if cgroups is None:
            return
        for node in pg_nodes:
            if not node.is_running():
                cgroups.remove(cgroups.node_dir(cluster_id(self.root), node.name))

    def _register(self, config: ClusterConfig) -> tuple[list[int], int]:
        """Migrate the catalog and record the topology; (migrations applied, epoch)."""
        control = nodes_of(config)[0]
        if _is_ha(config):
            control = LocalHa(self.layout, self._service_user(config)).leader_node(
                config, "control", control
            )
        with connect(control, config) as conn:
            applied = migrations.migrate(conn)
            epoch = migrations.register_topology(conn, nodes_of(config), "mlscale up")
        return [m.version for m in applied], epoch

    def _start_existing(self) -> UpReport:
        config = self.config()
        user = self._service_user(config)
        bins = self._bins(config)
        pg_nodes = self._pg_nodes(nodes_of(config), bins, user)
        redis_node = self._redis_node(config, user)
        rcluster = self._redis_cluster(record_of(config).redis_cluster, user)
        rc_down = [(name, n) for name, n in _masters(rcluster) if n.pid() is None]
        report = UpReport(created=False, config_path=self.layout.config, warnings=self.warnings)
        if _is_ha(config):
            return self._start_existing_ha(config, user, redis_node, rcluster, report)
        down_pg = [n for n in pg_nodes if not n.is_running()]
        report.already_running = [n.name for n in pg_nodes if n not in down_pg]
        redis_down = redis_node is not None and not redis_node.is_running()
        if redis_node is not None and not redis_down:
            report.already_running.append("redis")
        report.already_running += [name for name, n in _masters(rcluster) if n.pid() is not None]
        # Refuse before starting anything if a port we need was taken meanwhile.
        wanted = [(n.name, n.node.port) for n in down_pg]
        if redis_node is not None and redis_down:
            wanted.append(("redis", redis_node.port))
        for name, rnode in rc_down:
            wanted += [(name, rnode.port), (f"{name} (cluster bus)", rnode.bus_port)]
        portsmod.check_free(wanted)
        order = [Role.CONTROL, Role.PRIMARY, Role.REPLICA]
        for role in order:
            batch = [n for n in down_pg if n.node.role is role]
            _parallel(lambda n: self._start_node(config, n), batch)
            report.started.extend(n.name for n in batch)
        if redis_node is not None and redis_down:
            redis_node.start(self._secret())
            report.started.append("redis")
        if rcluster is not None:
            rcluster.restart()  # waits for cluster_state:ok even when none was down
            report.started += [name for name, _ in rc_down]
        report.migrations, report.epoch = self._register(config)
        portsmod.record_ports(self.root, record_of(config).ports)
        return report

    def _start_existing_ha(
        self,
        config: ClusterConfig,
        user: ServiceUser,
        redis_node: RedisNode | None,
        rcluster: LocalRedisCluster | None,
        report: UpReport,
    ) -> UpReport:
        """Start the etcd members and agents that are down (Patroni starts PostgreSQL),
        then Redis; wait as creation does."""
        ha = LocalHa(self.layout, user)
        members = ha_members(config)
        report.already_running = [m.name for m in members if ha.agent(m.name).pid() is not None]
        wanted = [(m.name, m.port) for m in members if ha.agent(m.name).pid() is None]
        wanted += [
            (f"{m.name} (patroni)", m.rest_port) for m in members if ha.agent(m.name).pid() is None
        ]
        portsmod.check_free(wanted)
        report.started += ha.start_etcd(config)
        report.started += ha.start_agents(config, find_patroni(), bootstrap=False)
        if redis_node is not None:
            if redis_node.is_running():
                report.already_running.append("redis")
            else:
                redis_node.start(self._secret())
                report.started.append("redis")
        if rcluster is not None:
            rc_down = [name for name, n in _masters(rcluster) if n.pid() is None]
            rcluster.restart()
            report.started += rc_down
        report.migrations, report.epoch = self._register(config)
        portsmod.record_ports(self.root, self._all_ports(config))
        return report

    def _all_ports(self, config: ClusterConfig) -> list[int]:
        """Every port the cluster's servers use: PostgreSQL, Redis, and with --ha the
        control standbys, the agents' REST APIs and etcd."""
        ports = list(record_of(config).ports)
        if _is_ha(config):
            for m in ha_members(config):
                ports += [m.port, m.rest_port]
            local = config.local
            if local is not None and local.ha is not None:
                ports += [p for pair in local.ha.etcd for p in pair]
        return sorted(set(ports))

    # -- down, destroy -------------------------------------------------------

    def _stop_all(
        self,
        pg_nodes: Sequence[PgNode],
        redis_node: RedisNode | None,
        masters: Sequence[tuple[str, RedisClusterNode]],
        node_cpu: float | None,
    ) -> list[str]:
        running = [n for n in pg_nodes if n.is_running()]
        # Replicas first, so a primary's shutdown does not wait on their WAL senders.
        _parallel(lambda n: n.stop(), [n for n in running if n.node.role is Role.REPLICA])
        _parallel(lambda n: n.stop(), [n for n in running if n.node.role is not Role.REPLICA])
        self._release_cgroups(node_cpu, pg_nodes)
        stopped = [n.name for n in running]
        if redis_node is not None and redis_node.is_running():
            redis_node.stop()
            stopped.append("redis")
        for name, master in masters:
            pid = master.pid()
            if pid is not None:
                procs.terminate(pid, signal.SIGTERM, 30.0)
                log.info("stopped %s (pid %s)", name, pid)
                stopped.append(name)
        return stopped

    def _record(self) -> ClusterRecord:
        """What stopping the cluster needs: ``state.json``'s record, so that a broken
        ``mlscale.toml`` cannot keep it running; the config's for a cluster from before
        records held nodes, or one whose creation did not complete."""
        record = read_record(self.layout.state)
        if record is not None:
            return record
        self._require_cluster()
        return record_of(self.config())

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop the cluster's servers (or only ``names``) by PID; the names of those stopped.

        Needs no server binaries and no valid ``mlscale.toml`` (see :meth:`_record`), so
        a cluster whose binaries are gone or whose config was broken by hand still stops.
        """
        with cluster_lock(self.root, "down"):
            return self._down(names)

    def _down(self, names: Iterable[str] | None = None) -> list[str]:
        record = self._record()
        user = resolve_service_user(record.os_user)
        wanted = None if names is None else set(names)
        ha_stopped: list[str] = []
        if names is None and (self.root / "etcd").is_dir():
            # An HA cluster: agents (they stop their PostgreSQL) and etcd, found on disk.
            ha_stopped = LocalHa(self.layout, user).stop()
        pg_nodes = self._pg_nodes(
            (n for n in record.nodes if wanted is None or n.name in wanted), None, user
        )
        redis_node = None
        if record.redis_port is not None and (wanted is None or "redis" in wanted):
            redis_node = RedisNode(None, self.layout.redis_dir, record.redis_port, user)
        masters = [
            (name, node)
            for name, node in _masters(self._redis_cluster(record.redis_cluster, user))
            if wanted is None or name in wanted
        ]
        return ha_stopped + self._stop_all(pg_nodes, redis_node, masters, record.node_cpu)

    def destroy(self) -> bool:
        """Stop the cluster and delete its directory; False if there was nothing."""
        with cluster_lock(self.root, "destroy") as lock:
            if not self.root.exists():
                lock.remove()
                return False
            if not (self.layout.is_cluster() or self.layout.is_complete()):
                raise ClusterDirError(
                    f"refusing to delete {self.root}: it holds no mlscale cluster "
                    "(no mlscale.toml, no state.json)"
                )
            self._down()
            shutil.rmtree(self.root)
            portsmod.forget_ports(self.root)
            lock.remove()
            return True

    # -- status --------------------------------------------------------------------

    def status(self) -> tuple[list[NodeStatus], RedisStatus | None]:
        """Every node's state, WAL positions and lag, with the local PIDs."""
        config = self.config()
        nodes = inspect_cluster(config)
        pids = self.processes()
        for st in nodes:
            found = pids.get(st.name) or []
            st.extra["pid"] = found[0] if found else None
            st.extra["cpu_cap"] = cap_of_process(found[0])[1] if found else None
            if not found:
                st.state = "down"
        redis_st = inspect_redis(config)
        if redis_st is not None:
            redis_pids = pids.get("redis") or []
            redis_st.pid = redis_pids[0] if redis_pids else None
        return nodes, redis_st

    def redis_cluster_status(self) -> list[RedisStatus]:
        """Each Redis Cluster master as seen now (with its PID); empty without one."""
        config = self.config()
        masters = inspect_redis_cluster(config)
        pids = self.processes()
        for i, st in enumerate(masters):
            st.name = redis_cluster_name(i)
            found = pids.get(st.name) or []
            st.pid = found[0] if found else None
        return masters

    def describe(self) -> dict[str, Any]:
        """Status as plain data (what ``mlscale status --json`` prints)."""
        nodes, redis_st = self.status()
        out: dict[str, Any] = {
            "cluster": str(self.root),
            "nodes": [n.as_dict() for n in nodes],
            "redis": None if redis_st is None else vars(redis_st),
            "redis_cluster": [vars(st) for st in self.redis_cluster_status()],
        }
        config = self.config()
        if _is_ha(config) and config.local is not None and config.local.ha is not None:
            ha = LocalHa(self.layout, self._service_user(config))
            pids = ha.processes()
            out["ha"] = {
                "sync": config.local.ha.sync,
                "watchdog": "on (/dev/watchdog)"
                if config.local.ha.watchdog
                else "off (this machine has no /dev/watchdog)",
                "scopes": [s.to_dict() for s in ha.status(config)],
                "agents": {
                    name.removeprefix("patroni:"): (p[0] if p else None)
                    for name, p in pids.items()
                    if name.startswith("patroni:")
                },
                "etcd": {
                    name: (p[0] if p else None)
                    for name, p in pids.items()
                    if name.startswith("etcd")
                },
            }
        return out


def _is_ha(config: ClusterConfig) -> bool:
    """Whether ``config``'s cluster was made with ``up --ha`` (runs on Patroni and etcd)."""
    return config.local is not None and config.local.ha is not None


def _rest_urls(port: dict[str, int], names: Sequence[str]) -> list[str]:
    """The Patroni REST endpoints of the nodes ``names`` (ports chosen as ``NAME-rest``)."""
    return [f"http://127.0.0.1:{port[f'{n}-rest']}" for n in names]

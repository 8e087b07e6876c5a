"""What every node of a cluster is doing now: up, down or refusing our login, WAL
positions, replica lag.

Works for any config, local or remote. Replica positions are sampled before
their primary's, so a reported lag can only overstate, never hide, a delay.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from ..core.lsn import lag_bytes, parse_lsn
from ..core.topology import Node, Role, nodes_of, primary_name
from ..errors import AuthenticationError, MlscaleError
from .balancer import ReplicaBalancer
from .catalog_sync import read_bans
from .connect import connect, describe_failure, redis_cluster_password, redis_password
from .monitor_sync import Monitor

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = [
    "NodeStatus",
    "RedisStatus",
    "inspect_cluster",
    "inspect_redis",
    "inspect_redis_cluster",
]


@dataclass
class NodeStatus:
    """One PostgreSQL node as seen now. LSNs in PostgreSQL notation, lag in bytes and ms.

    ``state``: ``up``; ``down`` (no answer); ``auth failed`` (it answered, but
    refused this client's login, so nothing else about it is known).
    """

    name: str
    role: str
    group: str | None
    host: str
    port: int
    state: str = "down"
    in_recovery: bool | None = None
    lsn: str | None = None
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    lag_bytes: int | None = None
    lag_ms: float | None = None
    streaming: bool | None = None
    sync_state: str | None = None
    # Primaries: synchronous_standby_names (None if commits wait for no replica), and
    # how many commits wait for one now (pg_stat_activity's wait event SyncRep).
    sync_standbys: str | None = None
    sync_waiting: int | None = None
    error: str | None = None
    ban: str | None = None  # replicas: why reads avoid it (manual, error, lag), if they do
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


@dataclass
class RedisStatus:
    """The configured Redis (or one Redis Cluster master) as seen now; ``pid`` only
    for a local cluster's. ``cluster_state`` is a Cluster master's ``ok``/``fail``;
    ``appendfsync`` its AOF fsync policy when it answers (None if AOF is off)."""

    host: str
    port: int
    state: str = "down"
    used_memory: int | None = None
    error: str | None = None
    pid: int | None = None
    name: str = "redis"
    cluster_state: str | None = None
    appendfsync: str | None = None


def _probe(node: Node, config: ClusterConfig, timeout: float) -> tuple[NodeStatus, dict[str, Any]]:
    st = NodeStatus(
        name=node.name, role=node.role.value, group=node.group, host=node.host, port=node.port
    )
    replicas: dict[str, Any] = {}
    try:
        with connect(node, config, connect_timeout=timeout) as conn:
            st.state = "up"
            row = conn.execute(
                "SELECT pg_is_in_recovery(), "
                "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, "
                "pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, "
                "(SELECT status FROM pg_stat_wal_receiver)"
            ).fetchone()
            if row is None:  # a SELECT without FROM returns one row
                raise MlscaleError(f"node {node.name} returned no status row")
            st.in_recovery, st.lsn, receive_lsn, replay_lsn, receiver = row
            if st.in_recovery:
                st.receive_lsn, st.replay_lsn = receive_lsn, replay_lsn
                st.streaming = receiver == "streaming"
            else:
                waits = conn.execute(
                    "SELECT current_setting('synchronous_standby_names'), "
                    "(SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep')"
                ).fetchone()
                if waits is not None:
                    st.sync_standbys = waits[0] or None
                    st.sync_waiting = int(waits[1])
                for app, state, sync, replay_lsn, lag in conn.execute(
                    "SELECT application_name, state, sync_state, replay_lsn::text, "
                    "extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication"
                ):
                    replicas[app] = {
                        "state": state,
                        "sync": sync,
                        "replay": replay_lsn,
                        "lag_ms": float(lag) if lag is not None else None,
                    }
    except AuthenticationError as exc:
        # The server answered: it is up, but this client may not look inside.
        st.state = "auth failed"
        st.error = describe_failure(exc)
    except (MlscaleError, psycopg.Error) as exc:
        st.error = describe_failure(exc)
    return st, replicas


def inspect_cluster(config: ClusterConfig, timeout: float = 2.0) -> list[NodeStatus]:
    """Status of every PostgreSQL node in ``config``, probed in parallel."""
    nodes = nodes_of(config)
    replicas = [n for n in nodes if n.role is Role.REPLICA]
    others = [n for n in nodes if n.role is not Role.REPLICA]
    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        # Replicas first: their positions must not be newer than the primary's.
        first = list(pool.map(lambda n: _probe(n, config, timeout), replicas))
        second = list(pool.map(lambda n: _probe(n, config, timeout), others))
    by_name = {st.name: (st, reps) for st, reps in first + second}
    for node in replicas:
        st, _ = by_name[node.name]
        primary, seen = by_name[primary_name(node.group or "")]
        mine = seen.get(node.slot_name) or seen.get(node.name)  # Patroni: member name
        if mine is not None:
            st.sync_state = mine["sync"]
            st.extra["sender_state"] = mine["state"]
        if st.state == "up" and primary.state == "up" and primary.lsn and st.replay_lsn:
            st.lag_bytes = lag_bytes(parse_lsn(primary.lsn), parse_lsn(st.replay_lsn))
            lag_ms = mine["lag_ms"] if mine else None
            # replay_lag goes NULL once a standby has caught up and the primary idles.
            st.lag_ms = lag_ms if lag_ms is not None else (0.0 if st.lag_bytes == 0 else None)
    _mark_bans(config, [by_name[n.name][0] for n in replicas], by_name["control"][0])
    return [by_name[n.name][0] for n in nodes]


def _mark_bans(config: ClusterConfig, replicas: list[NodeStatus], control: NodeStatus) -> None:
    """Each replica's ban, by the verdict routing acts on: manual bans from the
    catalog, and lag bans from one round of the monitor's samples judged by the
    balancer's ban policy. (A client that banned a replica for lag keeps it banned
    until its lag falls under the threshold times the hysteresis factor; this one
    round starts from no ban, so within that band a client may still avoid a
    replica that status shows as unbanned.)"""
    manual: dict[str, str] = {}
    if control.state == "up":
        try:
            with connect(nodes_of(config)[0], config) as conn:
                manual = read_bans(conn)
        except (MlscaleError, psycopg.Error):
            manual = {}  # no catalog yet, or one from before bans
    monitor = Monitor(config, heartbeat=False)
    try:
        monitor.sample_once()
        samples = monitor.snapshot()[1]
    finally:
        monitor.stop()
    balancer = ReplicaBalancer(config)
    balancer.sync_manual(manual)
    states = {
        state.name: state
        for group in {st.group for st in replicas if st.group is not None}
        for state in balancer.states(
            group, [st.name for st in replicas if st.group == group], samples
        )
    }
    for st in replicas:
        state = states.get(st.name)
        if state is not None and state.ban is not None:
            st.ban = str(state.ban)
        elif st.state != "up" or (state is not None and not state.up):
            st.ban = f"error: {st.state if st.state != 'up' else 'down'}"
        else:
            st.ban = None


def _probe_redis(
    st: RedisStatus, password: str | None, db: int, timeout: float, cluster: bool
) -> RedisStatus:
    import redis  # only for status: not on the import path of the package
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        client = redis.Redis(
            host=st.host,
            port=st.port,
            db=db,
            password=password,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,
            # One look, as for the PostgreSQL nodes: redis-py's default retries a
            # refused connection with backoff, ~5 s of a stopped cluster's status.
            retry=Retry(NoBackoff(), 0),
        )
        try:
            info = client.info("memory")
            st.state = "up"
            st.used_memory = int(info.get("used_memory", 0))
            if client.info("persistence").get("aof_enabled"):
                st.appendfsync = str(client.config_get("appendfsync").get("appendfsync"))
            if cluster:
                st.cluster_state = str(client.cluster("INFO").get("cluster_state"))
        finally:
            client.close()
    except (redis.RedisError, MlscaleError) as exc:
        st.error = describe_failure(exc)
    return st


def inspect_redis(config: ClusterConfig, timeout: float = 2.0) -> RedisStatus | None:
    """Whether the configured Redis answers, or None if none is configured."""
    rc = config.redis
    if rc is None:
        return None
    st = RedisStatus(host=rc.host, port=rc.port)
    try:
        password = redis_password(config)
    except MlscaleError as exc:
        st.error = describe_failure(exc)
        return st
    return _probe_redis(st, password, rc.db, timeout, cluster=False)


def inspect_redis_cluster(config: ClusterConfig, timeout: float = 2.0) -> list[RedisStatus]:
    """Each configured Redis Cluster master: up or down, and its ``cluster_state``;
    empty if no Redis Cluster is configured."""
    rc = config.redis_cluster
    if rc is None:
        return []
    out = [
        RedisStatus(host=n.host, port=n.port, name=f"redis-cluster-{i}")
        for i, n in enumerate(rc.nodes)
    ]
    try:
        password = redis_cluster_password(config)
    except MlscaleError as exc:
        for st in out:
            st.error = describe_failure(exc)
        return out
    return [_probe_redis(st, password, 0, timeout, cluster=True) for st in out]

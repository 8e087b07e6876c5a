"""``mlscale up | down | destroy | status``: local cluster lifecycle."""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import load_config
from ..engine.inspect import inspect_cluster, inspect_redis, inspect_redis_cluster
from ..engine.patroni import inspect_scopes
from ..local.cluster import LocalCluster
from .options import dir_option


@click.command()
@dir_option
@click.option("--shards", type=int, default=None, help="Shard groups to create [default: 2].")
@click.option(
    "--replicas", type=int, default=None, help="Streaming replicas per shard group [default: 1]."
)
@click.option("--redis/--no-redis", default=None, help="Start a Redis too [default: yes].")
@click.option(
    "--redis-cluster",
    type=int,
    default=None,
    metavar="N",
    help="Also start a Redis Cluster of N masters (N >= 3) on loopback.",
)
@click.option(
    "--redis-fsync",
    type=click.Choice(["always", "everysec"]),
    default=None,
    help="AOF fsync policy of the Redis servers: 'always' loses no acknowledged write, "
    "'everysec' up to a second of them in a crash [default: everysec].",
)
@click.option(
    "--sync-replication/--async-replication",
    default=None,
    help="Commits wait for one replica of their group [default: async].",
)
@click.option(
    "--base-port",
    type=int,
    default=None,
    help="Use ports BASE, BASE+1, ... instead of the first free ones.",
)
@click.option(
    "--os-user",
    default=None,
    help="OS user servers run as when started as root [default: mlscale].",
)
@click.option(
    "--node-cpu",
    type=float,
    default=None,
    metavar="CPUS",
    help="Cap each PostgreSQL node at this many CPUs (cgroups, 10 ms period), e.g. 0.25.",
)
@click.option(
    "--ha/--no-ha",
    default=None,
    help="Run every shard group and the control database as a Patroni cluster on a "
    "3-member etcd [default: no].",
)
@click.option(
    "--sync",
    "ha_sync",
    type=click.Choice(["off", "on", "strict"]),
    default=None,
    help="With --ha: Patroni's synchronous mode; 'strict' loses no acknowledged write on "
    "failover [default: strict].",
)
def up(
    cluster_dir: str,
    shards: int | None,
    replicas: int | None,
    redis: bool | None,
    redis_cluster: int | None,
    redis_fsync: str | None,
    sync_replication: bool | None,
    base_port: int | None,
    os_user: str | None,
    node_cpu: float | None,
    ha: bool | None,
    ha_sync: str | None,
) -> None:
    """Create a local cluster, or start whatever of it is down."""
    cluster = LocalCluster(cluster_dir)
    report = cluster.up(
        shards=shards,
        replicas=replicas,
        redis=redis,
        sync_replication=sync_replication,
        base_port=base_port,
        os_user=os_user,
        node_cpu=node_cpu,
        redis_cluster=redis_cluster,
        redis_fsync=redis_fsync,
        ha=ha,
        ha_sync=ha_sync,
    )
    for warning in report.warnings:
        click.echo(f"mlscale: warning: {warning}", err=True)
    if report.created:
        click.echo(f"created cluster in {cluster.root}: {', '.join(report.started)}")
    elif report.started:
        click.echo(f"started {', '.join(report.started)} in {cluster.root}")
    else:
        click.echo(f"cluster in {cluster.root} is already running; nothing to do")
    if report.migrations:
        click.echo(
            f"catalog migrated to version {max(report.migrations)}; topology epoch {report.epoch}"
        )
    click.echo(f"config: {report.config_path}")


@click.command()
@dir_option
def down(cluster_dir: str) -> None:
    """Stop every server of the local cluster."""
    stopped = LocalCluster(cluster_dir).down()
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@click.command()
@dir_option
def destroy(cluster_dir: str) -> None:
    """Stop the local cluster and delete its directory."""
    cluster = LocalCluster(cluster_dir)
    if cluster.destroy():
        click.echo(f"destroyed {cluster.root}")
    else:
        click.echo(f"nothing to destroy at {cluster.root}")


# `mlscale status`'s exit status when no PostgreSQL node runs (LSB's "not running").
EVERY_NODE_DOWN = 3


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


_COLUMNS = (
    ("NODE", "name"),
    ("ROLE", "role"),
    ("PORT", "port"),
    ("STATE", "state"),
    ("PID", "pid"),
    ("CPU", "cpu_cap"),
    ("LSN", "lsn"),
    ("REPLAY_LSN", "replay_lsn"),
    ("LAG_BYTES", "lag_bytes"),
    ("LAG_MS", "lag_ms"),
    ("SYNC", "sync_state"),
    ("BAN", "ban"),
)


def _table(data: dict[str, Any]) -> str:
    rows = [[_fmt(n.get(key)) for _, key in _COLUMNS] for n in data["nodes"]]
    redis_rows = ([data["redis"]] if data.get("redis") else []) + list(
        data.get("redis_cluster") or []
    )
    for redis_st in redis_rows:
        cluster_state = redis_st.get("cluster_state")
        rows.append(
            [
                redis_st.get("name", "redis"),
                "cache" if cluster_state is None else f"cache cluster:{cluster_state}",
                str(redis_st["port"]),
                redis_st["state"],
                _fmt(redis_st.get("pid")),
                *(["-"] * (len(_COLUMNS) - 5)),
            ]
        )
    head = [h for h, _ in _COLUMNS]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *rows]
    ]
    errors = [f"{n['name']}: {n['error']}" for n in data["nodes"] if n.get("error")]
    stalled = [
        f"{n['name']}: {n['sync_waiting']} commit{'s' if n['sync_waiting'] > 1 else ''} waiting "
        f"for synchronous replication ({n['sync_standbys']}); they stall until a synchronous "
        "replica is back"
        for n in data["nodes"]
        if n.get("sync_waiting")
    ]
    return "\n".join(lines + errors + stalled + _ha_lines(data.get("ha")))


_HA_COLUMNS = (
    ("SCOPE", "scope"),
    ("MEMBER", "name"),
    ("PATRONI_ROLE", "role"),
    ("STATE", "state"),
    ("TL", "timeline"),
    ("LAG_BYTES", "lag_bytes"),
    ("SYNC", "sync"),
)


def _ha_lines(ha: dict[str, Any] | None) -> list[str]:
    """Patroni's view of each scope: members, leader, last failover; the watchdog."""
    if not ha:
        return []
    rows = []
    for scope in ha["scopes"]:
        for m in scope["members"]:
            sync = (
                "leader"
                if m["role"] == "leader"
                else ("sync" if m["role"] in ("sync_standby", "quorum_standby") else "async")
            )
            rows.append({**m, "scope": scope["scope"], "sync": sync})
    head = [h for h, _ in _HA_COLUMNS]
    table = [[_fmt(r.get(k)) for _, k in _HA_COLUMNS] for r in rows]
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    local = f" (synchronous mode: {ha['sync']}; watchdog: {ha['watchdog']})" if "sync" in ha else ""
    out = ["", f"patroni{local}"]
    out += [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [head, *table]
    ]
    for scope in ha["scopes"]:
        last = scope.get("last_failover")
        when = (
            f"last failover: timeline {last['timeline']} ended at {last['at'] or '?'} "
            f"({last['reason']}), new leader {last['new_leader'] or '?'}"
            if last
            else "no failover yet"
        )
        lead = scope.get("leader") or "NO LEADER"
        err = f"; {scope['error']}" if scope.get("error") else ""
        out.append(f"{scope['scope']}: leader {lead}; {when}{err}")
    down = [n for n, pid in {**ha.get("agents", {}), **ha.get("etcd", {})}.items() if pid is None]
    if down:
        out.append(f"not running: {', '.join(down)}")
    return out


@click.command()
@dir_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Inspect the servers of this config instead of a local cluster.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, cluster_dir: str, config_file: str | None, as_json: bool) -> None:
    """Every node: role, port, up/down, WAL positions, replica lag.

    Exits 3 when every PostgreSQL node is down (as an init script's status does when
    nothing runs), else 0.
    """
    if config_file:
        config = load_config(config_file)
        redis_st = inspect_redis(config)
        data: dict[str, Any] = {
            "config": config_file,
            "nodes": [n.as_dict() for n in inspect_cluster(config)],
            "redis": None if redis_st is None else vars(redis_st),
            "redis_cluster": [vars(st) for st in inspect_redis_cluster(config)],
        }
        scopes = inspect_scopes(config)
        if scopes:
            data["ha"] = {"scopes": [s.to_dict() for s in scopes]}
    else:
        data = LocalCluster(cluster_dir).describe()
    click.echo(json.dumps(data, indent=2) if as_json else _table(data))
    if all(n["state"] == "down" for n in data["nodes"]):
        ctx.exit(EVERY_NODE_DOWN)

"""The HA part of a local cluster (``mlscale up --ha``): etcd, one Patroni agent per
PostgreSQL node, one Patroni scope per shard group and one for the control database.

Creation: etcd's 3 members start and elect; every agent's file is written; the
agent of each scope's designated first node (``control``, ``gN-primary``) starts
and bootstraps the scope (initdb); once every scope has a running leader the other
agents start and clone it (pg_basebackup through Patroni). ``up`` returns when every
scope has a leader and every other member streams (and, in synchronous mode, a sync
standby is chosen).

Stopping works from the cluster directory alone (PID files and the agents' files),
so a broken ``mlscale.toml`` cannot keep it running: replicas' agents first, then the
leaders' (so no replica takes over during shutdown), then any PostgreSQL left behind
(an agent killed hard leaves its server running), then etcd.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ClusterConfig, LocalHaConfig, patroni_address
from ..core.topology import Node, Role, primary_name, replica_name
from ..engine.patroni import PatroniError, PatroniView, ScopeStatus, fetch_view, inspect_scopes
from ..errors import NodeStartError
from .binaries import PgBinaries
from .etcd import EtcdMember, etcd_hosts, find_etcd, initial_cluster, member_name
from .layout import Layout
from .osuser import ServiceUser
from .patroni import PatroniAgent, patroni_config, patroni_parameters
from .pgnode import PgNode
from .settings import HBA

__all__ = [
    "CONTROL_SCOPE",
    "HaMember",
    "LocalHa",
    "control_replica_name",
    "ha_members",
    "watchdog_present",
]

log = logging.getLogger(__name__)

CONTROL_SCOPE = "control"
WATCHDOG_DEVICE = Path("/dev/watchdog")
_BOOTSTRAP_TIMEOUT_S = 120.0
_JOIN_TIMEOUT_S = 180.0


def watchdog_present() -> bool:
    """Whether this machine has a watchdog device Patroni could use."""
    return WATCHDOG_DEVICE.exists()


def control_replica_name(index: int) -> str:
    """The node name of the control database's standby number ``index`` (from 1)."""
    return f"control-replica{index}"


@dataclass(frozen=True, slots=True)
class HaMember:
    """One PostgreSQL node of a local HA cluster and its agent's REST endpoint.

    ``first``: the node whose agent starts first and bootstraps its scope.
    """

    name: str
    scope: str
    host: str
    port: int
    rest_url: str
    first: bool

    @property
    def rest_port(self) -> int:
        return patroni_address(self.rest_url)[1]


def ha_members(config: ClusterConfig) -> list[HaMember]:
    """Every node of the HA cluster ``config`` describes, scope by scope (control first).

    The ``patroni`` endpoints of a scope are in the order of its nodes (primary or
    control node first, then replicas), as ``mlscale up --ha`` writes them.
    """
    scopes: list[tuple[str, list[tuple[str, Any]], list[str] | None]] = [
        (
            CONTROL_SCOPE,
            [("control", config.control)]
            + [
                (control_replica_name(i), r) for i, r in enumerate(config.control.replicas or (), 1)
            ],
            config.control.patroni,
        )
    ]
    for group in config.shard_groups:
        scopes.append(
            (
                group.name,
                [(primary_name(group.name), group.primary)]
                + [(replica_name(group.name, i), r) for i, r in enumerate(group.replicas, 1)],
                group.patroni,
            )
        )
    out = []
    for scope, nodes, rest in scopes:
        if rest is None or len(rest) != len(nodes):
            raise NodeStartError(
                f"scope {scope}: the config lists {len(rest or [])} patroni endpoints for "
                f"{len(nodes)} nodes; a local HA cluster records one per node"
            )
        for i, ((name, cfg), url) in enumerate(zip(nodes, rest, strict=True)):
            out.append(HaMember(name, scope, cfg.host, cfg.port, url, first=i == 0))
    return out


def _parallel(fn: Callable[[Any], object], items: Iterable[Any]) -> None:
    items = list(items)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        for future in [pool.submit(fn, item) for item in items]:
            future.result()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(ln.strip() for ln in text[-lines:]) or "empty log"


class LocalHa:
    """etcd and the Patroni agents of the cluster in ``layout``."""

    def __init__(self, layout: Layout, user: ServiceUser) -> None:
        self.layout = layout
        self.user = user

    # -- what is there --------------------------------------------------------

    @property
    def etcd_dir(self) -> Path:
        return self.layout.root / "etcd"

    def etcd_members(self, ports: Sequence[tuple[int, int]]) -> list[EtcdMember]:
        return [
            EtcdMember(member_name(i), self.etcd_dir / member_name(i), client, peer, self.user)
            for i, (client, peer) in enumerate(ports)
        ]

    def _found_etcd(self) -> list[EtcdMember]:
        """etcd members found on disk (for stopping without a config)."""
        found = []
        for pid_file in sorted(self.etcd_dir.glob("*/etcd.pid")):
            found.append(EtcdMember(pid_file.parent.name, pid_file.parent, 0, 0, self.user))
        return found

    def agent(self, name: str) -> PatroniAgent:
        return PatroniAgent(name, self.layout.node_dir(name), self.user)

    def _found_agents(self) -> list[PatroniAgent]:
        """Agents found on disk: every node directory with a Patroni file."""
        nodes = self.layout.root / "nodes"
        return [self.agent(p.parent.name) for p in sorted(nodes.glob("*/patroni.yml"))]

    def _pg(self, name: str, bins: PgBinaries | None = None) -> PgNode:
        node = Node(name, Role.REPLICA, None, "127.0.0.1", 0, "", "")
        return PgNode(node, self.layout.data_dir(name), self.layout.log(name), bins, self.user)

    def processes(self) -> dict[str, list[int]]:
        """PIDs by name: ``patroni:NODE`` for agents, NODE for each PostgreSQL node (the
        postmaster and its children), ``etcdN`` for etcd members."""
        out: dict[str, list[int]] = {}
        for agent in self._found_agents():
            pid = agent.pid()
            out[f"patroni:{agent.name}"] = [pid] if pid else []
            out[agent.name] = self._pg(agent.name).processes()
        for member in self._found_etcd():
            pid = member.pid()
            out[member.name] = [pid] if pid else []
        return out

    # -- starting ---------------------------------------------------------------

    def write_configs(
        self,
        config: ClusterConfig,
        bins: PgBinaries,
        secret: str,
        settings_of: Callable[[int], dict[str, str]],
    ) -> None:
        """Write every agent's file (``settings_of(port)``: the node's PostgreSQL settings)."""
        ha = _ha_of(config)
        hosts = etcd_hosts(list(ha.etcd))
        hba = [ln for ln in HBA.splitlines() if ln and not ln.startswith("#")]
        for m in ha_members(config):
            agent = self.agent(m.name)
            node_dir = self.layout.node_dir(m.name)
            agent.write_config(
                patroni_config(
                    scope=m.scope,
                    name=m.name,
                    rest_port=m.rest_port,
                    pg_port=m.port,
                    node_dir=node_dir,
                    data_dir=self.layout.data_dir(m.name),
                    bin_dir=bins.bindir,
                    etcd_hosts=hosts,
                    user=config.auth.user,
                    secret=secret,
                    sync=ha.sync,
                    parameters=patroni_parameters(settings_of(m.port)),
                    hba=hba,
                    watchdog=ha.watchdog,
                )
            )

    def start_etcd(self, config: ClusterConfig, timeout: float = 30.0) -> list[str]:
        """Start the etcd members that are down and wait for a healthy quorum; names started."""
        ha = _ha_of(config)
        members = self.etcd_members(list(ha.etcd))
        down = [m for m in members if m.pid() is None]
        if down:
            binary = find_etcd()
            cluster = initial_cluster([(m.name, m.peer_port) for m in members])
            token = f"mlscale-{config.name}-{os.getpid()}"
            for m in down:
                m.start(binary, cluster, token)
        for m in members:
            m.wait_healthy(timeout)
        return [m.name for m in down]

    def start_agents(
        self, config: ClusterConfig, patroni_bin: Path, *, bootstrap: bool
    ) -> list[str]:
        """Start the agents that are down and wait until every member streams; names started.

        ``bootstrap`` (a new cluster): each scope's first node first, the rest once every
        scope has a running leader to clone. Otherwise all at once: after a failover the
        first node may not be the one Patroni lets lead (in strict synchronous mode only
        the last sync standby may), so Patroni must see every member to choose.
        """
        members = ha_members(config)
        down = [m for m in members if self.agent(m.name).pid() is None]
        started: set[str] = set()
        if bootstrap:
            for m in (m for m in down if m.first):
                self.agent(m.name).start(patroni_bin)
                started.add(m.name)
            self.wait_leaders(config, _BOOTSTRAP_TIMEOUT_S, started)
        for m in (m for m in down if m.name not in started):
            self.agent(m.name).start(patroni_bin)
            started.add(m.name)
        self.wait_members(config, _JOIN_TIMEOUT_S, started)
        return [m.name for m in down]

    def _endpoints(self, config: ClusterConfig) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for m in ha_members(config):
            out.setdefault(m.scope, []).append(m.rest_url)
        return out

    def _check_agents_alive(self, names: Iterable[str]) -> None:
        for name in names:
            agent = self.agent(name)
            if agent.pid() is None:
                raise NodeStartError(
                    f"the Patroni agent of {name} exited: {_log_tail(agent.log_file)} "
                    f"(log: {agent.log_file})"
                )

    def _wait(
        self,
        config: ClusterConfig,
        timeout: float,
        what: str,
        done: Callable[[PatroniView], bool],
        started: Iterable[str],
    ) -> dict[str, PatroniView]:
        deadline = time.monotonic() + timeout
        endpoints = self._endpoints(config)
        views: dict[str, PatroniView] = {}
        while True:
            for scope, urls in endpoints.items():
                if scope in views:
                    continue
                try:
                    view = fetch_view(urls, timeout=1.0)
                except PatroniError:
                    continue
                if done(view):
                    views[scope] = view
            if len(views) == len(endpoints):
                return views
            self._check_agents_alive(started)
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(set(endpoints) - set(views)))
                raise NodeStartError(
                    f"Patroni scopes {missing}: {what} after {timeout:.0f} s; "
                    "see nodes/*/patroni.log"
                )
            time.sleep(0.2)

    def wait_leaders(
        self, config: ClusterConfig, timeout: float, started: Iterable[str] = ()
    ) -> dict[str, PatroniView]:
        """Wait until every scope has a running leader; the views. Fails early when one
        of the agents ``started`` exits."""
        return self._wait(
            config,
            timeout,
            "no running leader",
            lambda v: v.leader is not None and v.leader.state == "running",
            list(started),
        )

    def wait_members(
        self, config: ClusterConfig, timeout: float, started: Iterable[str] = ()
    ) -> dict[str, PatroniView]:
        """Wait until every scope has a running leader, every other member streams, and
        (in synchronous mode) one of them is the sync standby; the views."""
        ha = _ha_of(config)
        want: dict[str, set[str]] = {}
        for m in ha_members(config):
            want.setdefault(m.scope, set())
            want[m.scope].add(m.name)

        def done(view: PatroniView) -> bool:
            leader = view.leader
            if leader is None or leader.state != "running":
                return False
            names = {m.name for m in view.members}
            if names != want.get(view.scope, names):
                return False
            others = [m for m in view.members if not m.is_leader]
            if any(m.state != "streaming" for m in others):
                return False
            return ha.sync == "off" or not others or any(m.is_sync for m in others)

        return self._wait(config, timeout, "not every member streams", done, list(started))

    def leader_node(self, config: ClusterConfig, scope: str, template: Node) -> Node:
        """``template`` (a node of ``scope`` from the topology) moved to where the scope's
        current leader listens."""
        view = fetch_view(self._endpoints(config)[scope])
        leader = view.leader
        if leader is None or leader.host is None or leader.port is None:
            raise PatroniError(f"scope {scope} has no leader now")
        return Node(
            template.name if leader.name == template.name else leader.name,
            template.role,
            template.group,
            leader.host,
            leader.port,
            template.dbname,
            template.user,
        )

    # -- stopping ------------------------------------------------------------------

    def _leaders_now(self, agents: Sequence[PatroniAgent]) -> set[str]:
        """Names of the members that lead their scope now, asked of the running agents
        (best effort: an empty set stops everyone at once)."""
        scopes: dict[str, list[str]] = {}
        for agent in agents:
            try:
                doc = json.loads(
                    agent.config_file.read_text().split("\n", 1)[1]
                )  # first line: our comment
                listen = str(doc["restapi"]["connect_address"])
                scopes.setdefault(str(doc["scope"]), []).append(f"http://{listen}")
            except (OSError, ValueError, KeyError, IndexError):
                continue
        leaders = set()
        for urls in scopes.values():
            try:
                leader = fetch_view(urls, timeout=1.0).leader
            except PatroniError:
                continue
            if leader is not None:
                leaders.add(leader.name)
        return leaders

    def stop(self) -> list[str]:
        """Stop agents (replicas' first), leftover PostgreSQL, then etcd; names stopped."""
        agents = [a for a in self._found_agents() if a.pid() is not None]
        leaders = self._leaders_now(agents)
        stopped: list[str] = []
        for batch in (
            [a for a in agents if a.name not in leaders],
            [a for a in agents if a.name in leaders],
        ):
            _parallel(lambda a: a.stop(), batch)
            stopped += [f"patroni:{a.name}" for a in batch]
        # An agent that was killed hard (or stopped by SIGKILL after hanging) leaves its
        # server running; PostgreSQL's children call setsid(), so stop by postmaster PID.
        leftovers = [
            self._pg(a.name) for a in self._found_agents() if self._pg(a.name).is_running()
        ]
        _parallel(lambda n: n.stop(), leftovers)
        stopped += [n.name for n in leftovers]
        for member in self._found_etcd():
            if member.stop():
                stopped.append(member.name)
        return stopped

    # -- status ----------------------------------------------------------------------

    def status(self, config: ClusterConfig) -> list[ScopeStatus]:
        """Every scope as Patroni sees it now, with its last failover."""
        return inspect_scopes(config)


def _ha_of(config: ClusterConfig) -> LocalHaConfig:
    if config.local is None or config.local.ha is None:
        raise NodeStartError("this cluster was not made with --ha")
    return config.local.ha

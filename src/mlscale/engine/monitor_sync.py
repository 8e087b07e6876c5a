# Generated from monitor_async.py by scripts/async_to_sync.py: do not edit.
# Change monitor_async.py and run the script again.
"""The replica monitor: WAL positions, staleness and health of every node, in the background.

Every ``interval_s`` (100 ms by default) one loop samples each replica's
receive and replay LSN and the age of the newest heartbeat it has replayed,
then each primary's current LSN, system identifier and timeline. Replicas are
sampled before their primary, so a computed lag can only overstate a delay.
The router reads these samples; it never queries lag per read. (What the
catalog says -- bans, shard maps -- is the catalog watcher's: watch_sync.py.)

Heartbeats: replay timestamps stop moving when a primary is idle, so staleness
in time comes from a row each primary gets every interval. One monitor per
primary writes it -- whichever holds a session advisory lock there; if that
process dies its lock goes with its connection and another monitor takes over.

``monitor_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import Connection

from ..core.lsn import lag_bytes, parse_lsn
from ..core.staleness import PositionHistory, staleness_ms
from ..core.topology import Node, Role, nodes_of
from .concurrency_sync import Background, Stop
from .connect import connect_kwargs, describe_failure
from .samples import (
    HEARTBEAT_DDL,
    HEARTBEAT_LOCK,
    HEARTBEAT_WRITE,
    PRIMARY_SAMPLE,
    REPLICA_BEAT,
    REPLICA_SAMPLE,
    PrimarySample,
    ReplicaSample,
)

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["Monitor"]

log = logging.getLogger(__name__)


class Monitor:
    """Samples every node of ``config`` in the background; readers take the latest samples."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        interval_s: float = 0.1,
        heartbeat: bool = True,
        on_change: Callable[[str, str | None], None] | None = None,
        members: Callable[[], tuple[list[Node], list[Node]]] | None = None,
    ) -> None:
        self.config = config
        # members(): the (primaries, replicas) to sample now; in a Patroni group its
        # leader and streaming members, which a failover changes (default: the config's).
        self._members = members or self._config_members
        # on_change(node, error): called when a node is seen going down (with the
        # error) or coming back (None).
        self._on_change = on_change
        self._down: dict[str, str] = {}
        self.interval_s = interval_s
        self.heartbeat = heartbeat
        self._nodes = [n for n in nodes_of(config) if n.role is not Role.CONTROL]
        self._conns: dict[str, Connection[Any]] = {}
        self._writer: set[str] = set()  # primaries whose heartbeat this monitor writes
        self._lock = threading.Lock()
        self._stop = Stop()
        self._loop = Background("mlscale-monitor", self._run)
        self.primaries: dict[str, PrimarySample] = {}
        self.replicas: dict[str, ReplicaSample] = {}
        self.rounds = 0
        # Each group's primary positions over the last seconds: a staleness bound
        # that holds even when heartbeats were not written (see core/staleness.py).
        self._history: dict[str, PositionHistory] = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Start sampling in the background (idempotent)."""
        if not self._loop.running:
            self._loop.start()

    def stop(self) -> None:
        """Stop sampling and close the monitor's connections."""
        self._stop.set()
        self._loop.join(5.0)
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # the monitor must outlive any one bad round
                log.warning("monitor round failed", exc_info=True)
            if self._stop.wait(self.interval_s):
                return

    # -- sampling -------------------------------------------------------------------------

    def _conn(self, node: Node) -> Connection[Any]:
        conn = self._conns.get(node.name)
        if conn is None or conn.closed:
            kwargs = connect_kwargs(node, self.config, connect_timeout=1.0)
            kwargs["application_name"] = "mlscale-monitor"
            conn = Connection.connect(autocommit=True, **kwargs)
            # The heartbeat needs no standby's confirmation: under synchronous
            # replication (Patroni's strict mode) its commit would otherwise wait, and
            # stall every sample, while a group has no sync standby (a failover).
            conn.execute("SET synchronous_commit = local")
            self._conns[node.name] = conn
        return conn

    def _config_members(self) -> tuple[list[Node], list[Node]]:
        primaries = [n for n in self._nodes if n.role is Role.PRIMARY]
        return primaries, [n for n in self._nodes if n.role is Role.REPLICA]

    def _drop(self, node: Node) -> None:
        conn = self._conns.pop(node.name, None)
        self._writer.discard(node.name)
        if conn is not None and not conn.closed:
            conn.close()

    def sample_once(self) -> None:
        """One round: every replica, then every primary."""
        primaries, replicas = self._members()
        if self.rounds == 0:
            # A first position to measure replicas against; the round's own primary
            # samples come after its replica samples.
            for n in primaries:
                self._sample_primary(n, beat=False)
        replica_samples = {n.name: self._sample_replica(n) for n in replicas}
        primary_samples = {n.group or "": self._sample_primary(n) for n in primaries}
        for node in list(self._conns):  # a node no longer sampled (stopped, or demoted)
            if node not in replica_samples and all(
                p.node != node for p in primary_samples.values()
            ):
                self._drop(next(n for n in self._nodes if n.name == node))
        for name, sample in replica_samples.items():
            primary = primary_samples.get(sample.group)
            if primary is None or sample.replay_lsn is None:
                continue
            if primary.lsn is not None:
                replica_samples[name] = replace(
                    sample, lag_bytes=lag_bytes(primary.lsn, sample.replay_lsn)
                )
            elif not primary.up:
                replica_samples[name] = self._without_primary(sample)
        self._tell_changes([*replica_samples.values(), *primary_samples.values()])
        with self._lock:
            self.replicas = replica_samples
            self.primaries = primary_samples
            self.rounds += 1

    def _without_primary(self, sample: ReplicaSample) -> ReplicaSample:
        """A replica's lag while its primary is down, measured against the primary's
        last known position: nothing new commits without a primary, so a replica that
        has replayed that position holds everything the primary was last seen to have."""
        last = self._history.get(sample.group)
        seen = last.latest() if last is not None else None
        if seen is None or sample.replay_lsn is None:
            return sample
        behind = lag_bytes(seen[0], sample.replay_lsn)
        if behind == 0:
            return replace(sample, lag_bytes=0, staleness_ms=0.0)
        return replace(sample, lag_bytes=behind)

    def _tell_changes(self, samples: list[ReplicaSample | PrimarySample]) -> None:
        """Tell ``on_change`` of every node seen going down (or down for a new reason)
        or coming back."""
        for sample in samples:
            was = self._down.get(sample.node)
            if not sample.up:
                error = sample.error or "down"
                self._down[sample.node] = error
                if was != error and self._on_change is not None:  # down, or a new cause
                    self._on_change(sample.node, error)
            elif was is not None:
                del self._down[sample.node]
                if self._on_change is not None:
                    self._on_change(sample.node, None)

    def last_primary_positions(self) -> dict[str, tuple[int, float]]:
        """Per group: the primary's last known WAL position (bytes) and when it was
        seen there (monotonic seconds)."""
        with self._lock:
            found = {g: h.latest() for g, h in list(self._history.items())}
        return {g: seen for g, seen in found.items() if seen is not None}

    def _sample_replica(self, node: Node) -> ReplicaSample:
        group = node.group or ""
        now = time.monotonic()
        try:
            conn = self._conn(node)
            cur = conn.execute(REPLICA_SAMPLE)
            row = cur.fetchone()
            staleness = None
            try:
                cur = conn.execute(REPLICA_BEAT, (group,))
                beat = cur.fetchone()
                staleness = max(0.0, float(beat[0])) if beat and beat[0] is not None else None
            except psycopg.errors.UndefinedTable:
                pass  # no heartbeat has reached this replica yet
            done = time.monotonic()
        except (psycopg.Error, OSError) as exc:
            self._drop(node)
            return ReplicaSample(node.name, group, up=False, at=now, error=describe_failure(exc))
        if row is None:
            return ReplicaSample(node.name, group, up=False, at=now, error="no sample row")
        receive, replay, system_id, timeline, in_recovery = row
        replay_lsn = parse_lsn(replay) if replay else None
        history = self._history.get(group)
        if history is not None and replay_lsn is not None:
            staleness = staleness_ms(staleness, history.caught_up_at(replay_lsn), done)
        return ReplicaSample(
            node.name,
            group,
            up=True,
            at=now,
            receive_lsn=parse_lsn(receive) if receive else None,
            replay_lsn=replay_lsn,
            staleness_ms=staleness,
            system_identifier=int(system_id) if system_id is not None else None,
            timeline=int(timeline) if timeline is not None else None,
            in_recovery=bool(in_recovery),
        )

    def _sample_primary(self, node: Node, *, beat: bool = True) -> PrimarySample:
        group = node.group or ""
        now = time.monotonic()
        try:
            conn = self._conn(node)
            if beat and self.heartbeat:
                self._beat(conn, node.name, group)
            cur = conn.execute(PRIMARY_SAMPLE)
            row = cur.fetchone()
        except (psycopg.Error, OSError) as exc:
            self._drop(node)
            return PrimarySample(node.name, group, up=False, at=now, error=describe_failure(exc))
        if row is None:
            return PrimarySample(node.name, group, up=False, at=now, error="no sample row")
        lsn, system_id, timeline = row
        position = parse_lsn(lsn)
        self._history.setdefault(group, PositionHistory()).add(position, now)
        return PrimarySample(
            node.name,
            group,
            up=True,
            at=now,
            lsn=position,
            system_identifier=int(system_id),
            timeline=int(timeline),
            writes_heartbeat=node.name in self._writer,
        )

    def _beat(self, conn: Connection[Any], node: str, group: str) -> None:
        if node not in self._writer:
            cur = conn.execute("SELECT pg_try_advisory_lock(%s)", (HEARTBEAT_LOCK,))
            row = cur.fetchone()
            if not (row and row[0]):
                return  # another monitor writes this group's heartbeat
            conn.execute(HEARTBEAT_DDL)
            self._writer.add(node)
        conn.execute(HEARTBEAT_WRITE, (group,))

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> tuple[dict[str, PrimarySample], dict[str, ReplicaSample]]:
        """The latest samples: (primaries by group, replicas by node name).

        Each round replaces the dicts whole, so readers may keep what they get.
        """
        with self._lock:
            return self.primaries, self.replicas

    def primary_of(self, group: str) -> PrimarySample | None:
        with self._lock:
            return self.primaries.get(group)

"""Chapter 2, read replicas: a read right after a write, with and without a causal token.

One replica is made to replay WAL ``DELAY_MS`` late (recovery_min_apply_delay),
as a busy or distant replica would. Write-then-read pairs then read with
EVENTUAL consistency (any replica) and with READ_YOUR_WRITES (the writer's
causal token): the first misses some of its own writes, the second none, and
the router's metrics say how many token reads replicas still served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from psycopg import sql

from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError
from .foundation import ChapterResult, Params, Row

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["DELAY_MS", "needs", "run_replicas"]

DELAY_MS = 200
CREATE = "CREATE TABLE mlscale_demo.events (id bigint PRIMARY KEY, payload text)"
INSERT = (
    "INSERT INTO mlscale_demo.events VALUES (nextval('mlscale_demo.event_ids'), %s) RETURNING id"
)
READ = "SELECT count(*) FROM mlscale_demo.events WHERE id = %s"


def _set_delay(cluster: Cluster, replica: str, delay_ms: int) -> None:
    with cluster.connection(replica) as conn:
        if delay_ms:
            conn.execute(
                sql.SQL("ALTER SYSTEM SET recovery_min_apply_delay = {}").format(
                    sql.Literal(f"{delay_ms}ms")
                )
            )
        else:
            conn.execute("ALTER SYSTEM RESET recovery_min_apply_delay")
        conn.execute("SELECT pg_reload_conf()")


def _pairs(cluster: Cluster, count: int, consistency: str) -> tuple[int, float]:
    """(stale reads, mean read latency in ms) of ``count`` write-then-read pairs."""
    stale = 0
    read_s = 0.0
    for i in range(count):
        with cluster.session(consistency="read_your_writes") as s:
            new_id = s.fetch_value(INSERT, (f"pair {i}",))
            token = s.token if consistency == "read_your_writes" else None
        t0 = time.perf_counter()
        found = cluster.fetch_value(READ, (new_id,), consistency=consistency, token=token)
        read_s += time.perf_counter() - t0
        stale += found != 1
    return stale, read_s / count * 1000


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything: one
    replica to delay and one to read on time, in the first shard group."""
    group = config.shard_groups[0]
    if len(group.replicas) < 2:
        return (
            f"the read-replicas chapter needs 2 replicas in shard group {group.name} "
            f"(it has {len(group.replicas)})"
        )
    return None


def run_replicas(cluster: Cluster, params: Params, echo: Callable[[str], None]) -> ChapterResult:
    """Count stale reads after writes, eventual vs read-your-writes."""
    replicas = cluster.replica_nodes()
    if len(replicas) < 2:
        raise MlscaleError("the read-replicas chapter needs two replicas")
    result = ChapterResult()
    count = 50 if params.visibility_samples < 100 else 200
    cluster.execute("CREATE SEQUENCE IF NOT EXISTS mlscale_demo.event_ids")
    cluster.execute(CREATE)
    slow = replicas[-1]
    _set_delay(cluster, slow, DELAY_MS)
    try:
        time.sleep(0.5)
        echo(
            f"read after write: {count} pairs, eventual vs read-your-writes ({slow} "
            f"replays {DELAY_MS} ms late) ..."
        )
        stale_eventual, eventual_ms = _pairs(cluster, count, "eventual")
        before = cluster.stats().reads.reads_by_node
        stale_token, token_ms = _pairs(cluster, count, "read_your_writes")
        after = cluster.stats().reads.reads_by_node
    finally:
        _set_delay(cluster, slow, 0)
    served = {n: after.get(n, 0) - before.get(n, 0) for n in after}
    total = sum(served.values()) or 1
    on_replicas = sum(v for n, v in served.items() if "replica" in n) / total
    result.metrics.update(
        {
            "read_after_write_pairs": count,
            "stale_eventual": stale_eventual,
            "stale_read_your_writes": stale_token,
            "token_reads_on_replicas_share": on_replicas,
            "read_ms_eventual": eventual_ms,
            "read_ms_read_your_writes": token_ms,
            "replica_delay_ms": DELAY_MS,
        }
    )
    how = f"{count} write-then-read pairs; {slow} replays {DELAY_MS} ms late"
    result.rows += [
        Row("stale reads after a write, eventual", f"{stale_eventual} of {count}", "reads", how),
        Row("stale reads, read-your-writes token", f"{stale_token} of {count}", "reads", how),
        Row("token reads served by replicas", f"{on_replicas:.0%}", "", "router metrics"),
        Row(
            "read latency, eventual | token",
            f"{eventual_ms:.2f} | {token_ms:.2f}",
            "ms",
            "mean per read, same pairs",
        ),
    ]
    if stale_token:
        result.notes.append(f"{stale_token} reads with a token were stale: that is a bug")
    return result

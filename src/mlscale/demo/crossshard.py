"""Chapter 4, sharding: cross-shard queries. A question no shard key answers.

Users and their sessions per country, over the sharding chapter's table, asked
two ways in alternating rounds: the tutorials' loop (each group's primary one
after another, counts and sums added up in Python) and mlscale's fan-out
(``cluster.fetch_all``: every group at once, merged as one PostgreSQL server
would answer). No move is open here, so each row is on one group and the fan-out
sends each group the plain query; during a move it would also keep each group to
the slots it owns. Both answers are checked equal. Then a query whose answer no
merge of per-group rows can make exact (a window function ranking users across
groups) is sent, and the error it is refused with printed: a sharding layer that
answered it would return a silent union of per-group rankings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine.cluster_sync import Cluster
from ..errors import MlscaleError, RoutingError
from .foundation import ChapterResult, Params, Row, compare_rates
from .sharding import TABLE

if TYPE_CHECKING:
    from ..bench.workers import OpFactory
    from ..config import ClusterConfig

__all__ = ["QUERY", "REFUSED", "needs", "run_crossshard", "tutorial_loop"]

QUERY = (
    f"SELECT country, count(*) AS users, sum(sessions_7d) AS sessions "  # noqa: S608
    f"FROM {TABLE} GROUP BY country ORDER BY country"
)
REFUSED = f"SELECT user_id, rank() OVER (ORDER BY ctr DESC) AS ctr_rank FROM {TABLE}"  # noqa: S608

Answer = list[tuple[Any, ...]]


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if len(config.shard_groups) < 2:
        return f"the cross-shard chapter needs 2 shard groups (it has {len(config.shard_groups)})"
    return None


def tutorial_loop(cluster: Cluster) -> Answer:
    """The tutorials' cross-shard query: each group's primary in turn (pooled
    connections, as an SQLAlchemy engine would hold them), counts added up in Python."""
    totals: dict[str, list[int]] = {}
    for group in cluster.config.shard_groups:
        with cluster.connection(cluster.primary_node(group.name)) as conn:
            for country, users, sessions in conn.execute(QUERY).fetchall():
                seen = totals.setdefault(country, [0, 0])
                seen[0] += users
                seen[1] += sessions
    return [(country, *totals[country]) for country in sorted(totals)]


def fanout(cluster: Cluster) -> Answer:
    """The same question through mlscale: every group at once, merged."""
    return [tuple(row) for row in cluster.fetch_all(QUERY, consistency="strong")]


def _op(query: Callable[[Cluster], Answer], cluster: Cluster) -> OpFactory:
    def make(_: int) -> Callable[[], object]:
        return lambda: query(cluster)

    return make


def run_crossshard(cluster: Cluster, params: Params, echo: Callable[[str], None]) -> ChapterResult:
    """Loop vs fan-out on the sharding chapter's table, answers compared; one refusal."""
    groups = [g.name for g in cluster.config.shard_groups]
    if len(groups) < 2:
        raise MlscaleError("the cross-shard chapter needs two shard groups")
    result = ChapterResult()
    echo(f"cross-shard GROUP BY over {len(groups)} groups: the tutorials' loop vs the fan-out ...")
    merged, looped = fanout(cluster), tutorial_loop(cluster)
    equal = merged == looped
    compare_rates(
        result,
        params,
        (
            "crossshard_fanout_over_loop",
            "cross-shard fan-out / sequential loop",
            f"ratio of medians, same run; {len(groups)} groups share this machine's "
            f"{os.cpu_count()} CPUs",
        ),
        {
            "crossshard_fanout": (
                "cross-shard GROUP BY, parallel fan-out",
                _op(fanout, cluster),
            ),
            "crossshard_loop": (
                "cross-shard GROUP BY, sequential loop",
                _op(tutorial_loop, cluster),
            ),
        },
        threads=1,
        unit="queries/s",
    )
    users = sum(row[1] for row in merged)
    result.rows.append(
        Row(
            "fan-out answer equals the loop's",
            "yes" if equal else "NO",
            "",
            f"{len(merged)} countries, {users:,} users: counts and sums compared exactly",
        )
    )

    echo("a query no merge can make exact: a window function across groups ...")
    try:
        refused_rows = cluster.fetch_all(REFUSED, consistency="strong")
    except RoutingError as exc:
        message: str | None = str(exc)
        echo(f"  refused: {message}")
    else:
        message = None
        result.notes.append(
            f"a window function across groups returned {len(refused_rows)} rows instead of "
            "being refused: that is a bug"
        )
    result.rows.append(
        Row(
            "window function across groups refused",
            "yes" if message else "NO",
            "",
            "RoutingError naming the construct (message in the notes)",
        )
    )
    if message:
        result.notes.append(f"refused: {REFUSED!r} -> {message}")
    if not equal:
        result.notes.append(
            f"the fan-out answered {merged!r} where the loop added up {looped!r}: a bug"
        )
    loop_ms = 1000 / result.metrics["crossshard_loop_per_s"]["median"]
    result.notes.append(
        f"cross-shard rates: {len(groups)} groups with no CPU caps on a machine of "
        f"{os.cpu_count()} CPUs, one query at a time; the fan-out runs the groups at once, "
        "so it gains at most the number of groups, and less when the groups share CPUs. "
        f"The loop takes {loop_ms:.2f} ms a query ({loop_ms / len(groups):.2f} ms a group): "
        "where a group's work is that short, the fan-out's fixed costs (planning, handing "
        "the groups to threads, merging) weigh against running them at once; "
        "`mlscale bench scatter` measures the same on groups big enough to be CPU-bound"
    )
    result.metrics.update(
        {
            "crossshard_groups": len(groups),
            "crossshard_answers_equal": equal,
            "crossshard_refused": message is not None,
            "crossshard_refusal": message,
        }
    )
    return result

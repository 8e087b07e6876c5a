"""Chapter 8, serving over HTTP: model metadata the tutorials' way vs mlscale's
registry, then the service (``mlscale serve``) measured from outside.

The tutorials' way (``../shared/reference/000``, "Caching Model Metadata"):
``get_model_config`` reads ``model_config:{id}`` from Redis, else the database, then
``SETEX``es the JSON for 24 hours ("models change infrequently"); nothing
invalidates it. Here its database read is the row mlscale reads (the version at the
model's ``production`` alias, on the primary of the model's group, parameters bound).
mlscale's: :meth:`~mlscale.stores.registry.ModelRegistry.get_production_model` behind
:func:`~mlscale.stores.registry.caching.registry_cache` (L1 in this process, L2 on
the cluster's Redis, an L1 broadcast to other processes), invalidated after every
transition's commit.

On one model made for the run (``demo-serving-<run>``: the registry has no delete,
so its few rows stay):

- lookups/s of each, alternating rounds, warm caches, one thread;
- a promotion (version 2 to ``production``): for a fixed window after its commit,
  both are asked in turn in one thread; how many answers still name version 1, and
  how soon after the commit mlscale's first names 2 (in this process, where the
  transition's own invalidation ran);
- ``mlscale serve`` with 2 worker processes, a child process (a write API key made
  for the run through the library, revoked at the end, never printed), then over
  HTTP (:mod:`.serving_http`): a push then a read of the pushed value, with and
  without the ``Mlscale-Causal-Token`` header; promotions made in this process and
  how long the service's workers (other processes) kept answering the old version;
  "which model is in production?" measured by :mod:`mlscale.bench.http_lookup`;
  10-entity online feature requests in a closed loop; one scrape of ``/metrics``,
  whose counts of the model's lookups and the view's reads are compared with the
  requests the chapter sent.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis

from ..bench.compare import ab_rounds, spread
from ..bench.http_lookup import WARMUP_REQUESTS, LookupRun, measure_lookups
from ..bench.workers import Round, run_threads
from ..core.registry import sql as registry_sql
from ..engine.cluster_sync import Cluster
from ..engine.connect import redis_password
from ..engine.hooks import Committed
from ..errors import MlscaleError
from ..stores.features import FeatureStore
from ..stores.registry import PRODUCTION, ModelRegistry
from ..stores.registry.caching import registry_cache
from .foundation import ChapterResult, Echo, Params, Row
from .serving_http import (
    VIEW,
    WORKERS,
    Sent,
    TokenReads,
    feature_requests,
    load_view,
    push_then_read,
    running_service,
    scrape_counts,
    watch_answers,
)

if TYPE_CHECKING:
    from ..config import ClusterConfig

__all__ = ["TutorialModelCache", "committed_at", "drop_serving", "needs", "run_serving"]

TUTORIAL_TTL_S: Final = 86400  # the tutorials' "24 hours"
ACTOR: Final = "mlscale-demo"
POLLERS: Final = 4  # connections asking the service which model is in production
# The tutorials' database read: the version at the model's production alias.
TUTORIAL_READ: Final = (
    "SELECT v.version, v.artifact_uri, v.metadata FROM mlscale_model_aliases a "
    "JOIN mlscale_model_versions v ON v.model = a.model AND v.version = a.version "
    "WHERE a.model = %s AND a.alias = 'production'"
)


def needs(config: ClusterConfig) -> str | None:
    """What the chapter needs of the cluster that ``config`` lacks, if anything."""
    if config.redis is None:
        return "the serving chapter needs the cluster's Redis (the registry's cache)"
    if not config.shard_groups:
        return "the serving chapter needs shard groups"
    if config.source is None:
        return "the serving chapter needs the cluster's config file (for mlscale serve)"
    return None


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much the chapter does (quick runs are test-sized): counts and seconds."""

    entities: int  # of the chapter's feature view
    lookup_round_s: float  # each side's round in the in-process comparison
    local_promotions: int  # promotions asked of both caches in this process
    window_s: float  # after the last of them, how long both caches are asked
    pairs: int  # HTTP push-then-read pairs, each way
    promotions: int  # promotions watched over HTTP
    promotion_window_s: float  # how long the service is polled after each
    http_s: float  # each HTTP load measurement

    @classmethod
    def of(cls, params: Params) -> Sizes:
        """The sizes of a quick run (``params`` of ``quick=True``) or a full one."""
        if params.users < 20_000:
            return cls(2_000, 0.2, 5, 0.5, 50, 3, 0.3, 1.0)
        return cls(20_000, 0.8, 10, 2.0, 200, 10, 0.5, 3.0)


def drop_serving(cluster: Cluster) -> None:
    """Remove the chapter's feature view (every version). Its models stay: the registry
    has no delete (a few small rows per run, named for it)."""
    store = FeatureStore(cluster)
    for v in store.views():
        if v.name == VIEW:
            store.drop(v.name, v.version)


# -- model metadata, in this process ---------------------------------------------------


class TutorialModelCache:
    """The tutorials' ``get_model_config``: Redis ``GET``, else the database, then
    ``SETEX`` for 24 hours. ``prefix`` keeps each run's keys apart."""

    def __init__(self, client: redis.Redis, cluster: Cluster, prefix: str) -> None:
        self.client = client
        self.cluster = cluster
        self.prefix = prefix

    def get_model_config(self, name: str) -> dict[str, Any]:
        """Model ``name``'s production config: version, artifact URI, metadata."""
        key = f"{self.prefix}model_config:{name}"
        cached = self.client.get(key)
        if cached:
            value: dict[str, Any] = json.loads(cached)
            return value
        group = self.cluster.locate(registry_sql.FAMILY, name)
        with self.cluster.connection(self.cluster.primary_node(group)) as conn:
            row = conn.execute(TUTORIAL_READ, (name,)).fetchone()
        if row is None:
            raise MlscaleError(f"model {name!r} has no production version")
        config = {"version": row[0], "artifact_uri": row[1], "metadata": row[2]}
        self.client.setex(key, TUTORIAL_TTL_S, json.dumps(config))
        return config

    def drop(self) -> None:
        """Delete this cache's keys (else they would live out their 24 hours)."""
        for key in list(self.client.scan_iter(match=f"{self.prefix}*", count=1000)):
            self.client.delete(key)


@dataclass(frozen=True, slots=True)
class Promotion:
    """Promotions made in this process, each new version asked of both caches in one
    thread right after its commit; the last one asked for ``window_s``.

    ``first_new_ms``: per promotion, commit to mlscale's first answer naming the new
    version (ms); ``lookups``: asks of each side in the window; ``tutorial_old``,
    ``mlscale_old``: of those, answers naming an older version."""

    versions: tuple[int, ...]
    window_s: float
    lookups: int
    tutorial_old: int
    mlscale_old: int
    first_new_ms: tuple[float, ...]


def committed_at(cluster: Cluster, write: Callable[[], object]) -> float:
    """Run ``write`` (one transaction of ``cluster``'s) and return when its commit
    returned, ``perf_counter()`` seconds, noted by a commit hook before anything the
    write does after its commit (a cache's invalidation)."""
    at: list[float] = []

    def heard(event: Committed) -> None:
        at.append(time.perf_counter())

    cluster.on_commit(heard)
    try:
        before = time.perf_counter()
        write()
    finally:
        cluster.remove_commit_hook(heard)
    return at[0] if at else before


def _promote(registry: ModelRegistry, name: str, version: int, reason: str) -> float:
    """Move ``name``'s production alias to ``version``; when the commit returned."""

    def write() -> object:
        return registry.transition(name, version, PRODUCTION, actor=ACTOR, reason=reason)

    return committed_at(registry.cluster, write)


def _watch_promotions(
    registry: ModelRegistry,
    tutorial: TutorialModelCache,
    name: str,
    versions: Sequence[int],
    window_s: float,
) -> Promotion:
    """Promote each of ``versions`` of ``name`` in turn to production, asking both
    caches right after each commit, and for ``window_s`` after the last one."""
    clock = time.perf_counter
    first_new: list[float] = []
    lookups = tutorial_old = mlscale_old = 0
    for i, version in enumerate(versions):
        committed = _promote(registry, name, version, "demo: a new model")
        last = i == len(versions) - 1
        seen_new = False
        while not seen_new or (last and clock() - committed < window_s):
            answer = registry.get_production_model(name).version
            if not seen_new and answer == version:
                first_new.append((clock() - committed) * 1e3)
                seen_new = True
            mlscale_old += answer != version
            if last:
                lookups += 1
                tutorial_old += tutorial.get_model_config(name)["version"] != version
            if clock() - committed > 10 * window_s:
                raise MlscaleError(
                    f"mlscale's registry never answered version {version} of {name!r}"
                )
    return Promotion(
        tuple(versions), window_s, lookups, tutorial_old, mlscale_old, tuple(first_new)
    )


def _lookup_rates(
    params: Params, sizes: Sizes, tutorial: TutorialModelCache, registry: ModelRegistry, name: str
) -> dict[str, list[Round]]:
    """Both sides' lookups/s: alternating rounds of one thread, warm caches."""

    def tutorial_op(i: int) -> Callable[[], object]:
        return lambda: tutorial.get_model_config(name)

    def mlscale_op(i: int) -> Callable[[], object]:
        return lambda: registry.get_production_model(name)

    return ab_rounds(
        {
            "tutorial": lambda: run_threads(tutorial_op, 1, sizes.lookup_round_s),
            "mlscale": lambda: run_threads(mlscale_op, 1, sizes.lookup_round_s),
        },
        rounds=params.rounds,
    )


def _metadata_rows(
    result: ChapterResult,
    params: Params,
    sizes: Sizes,
    rounds: dict[str, list[Round]],
    p: Promotion,
) -> None:
    labels = {
        "tutorial": "model lookup, tutorials' get_model_config",
        "mlscale": "model lookup, mlscale get_production_model",
    }
    how = {
        "tutorial": "Redis GET + json.loads each (SETEX 24 h on a miss)",
        "mlscale": "L1 in this process (L2 on Redis, broadcast), invalidated on commit",
    }
    medians = {}
    for side, rs in rounds.items():
        rates = spread([r.rate for r in rs])
        medians[side] = rates.median
        result.metrics[f"serving_{side}_lookups_per_s"] = rates.as_dict()
        result.rounds[f"serving_{side}_lookups"] = [r.as_dict() for r in rs]
        result.rows.append(
            Row(
                labels[side],
                f"{rates.median:,.0f} ({rates.low:,.0f}..{rates.high:,.0f})",
                "lookups/s",
                f"{how[side]}; median (min..max) of {params.rounds} alternating rounds of "
                f"{sizes.lookup_round_s:g} s, 1 thread, warm",
            )
        )
    ratio = medians["mlscale"] / medians["tutorial"]
    result.metrics["serving_lookups_mlscale_over_tutorial"] = ratio
    lag = spread(list(p.first_new_ms))
    last = p.versions[-1]
    result.metrics.update(
        {
            "serving_promotion_window_s": p.window_s,
            "serving_promotion_lookups": p.lookups,
            "serving_promotion_tutorial_old": p.tutorial_old,
            "serving_promotion_mlscale_old": p.mlscale_old,
            "serving_promotion_mlscale_first_new_ms": lag.as_dict(with_values=True),
        }
    )
    result.rows += [
        Row("  mlscale / tutorials' lookups", f"{ratio:,.1f}", "x", "ratio of medians"),
        Row(
            "after a promotion, tutorials' cache answers",
            f"old model {p.tutorial_old:,} of {p.lookups:,}",
            "lookups",
            f"asked for {p.window_s:g} s after the commit of v{last} to production, "
            f"{len(p.versions)} promotions after the key was set: it answers v1 until its 24 h "
            "TTL runs out (nothing invalidates the key)",
        ),
        Row(
            "after a promotion, mlscale answers the new one",
            f"{lag.median:.2f} (max {lag.high:.2f})",
            "ms",
            f"commit to its first answer naming the new version, median of {lag.n} "
            "promotions, in the promoting process (its transition invalidated L1 and L2); "
            f"old answers after a commit: {p.mlscale_old}",
        ),
    ]
    result.notes.append(
        "serving: the tutorials' lookup is a Redis round trip, mlscale's a hit in this "
        "process's L1: its speed is the L1's, and it is safe because every transition "
        "invalidates L1 and L2 after its commit and broadcasts that to other processes' L1"
    )
    if p.tutorial_old < p.lookups:
        result.notes.append(
            f"serving: the tutorials' cache answered the new model {p.lookups - p.tutorial_old} "
            "times in the window: its key had expired or was evicted"
        )
    if p.mlscale_old:
        result.notes.append(
            f"serving: mlscale's registry answered an old model {p.mlscale_old} times after "
            "a promotion's commit, in the process that made it: a bug"
        )


# -- over HTTP ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServicePromotions:
    """Promotions made in this process while the service was polled: per promotion,
    commit to the last answer naming an older version among requests sent after the
    commit (0: none did), in ms; such old answers, and answers, in all."""

    stale_ms: tuple[float, ...]
    old_answers: int
    answers: int


def _service_promotions(
    registry: ModelRegistry, url: str, key: str, name: str, sizes: Sizes, sent: Sent
) -> ServicePromotions:
    """Promote the next :attr:`Sizes.promotions` versions of ``name`` (after those of the
    local promotions) in this process while :data:`POLLERS` connections ask the service
    (its other processes) which version is in production."""
    path = f"/v1/models/{name}/aliases/{PRODUCTION}"
    stale_ms: list[float] = []
    old_answers = answers = 0
    first = 2 + sizes.local_promotions
    for version in range(first, first + sizes.promotions):

        def promote(version: int = version) -> float:
            return _promote(registry, name, version, "demo: asked over HTTP")

        committed, seen = watch_answers(
            url, key, path, promote, pollers=POLLERS, window_s=sizes.promotion_window_s
        )
        sent.add(lookups=len(seen) + POLLERS)  # and each poller's first, before the clock
        after = [a for a in seen if a.sent > committed]
        old = [a for a in after if a.version < version]
        if not any(a.version == version for a in after):
            raise MlscaleError(f"the service never answered version {version} of {name!r}")
        stale_ms.append(max(((a.answered - committed) * 1e3 for a in old), default=0.0))
        old_answers += len(old)
        answers += len(after)
    return ServicePromotions(tuple(stale_ms), old_answers, answers)


def _http_rows(
    result: ChapterResult,
    params: Params,
    sizes: Sizes,
    start_s: float,
    reads: TokenReads,
    promotions: ServicePromotions,
    lookups: LookupRun,
    features: Round,
    mismatches: int,
) -> None:
    stale = spread(list(promotions.stale_ms))
    feat = features.latency_ms((50, 99))
    result.metrics.update(
        {
            "serving_http_workers": WORKERS,
            "serving_http_start_s": start_s,
            "serving_http_pairs": reads.pairs,
            "serving_http_stale_with_token": reads.stale_with_token,
            "serving_http_stale_without_token": reads.stale_without_token,
            "serving_http_push_ms": reads.push_ms,
            "serving_http_read_ms": reads.read_ms,
            "serving_http_promotions": len(promotions.stale_ms),
            "serving_http_promotion_stale_ms": stale.as_dict(with_values=True),
            "serving_http_promotion_old_answers": promotions.old_answers,
            "serving_http_promotion_answers": promotions.answers,
            "serving_http_alias": lookups.to_dict(),
            "serving_http_alias_lookups_per_s": lookups.lookups_per_s,
            "serving_http_alias_p99_ms": lookups.to_dict()["p99_ms"],
            "serving_http_features_requests_per_s": features.rate,
            "serving_http_features_p50_ms": feat.get("p50"),
            "serving_http_features_p99_ms": feat.get("p99"),
            "serving_http_features_client_cpu_per_s": features.cpu_per_s,
            "serving_http_features_errors": features.errors,
            "serving_http_features_mismatches": mismatches,
        }
    )
    result.rounds["serving_http_features"] = [features.as_dict()]
    limited = " (the client set the pace)" if lookups.client_limited else ""
    result.rows += [
        Row(f"mlscale serve start, {WORKERS} workers", f"{start_s:.1f}", "s",
            "child process, until /readyz answers 200"),
        Row("HTTP push, then read with Mlscale-Causal-Token",
            f"{reads.stale_with_token} of {reads.pairs}", "stale reads",
            f"POST /v1/features/{VIEW}/push of one row, then POST /v1/features/online with "
            f"its token; push {reads.push_ms:.1f} ms, read {reads.read_ms:.1f} ms (medians)"),
        Row("HTTP push, then read without the token",
            f"{reads.stale_without_token} of {reads.pairs}", "stale reads",
            "same, the read under the service's default consistency (replicas); 0 means "
            "the replicas had replayed each push before its read arrived"),
        Row("promotion, last old answer from the service",
            f"{stale.median:.1f} (max {stale.high:.1f})", "ms",
            f"{len(promotions.stale_ms)} promotions in this process; {POLLERS} connections "
            f"asking the {WORKERS} workers (other processes): commit to the last "
            f"answer naming the old version (0: none); {promotions.old_answers} old of "
            f"{promotions.answers} answers"),
        Row("which model is in production?, over HTTP", f"{lookups.lookups_per_s:,.0f}",
            "lookups/s", f"GET /v1/models/<name>/aliases/production, {lookups.clients} "
            f"keep-alive clients, {sizes.http_s:g} s (bench/http_lookup.py); p50 "
            f"{lookups.p50_ms:.2f} ms, p99 {lookups.p99_ms:.2f} ms; client CPU "
            f"{lookups.client_cpu_cores:.2f} cores{limited}"),
        Row("10-entity online feature request, over HTTP", f"{features.rate:,.0f}",
            "requests/s", f"POST /v1/features/online, {params.threads} keep-alive clients in a "
            f"closed loop, {sizes.http_s:g} s; p50 {feat.get('p50', 0):.2f} ms, p99 "
            f"{feat.get('p99', 0):.2f} ms; client CPU {features.cpu_per_s:.2f} cores; "
            f"{mismatches} answers differed from the loaded values"),
    ]  # fmt: skip
    result.notes.append(
        "serving: an old answer from the service after a promotion counts only if its request "
        "was sent after the commit; the time includes the promoting process's invalidation "
        "(Redis, then the broadcast) and the workers hearing it; uvicorn gives each "
        f"connection to one worker, so {POLLERS} connections ask both in all likelihood"
    )
    if lookups.errors or features.errors:
        result.notes.append(
            f"serving: {lookups.errors} alias lookups and {features.errors} feature requests "
            f"failed over HTTP (e.g. {list(lookups.error_examples)[:1]})"
        )
    if reads.stale_with_token:
        result.notes.append(
            f"serving: {reads.stale_with_token} reads with the push's token missed the push: a bug"
        )


def _metrics_rows(
    result: ChapterResult, scraped: dict[tuple[str, str], float], name: str, sent: Sent
) -> None:
    lookups = scraped.get(("mlscale_registry_lookup_seconds", name))
    reads = scraped.get(("mlscale_feature_read_seconds", VIEW))
    result.metrics.update(
        {
            "serving_metrics_registry_lookups": lookups,
            "serving_metrics_registry_lookups_sent": sent.alias_lookups,
            "serving_metrics_feature_reads": reads,
            "serving_metrics_feature_reads_sent": sent.feature_reads,
        }
    )

    def said(v: float | None) -> str:
        return "missing" if v is None else f"{v:,.0f}"

    result.rows += [
        Row("/metrics: lookups of the model", said(lookups), "lookups",
            f"mlscale_registry_lookup_seconds_count{{model=<name>}}, both workers summed; "
            f"this chapter sent {sent.alias_lookups:,} GET .../aliases/production"),
        Row("/metrics: online reads of the view", said(reads), "reads",
            f"mlscale_feature_read_seconds_count{{view=\"{VIEW}\"}}; this chapter sent "
            f"{sent.feature_reads:,} POST /v1/features/online"),
    ]  # fmt: skip
    if lookups != sent.alias_lookups or reads != sent.feature_reads:
        result.notes.append(
            f"serving: /metrics counted {said(lookups)} lookups and {said(reads)} reads where "
            f"the chapter sent {sent.alias_lookups:,} and {sent.feature_reads:,}"
        )


# -- the chapter --------------------------------------------------------------------------


def run_serving(cluster: Cluster, params: Params, echo: Echo) -> ChapterResult:
    """Model metadata the tutorials' way vs the registry's, then the service over HTTP
    (see the module docstring)."""
    rc = cluster.config.redis
    if rc is None:
        raise MlscaleError("the serving chapter needs the cluster's Redis")
    result = ChapterResult()
    sizes = Sizes.of(params)
    run = uuid.uuid4().hex[:8]
    name = f"demo-serving-{run}"
    drop_serving(cluster)  # what a run with --keep left
    with ExitStack() as stack:
        client = redis.Redis(
            host=rc.host, port=rc.port, db=rc.db, password=redis_password(cluster.config)
        )
        stack.callback(client.close)
        tutorial = TutorialModelCache(client, cluster, f"demo-serving:{run}:")
        stack.callback(tutorial.drop)
        cache = stack.enter_context(registry_cache(cluster.config))
        registry = ModelRegistry(cluster, cache=cache)
        registry.create_model(name, description="the demo's serving chapter", actor=ACTOR)
        newest = 1 + sizes.local_promotions + sizes.promotions
        for version in range(1, newest + 1):
            registry.register_version(
                name,
                artifact_uri=f"mem://{name}/{version}",
                metadata={"threshold": 0.5},
                actor=ACTOR,
            )
        registry.transition(name, 1, PRODUCTION, actor=ACTOR, reason="demo: first model")

        echo("serving: model lookups, the tutorials' get_model_config vs the registry ...")
        rounds = _lookup_rates(params, sizes, tutorial, registry, name)
        echo("serving: promotions, asked of both caches ...")
        promotion = _watch_promotions(
            registry, tutorial, name, range(2, 2 + sizes.local_promotions), sizes.window_s
        )
        _metadata_rows(result, params, sizes, rounds, promotion)

        echo(
            f"serving: a view of {sizes.entities:,} entities; mlscale serve, {WORKERS} workers ..."
        )
        values = load_view(cluster, sizes.entities, params.seed)
        service, key, start_s = stack.enter_context(
            running_service(cluster.config, f"mlscale demo {run}")
        )
        sent = Sent()
        echo("serving: push then read over HTTP, with and without the causal token ...")
        reads = push_then_read(service.url, key, sizes.pairs, sizes.entities, sent)
        echo("serving: promotions, asked of the service's workers ...")
        promotions = _service_promotions(registry, service.url, key, name, sizes, sent)
        echo("serving: which model is in production?, then 10-entity feature requests ...")
        lookups = measure_lookups(
            f"{service.url}/v1/models/{name}/aliases/{PRODUCTION}",
            headers={"Authorization": f"Bearer {key}"},
            clients=params.threads,
            duration_s=sizes.http_s,
            check=lambda body: bool(json.loads(body)["version"] == newest),
        )
        sent.add(lookups=lookups.lookups + lookups.errors + lookups.clients * WARMUP_REQUESTS)
        features, mismatches = feature_requests(
            service.url,
            key,
            values,
            clients=params.threads,
            duration_s=sizes.http_s,
            seed=params.seed,
            sent=sent,
        )
        _http_rows(result, params, sizes, start_s, reads, promotions, lookups, features, mismatches)
        _metrics_rows(result, scrape_counts(service.url), name, sent)
    result.notes.append(
        f"serving: model {name} stays in the registry (it has no delete); the service was "
        "stopped and its API key revoked"
    )
    return result

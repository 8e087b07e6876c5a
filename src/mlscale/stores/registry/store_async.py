"""The model registry's façade: models, versions, aliases and their history on sharded
PostgreSQL, with alias lookups served from a cache (async source).

Every row of a model lives on the shard group its name hashes to (key family
``models``): a write is one transaction on that group's primary, a read one
statement on one of its replicas under the call's ``token=`` / ``consistency=``.

- **Versions** are numbered 1, 2, ... per model by an ``UPDATE ... RETURNING`` of the
  model's counter in the registration's transaction: concurrent registrations queue
  on the model's row, and a rolled-back one gives its number back (no gap, no
  duplicate).
- **Transitions** move an alias (``staging``, ``production``, ``archived`` or any
  valid name) to a version, optimistically: ``expected_revision=r`` moves it only if
  it is still at revision ``r``, decided under the alias row's lock in the same
  transaction as the write (see :mod:`mlscale.core.registry.rules`); the loser gets
  :class:`~mlscale.errors.RegistryConflict` naming the state that won. Each change
  appends to the alias's history (who, when, why, from, to, revision).
- **Lookups by alias** (``get_production_model``, ``get_by_alias``) go through the
  cache when one is given (L1, then L2, then the database under a lease); every
  transition invalidates the model's alias keys after its commit with the commit's
  causal token, so the refill reads at least that fresh, and the cache's broadcast
  tells other processes' L1. A missing version is cached as absence for the
  cache's negative TTL and dropped by the next transition of that alias. Calls that
  pass ``token=`` or ``consistency=`` read the database, never the cache.
- **Lineage**: a version names the feature views it was trained on; with
  ``check_lineage=True`` (the default) each must be registered (and not dropped) in
  the feature store's catalog, else nothing is written.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

from psycopg.types.json import Jsonb

from ...cache.tiered_async import AsyncCache
from ...core.causal import CausalToken, Token
from ...core.registry import names, sql
from ...core.registry.results import (
    AliasState,
    Model,
    ModelVersion,
    Transition,
    TransitionResult,
    frozen_map,
)
from ...core.registry.rules import Step, alias_cache_key, plan_transition
from ...engine.cluster_async import AsyncCluster
from ...engine.scopes_async import AsyncTransaction
from ...errors import ModelExists, ModelNotFound, RegistryConflict, RegistryError
from ...metrics.latency import observe_registry_lookup
from ..shared_async import catalog
from .tables_async import AsyncRegistryTables

__all__ = ["CACHE_TTL_S", "AsyncModelRegistry"]

CACHE_TTL_S = 300.0
_MEMO = 4096  # ModelVersions kept per cached value (see _built)


class AsyncModelRegistry:
    """The model registry of a cluster, with an optional cache in front of alias
    lookups (see the module docstring).

    ``cache``: an :class:`~mlscale.cache.AsyncCache` (for processes to agree within
    milliseconds, give it an L1 broadcast); ``cache_ttl_s``: how long a cached lookup
    lives at most (seconds; changes invalidate it before that).
    """

    def __init__(
        self,
        cluster: AsyncCluster,
        *,
        cache: AsyncCache | None = None,
        cache_ttl_s: float = CACHE_TTL_S,
    ) -> None:
        self._cluster = cluster
        self._tables = AsyncRegistryTables(cluster)
        self._cache = cache
        self._cache_ttl_s = cache_ttl_s
        # The ModelVersion built from a cached dict, by key: an L1 hit returns the same
        # dict object, so the frozen result is reused rather than built per call.
        self._built: dict[tuple[str, str, str], tuple[object, ModelVersion]] = {}

    @property
    def cluster(self) -> AsyncCluster:
        """The cluster the registry lives on."""
        return self._cluster

    @property
    def cache(self) -> AsyncCache | None:
        """The cache in front of alias lookups, if any."""
        return self._cache

    # -- models -------------------------------------------------------------------------

    async def create_model(
        self,
        name: str,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        actor: str,
    ) -> Model:
        """Register model ``name``. Creating it again with the same description and tags
        returns it unchanged; with others, a RegistryError (nothing changed)."""
        name = names.check_model_name(name)
        description = names.check_description(description)
        clean_tags = names.check_tags(tags)
        actor = names.check_actor(actor)
        await self._tables.ensure()
        group = await self._tables.group_of(name)
        async with self._cluster.transaction(group=group, as_written=True) as tx:
            await tx.execute(
                "INSERT INTO mlscale_models (model, description, tags, created_by) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (model) DO NOTHING",
                (name, description, Jsonb(clean_tags), actor),
            )
            row = await tx.fetch_one(sql.MODEL, (name,), as_dict=True)
        model = _model(row, _text(tx.token))
        if model.description != description or dict(model.tags) != clean_tags:
            raise ModelExists(
                f"model {name!r} exists with another description or tags "
                f"(created by {model.created_by} at {model.created_at.isoformat()})"
            )
        return model

    async def get_model(
        self, name: str, *, token: Token = None, consistency: str | None = None
    ) -> Model:
        """Model ``name`` with its aliases; ModelNotFound if there is none."""
        name = names.check_model_name(name)
        group = await self._tables.group_of(name)
        row = await self._cluster.as_written(group).fetch_one(
            sql.MODEL, (name,), as_dict=True, token=token, consistency=consistency
        )
        if row is None:
            raise ModelNotFound(f"no model {name!r}")
        return _model(row)

    async def list_models(
        self, *, token: Token = None, consistency: str | None = None
    ) -> list[Model]:
        """Every model, by name (one statement per shard group)."""
        if not await self._tables.exist():
            return []
        models: list[Model] = []
        for group in self._tables.groups:
            rows = await self._cluster.as_written(group).fetch_all(
                sql.LIST_MODELS, as_dict=True, token=token, consistency=consistency
            )
            models += [_model(r) for r in rows]
        return sorted(models, key=lambda m: m.name)

    # -- versions -----------------------------------------------------------------------

    async def register_version(
        self,
        name: str,
        *,
        artifact_uri: str,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        feature_views: Sequence[str] = (),
        run_id: str | None = None,
        actor: str,
        check_lineage: bool = True,
    ) -> ModelVersion:
        """Register the next version of model ``name`` (1, 2, ...; no gap or duplicate
        under concurrent registrations). ``feature_views``: references ``view`` or
        ``view:version`` it was trained on; ``check_lineage``: refuse references to a
        feature view the feature store's catalog does not hold (or has dropped).
        Everything is checked before anything is written."""
        name = names.check_model_name(name)
        uri = names.check_artifact_uri(artifact_uri)
        meta = names.check_metadata(metadata)
        numbers = names.check_metrics(metrics)
        refs = names.check_feature_views(feature_views)
        run = names.check_run_id(run_id)
        actor = names.check_actor(actor)
        if check_lineage and refs:
            await self._check_lineage(refs)
        group = await self._tables.group_of(name)
        async with self._cluster.transaction(group=group, as_written=True) as tx:
            version = await tx.fetch_value(sql.NEXT_VERSION, (name,))
            if version is None:
                raise ModelNotFound(f"no model {name!r}: create_model() it first")
            row = await tx.fetch_one(
                "INSERT INTO mlscale_model_versions (model, version, artifact_uri, run_id, "
                "metadata, metrics, feature_views, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING status, created_at",
                (name, version, uri, run, Jsonb(meta), Jsonb(numbers), list(refs), actor),
            )
        if row is None:
            raise RegistryError(f"model {name!r}: version {version} was not stored")
        return ModelVersion(
            name=name,
            version=int(version),
            artifact_uri=uri,
            metadata=frozen_map(meta),
            metrics=frozen_map(numbers),
            feature_views=refs,
            run_id=run,
            status=row[0],
            created_at=row[1],
            created_by=actor,
            aliases=(),
            token=_text(tx.token),
        )

    async def _check_lineage(self, refs: Iterable[str]) -> None:
        wanted = [names.parse_view_ref(r) for r in refs]
        async with catalog(self._cluster, "feature views") as conn:
            cur = await conn.execute(
                "SELECT name, version FROM mlscale_catalog.feature_views "
                "WHERE dropped_at IS NULL AND name = ANY(%s)",
                ([n for n, _ in wanted],),
            )
            have = {(r[0], int(r[1])) for r in await cur.fetchall()}
        for view, version in wanted:
            versions = sorted(v for n, v in have if n == view)
            if not versions:
                raise RegistryError(
                    f"lineage: no feature view {view!r} is registered in the feature store "
                    "(pass check_lineage=False to record it anyway)"
                )
            if version is not None and version not in versions:
                raise RegistryError(
                    f"lineage: feature view {view!r} has no version {version} (registered: "
                    f"{', '.join(map(str, versions))})"
                )

    async def get_version(
        self, name: str, version: int, *, token: Token = None, consistency: str | None = None
    ) -> ModelVersion:
        """Version ``version`` of model ``name``; ModelNotFound if there is none."""
        name = names.check_model_name(name)
        version = names.check_version(version)
        group = await self._tables.group_of(name)
        row = await self._cluster.as_written(group).fetch_one(
            sql.VERSION, (name, version), as_dict=True, token=token, consistency=consistency
        )
        if row is None:
            raise ModelNotFound(f"model {name!r} has no version {version}")
        return ModelVersion.from_row(row)

    async def versions(
        self, name: str, *, token: Token = None, consistency: str | None = None
    ) -> list[ModelVersion]:
        """Every version of model ``name``, oldest first; ModelNotFound if no such model."""
        name = names.check_model_name(name)
        group = await self._tables.group_of(name)
        scope = self._cluster.as_written(group)
        rows = await scope.fetch_all(
            sql.VERSIONS_OF, (name,), as_dict=True, token=token, consistency=consistency
        )
        if not rows:
            await self.get_model(name, token=token, consistency=consistency)  # or ModelNotFound
        return [ModelVersion.from_row(r) for r in rows]

    # -- aliases ------------------------------------------------------------------------

    async def transition(
        self,
        name: str,
        version: int | None,
        alias: str,
        *,
        expected_revision: int | None = None,
        actor: str,
        reason: str = "",
    ) -> TransitionResult:
        """Point ``alias`` of model ``name`` at ``version`` (None: clear the alias).

        ``expected_revision``: move it only if it is still at that revision (0: never
        set), else :class:`RegistryConflict` naming its current version and revision
        (None: move it whatever its revision). Moving it where it already points
        writes nothing (``changed`` False). The change, its history entry and the
        revision bump commit together; the cache's keys of the model's aliases are
        invalidated after the commit with its causal token (``result.token``)."""
        name = names.check_model_name(name)
        target = None if version is None else names.check_version(version)
        alias = names.check_alias(alias)
        expected = names.check_expected_revision(expected_revision)
        actor = names.check_actor(actor)
        reason = names.check_reason(reason)
        group = await self._tables.group_of(name)
        touched: list[str] = [alias]
        async with self._cluster.transaction(group=group, as_written=True) as tx:
            await self._check_target(tx, name, target)
            for _ in range(3):
                row = await tx.fetch_one(sql.LOCK_ALIAS, (name, alias))
                state = None if row is None else (row[0], int(row[1]))
                plan = plan_transition(name, alias, state, target, expected)
                if plan.step is Step.CONFLICT:
                    raise RegistryConflict(
                        plan.message,
                        current_version=plan.previous_version,
                        current_revision=plan.revision,
                        expected_revision=expected if expected is not None else -1,
                    )
                if plan.step is Step.NOTHING:
                    break
                if plan.step is Step.INSERT:
                    won = await tx.fetch_one(
                        "INSERT INTO mlscale_model_aliases (model, alias, version, revision, "
                        "updated_by) VALUES (%s, %s, %s, 1, %s) "
                        "ON CONFLICT (model, alias) DO NOTHING RETURNING revision",
                        (name, alias, target, actor),
                    )
                    if won is None:
                        continue  # another transaction made the first row: read it, decide again
                else:
                    moved = await tx.execute(
                        "UPDATE mlscale_model_aliases SET version = %s, revision = revision + 1, "
                        "updated_at = now(), updated_by = %s "
                        "WHERE model = %s AND alias = %s AND revision = %s",
                        (target, actor, name, alias, plan.revision - 1),
                    )
                    if moved != 1:  # cannot happen under the row lock; refuse rather than guess
                        raise RegistryError(f"model {name!r}: alias {alias!r} moved under its lock")
                await tx.execute(
                    "INSERT INTO mlscale_model_transitions (model, alias, revision, "
                    "from_version, to_version, actor, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (name, alias, plan.revision, plan.previous_version, target, actor, reason),
                )
                # Every alias of the model: each cached lookup carries the version's aliases.
                touched += [
                    r[0]
                    for r in await tx.fetch_all(
                        "SELECT alias FROM mlscale_model_aliases WHERE model = %s", (name,)
                    )
                ]
                break
            else:
                raise RegistryError(
                    f"model {name!r}: alias {alias!r} kept changing; try the transition again"
                )
        changed = plan.step is not Step.NOTHING
        token = _text(tx.token) if changed else ""
        if changed and self._cache is not None:
            keys = [alias_cache_key(name, a) for a in dict.fromkeys(touched)]
            await self._cache.invalidate(keys, token or None)
        return TransitionResult(
            name, alias, target, plan.previous_version, plan.revision, changed, token
        )

    async def _check_target(self, tx: AsyncTransaction, name: str, target: int | None) -> None:
        """ModelNotFound unless model ``name`` (and its version ``target``) exist."""
        row = await tx.fetch_one(
            "SELECT m.last_version, EXISTS (SELECT 1 FROM mlscale_model_versions v "
            "WHERE v.model = m.model AND v.version = %s) FROM mlscale_models m WHERE m.model = %s",
            (target, name),
        )
        if row is None:
            raise ModelNotFound(f"no model {name!r}")
        if target is not None and not row[1]:
            raise ModelNotFound(
                f"model {name!r} has no version {target} (its versions: 1 .. {row[0]})"
                if row[0]
                else f"model {name!r} has no version {target} (it has no versions yet)"
            )

    async def alias_state(
        self, name: str, alias: str, *, token: Token = None, consistency: str | None = None
    ) -> AliasState:
        """Where ``alias`` of model ``name`` points, and its revision (0: never set);
        ModelNotFound if there is no such model."""
        name = names.check_model_name(name)
        alias = names.check_alias(alias)
        group = await self._tables.group_of(name)
        row = await self._cluster.as_written(group).fetch_one(
            sql.ALIAS_STATE, (name, alias), token=token, consistency=consistency
        )
        if row is None:
            await self.get_model(name, token=token, consistency=consistency)  # or ModelNotFound
            return AliasState(name, alias, None, 0, None, None)
        return AliasState(name, alias, row[0], int(row[1]), row[2], row[3])

    async def get_production_model(
        self, name: str, *, token: Token = None, consistency: str | None = None
    ) -> ModelVersion:
        """The version at alias ``production`` of model ``name`` (see :meth:`get_by_alias`)."""
        return await self.get_by_alias(name, names.PRODUCTION, token=token, consistency=consistency)

    async def get_by_alias(
        self, name: str, alias: str, *, token: Token = None, consistency: str | None = None
    ) -> ModelVersion:
        """The version at ``alias`` of model ``name``; ModelNotFound if the alias is unset
        or there is no such model. Served from the cache when the registry has one and
        neither ``token`` nor ``consistency`` is given (they read the database)."""
        started = time.perf_counter()
        found = await self._by_alias(name, alias, token, consistency)
        observe_registry_lookup(found.name, time.perf_counter() - started)
        return found

    async def _by_alias(
        self, name: str, alias: str, token: Token, consistency: str | None
    ) -> ModelVersion:
        name = names.check_model_name(name)
        alias = names.check_alias(alias)
        cache = self._cache
        if cache is None or token is not None or consistency is not None:
            row = await self._load_alias(name, alias, token, consistency)
            if row is None:
                await self._explain_missing(name, alias, token, consistency)
            return ModelVersion.from_row(row)
        key = alias_cache_key(name, alias)

        async def load(token: str | None = None) -> dict[str, Any] | None:
            return await self._load_alias(name, alias, token, None)

        value = await cache.get(key, load, ttl=self._cache_ttl_s)
        if value is None:
            raise ModelNotFound(
                f"model {name!r} has no version at alias {alias!r} (or there is no model {name!r})"
            )
        built = self._built.get(key)
        if built is not None and built[0] is value:
            return built[1]
        result = ModelVersion.from_row(value)
        if len(self._built) >= _MEMO:
            self._built.clear()
        self._built[key] = (value, result)
        return result

    async def _load_alias(
        self, name: str, alias: str, token: Token, consistency: str | None
    ) -> dict[str, Any] | None:
        """The row of the version at ``alias`` (a plain dict the cache can hold), or None."""
        if not await self._tables.exist():
            return None
        group = await self._cluster.locate(sql.FAMILY, name)
        row = await self._cluster.as_written(group).fetch_one(
            sql.BY_ALIAS, (name, alias), as_dict=True, token=token, consistency=consistency
        )
        if row is None:
            return None
        row.pop("revision", None)
        return dict(row)

    async def _explain_missing(
        self, name: str, alias: str, token: Token, consistency: str | None
    ) -> NoReturn:
        await self.get_model(name, token=token, consistency=consistency)  # or ModelNotFound
        raise ModelNotFound(f"model {name!r} has no version at alias {alias!r}")

    async def history(
        self,
        name: str,
        alias: str | None = None,
        *,
        token: Token = None,
        consistency: str | None = None,
    ) -> list[Transition]:
        """The transitions of model ``name`` (of ``alias`` only, if given), oldest first;
        ModelNotFound if there is no such model."""
        name = names.check_model_name(name)
        if alias is not None:
            alias = names.check_alias(alias)
        group = await self._tables.group_of(name)
        rows = await self._cluster.as_written(group).fetch_all(
            sql.HISTORY_OF, (name, alias, alias), token=token, consistency=consistency
        )
        if not rows:
            await self.get_model(name, token=token, consistency=consistency)  # or ModelNotFound
        return [Transition(*r) for r in rows]


def _model(row: Mapping[str, Any] | None, token: str = "") -> Model:
    if row is None:
        raise RegistryError("the model's row vanished inside its own transaction")
    return Model(
        name=row["model"],
        description=row["description"],
        tags=frozen_map(row["tags"]),
        latest_version=int(row["last_version"]),
        aliases=frozen_map(row["aliases"]),
        created_at=row["created_at"],
        created_by=row["created_by"],
        token=token,
    )


def _text(token: CausalToken | None) -> str:
    return token.to_string() if token else ""

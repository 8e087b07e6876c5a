# Generated from store_async.py by scripts/async_to_sync.py: do not edit.
# Change store_async.py and run the script again.
"""The experiment store's façade: experiments and runs as JSON documents on sharded
PostgreSQL, queried with a MongoDB-style subset (async source).

Every document of an experiment (its own, in collection ``experiments``, and its
runs', in ``runs``) lives on the shard group its name hashes to (key family
``experiments``). A query that names one experiment (``experiment=`` or
``{"experiment": "x", ...}`` at the top of the filter) runs on that group; any other
query runs on every group at once through the cluster's scatter-gather, which merges
sort and limit exactly (the sort keys are typed columns, see
:func:`mlscale.core.experiments.build.key_columns`). Filters, updates and pipelines
are translated to parameterized SQL by :mod:`mlscale.core.experiments`, whose
docstring lists the semantics supported.

- ``update_one`` changes the first matching document in ``_id`` order;
  ``update_many`` every matching one, one transaction per shard group (not atomic
  across groups). Both look for conflicts (a non-document on an update's path,
  ``$inc`` of a non-number, ``$push`` to a non-array) on every group first and raise
  :class:`~mlscale.errors.ExperimentError` before writing anything.
- ``create_index(path)`` makes a GIN (``jsonb_path_ops``) index on the values of a
  path on every group; the store's equality and ``$in`` filters on that path then
  use it (ranges do not: GIN keeps no order). A store learns of indexes another
  process made within :data:`INDEX_TTL_S`.

``store_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...core.causal import CausalToken, Token
from ...core.experiments import build, sql
from ...core.experiments.query import Node, Path, check_path, parse_filter
from ...core.experiments.results import IndexInfo, UpdateResult
from ...core.experiments.routing import decode_key, named_experiment, number
from ...core.experiments.shape import (
    apply_projection,
    parse_limit,
    parse_pipeline,
    parse_projection,
    parse_sort,
)
from ...core.experiments.update import UpdateOp, check_json, parse_update
from ...engine.cluster_sync import Cluster
from ...errors import ExperimentError, ExperimentNotFound
from ..shared_sync import run_all
from .tables_sync import ExperimentTables

__all__ = ["INDEX_TTL_S", "ExperimentStore"]

INDEX_TTL_S = 10.0  # seconds a store trusts its list of path indexes
_MAX_NAME = 200
Sort = Mapping[str, int] | Sequence[tuple[str, int]] | None


class ExperimentStore:
    """Experiments and runs of a cluster as documents (see the module docstring).

    ``use_indexes``: write filters on indexed paths in their index's form (False:
    always the whole-document form, which no path index serves; for comparisons).
    """

    def __init__(self, cluster: Cluster, *, use_indexes: bool = True) -> None:
        self._cluster = cluster
        self._tables = ExperimentTables(cluster)
        self._use_indexes = use_indexes
        self._indexed: dict[str, tuple[float, frozenset[Path]]] = {}

    @property
    def cluster(self) -> Cluster:
        """The cluster the store lives on."""
        return self._cluster

    # -- writing documents ----------------------------------------------------------------

    def create_experiment(self, name: str, doc: Mapping[str, Any] | None = None) -> str:
        """Record experiment ``name`` with document ``doc`` (its description, owner,
        tags ...). Creating it again with the same document is a no-op; with another,
        an ExperimentError. Returns the commit's causal token."""
        name = _name(name, "experiment")
        body = _document(doc or {}, name, name)
        self._tables.ensure()
        group = self._tables.group_of(name)
        with self._cluster.transaction(group=group, as_written=True) as tx:
            tx.execute(
                "INSERT INTO mlscale_experiments (experiment, id, doc) VALUES (%s, %s, %s) "
                "ON CONFLICT (experiment, id) DO NOTHING",
                (name, name, json.dumps(body)),
            )
            have = tx.fetch_value(
                "SELECT doc FROM mlscale_experiments WHERE experiment = %s AND id = %s",
                (name, name),
            )
        if have != body:
            raise ExperimentError(f"experiment {name!r} exists with another document")
        return _text(tx.token)

    def log_run(self, experiment: str, doc: Mapping[str, Any], *, run_id: str | None = None) -> str:
        """Add a run of ``experiment`` (params, tags, metrics, notes: any JSON
        document); its ``_id`` (``run_id``, or a new random one)."""
        body = dict(doc)
        body["experiment"] = experiment
        if run_id is not None:
            body["_id"] = run_id
        (done,) = self.insert_runs([body])
        return done

    def insert_runs(self, docs: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add runs in one COPY per shard group; each document names its
        ``experiment`` and may give its ``_id`` (else a random one). Their ``_id`` s,
        in order. An ``_id`` already used in the experiment fails the call (an
        IntegrityViolation; groups already copied keep their rows)."""
        rows: list[tuple[str, str, str]] = []
        for doc in docs:
            if not isinstance(doc, Mapping):
                raise ExperimentError(f"a run is a document (dict), not {type(doc).__name__}")
            experiment = _name(doc.get("experiment"), "experiment")
            run_id = _name(doc.get("_id", uuid.uuid4().hex), "run _id")
            body = _document(doc, experiment, run_id)
            rows.append((experiment, run_id, json.dumps(body)))
        if not rows:
            return []
        self._tables.ensure()
        self._cluster.copy("COPY mlscale_runs (experiment, id, doc) FROM STDIN", rows)
        return [r[1] for r in rows]

    # -- reading --------------------------------------------------------------------------

    def get_run(
        self, experiment: str, run_id: str, *, token: Token = None, consistency: str | None = None
    ) -> dict[str, Any]:
        """Run ``run_id`` of ``experiment``; ExperimentNotFound if there is none."""
        found = self.find(
            {"_id": run_id}, experiment=experiment, token=token, consistency=consistency
        )
        if not found:
            raise ExperimentNotFound(f"experiment {experiment!r} has no run {run_id!r}")
        return found[0]

    def get_experiment(
        self, name: str, *, token: Token = None, consistency: str | None = None
    ) -> dict[str, Any]:
        """Experiment ``name``'s document; ExperimentNotFound if there is none."""
        found = self.find(
            {"_id": name},
            collection="experiments",
            experiment=name,
            token=token,
            consistency=consistency,
        )
        if not found:
            raise ExperimentNotFound(f"no experiment {name!r}")
        return found[0]

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Mapping[str, Any] | None = None,
        sort: Sort = None,
        limit: int | None = None,
        *,
        collection: str = "runs",
        experiment: str | None = None,
        token: Token = None,
        consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """The documents of ``collection`` matching ``filter``, sorted (``{"path": 1 |
        -1}`` or pairs; ties and unsorted results in ``_id`` order), at most ``limit``
        (None or 0: all), shaped by ``projection``. ``experiment``: keep to that
        experiment (one shard group)."""
        node = parse_filter(filter)
        shape = parse_projection(projection)
        keys = parse_sort(sort)
        most = parse_limit(limit)
        target = self._target(collection, node, experiment)
        if target is None:
            return []
        keep = None
        if shape is not None and shape.include:
            keep = [p[0] for p in shape.paths] + (["_id"] if shape.with_id else [])
        built = build.find_sql(target, node, keys, most, keep)
        rows = self._read(target, built, token, consistency)
        if not keys and most is None:
            rows.sort(key=lambda row: (row[0], row[1]))  # _id order; C collation (bytes)
        if shape is not None and shape.include and all(len(p) == 1 for p in shape.paths):
            return [row[2] for row in rows]  # the statement kept exactly those keys
        return [apply_projection(row[2], shape) for row in rows]

    def count(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        collection: str = "runs",
        experiment: str | None = None,
        token: Token = None,
        consistency: str | None = None,
    ) -> int:
        """How many documents of ``collection`` match ``filter``."""
        node = parse_filter(filter)
        target = self._target(collection, node, experiment)
        if target is None:
            return 0
        rows = self._read(target, build.count_sql(target, node), token, consistency)
        return int(rows[0][0]) if rows else 0

    def aggregate(
        self,
        pipeline: Sequence[Mapping[str, Any]],
        *,
        collection: str = "runs",
        experiment: str | None = None,
        token: Token = None,
        consistency: str | None = None,
    ) -> list[dict[str, Any]]:
        """The result documents of ``pipeline`` (``$match``, ``$group``, ``$sort``,
        ``$limit``, each optional, in that order). Groups are merged exactly across
        shard groups; ``$sum`` of no number is 0, ``$avg``/``$min``/``$max`` of none
        null."""
        plan = parse_pipeline(pipeline)
        if plan.group is None:
            return self._find_node(
                plan.match, plan.sort, plan.limit, collection, experiment, token, consistency
            )
        target = self._target(collection, plan.match, experiment)
        if target is None:
            return []
        built = build.aggregate_sql(target, plan.match, plan.group, plan.sort, plan.limit)
        rows = self._read(target, built, token, consistency, as_dict=True)
        out: list[dict[str, Any]] = []
        for row in rows:
            if not row["__n"]:
                continue
            key = None
            if plan.group.key is not None:
                key = decode_key(row["kb"], row["kn"], row["kt"])
            doc: dict[str, Any] = {"_id": key}
            for acc in plan.group.accumulators:
                value = row["a_" + acc.name]
                if acc.kind == "count":
                    value = int(value)
                elif acc.kind == "sum" and value is None:
                    value = 0
                doc[acc.name] = number(value)
            out.append(doc)
        return out

    def _find_node(
        self,
        node: Node,
        keys: Any,
        most: int | None,
        collection: str,
        experiment: str | None,
        token: Token,
        consistency: str | None,
    ) -> list[dict[str, Any]]:
        target = self._target(collection, node, experiment)
        if target is None:
            return []
        rows = self._read(target, build.find_sql(target, node, keys, most), token, consistency)
        if not keys and most is None:
            rows.sort(key=lambda row: (row[0], row[1]))
        return [dict(row[2]) for row in rows]

    # -- updating -------------------------------------------------------------------------

    def update_one(
        self,
        filter: Mapping[str, Any] | None,
        update: Mapping[str, Any],
        *,
        collection: str = "runs",
        experiment: str | None = None,
    ) -> UpdateResult:
        """Apply ``update`` to the first document (in ``_id`` order) matching
        ``filter``; ``matched`` is 0 or 1."""
        node = parse_filter(filter)
        ops = parse_update(update)
        target = self._target(collection, node, experiment)
        if target is None:
            return UpdateResult(0, 0)
        for _ in range(3):
            first = self._read(target, build.find_sql(target, node, (), 1), None, "strong")
            if not first:
                return UpdateResult(0, 0)
            one = (first[0][1], first[0][0])
            group = self._tables.group_of(one[0])
            result = self._update_group(target, node, ops, group, one)
            if result.matched:
                return result
            # Changed between the read and the write: look again.
        raise ExperimentError("update_one: the matching document kept changing; try again")

    def update_many(
        self,
        filter: Mapping[str, Any] | None,
        update: Mapping[str, Any],
        *,
        collection: str = "runs",
        experiment: str | None = None,
    ) -> UpdateResult:
        """Apply ``update`` to every document matching ``filter``: one transaction per
        shard group, after every group was checked for conflicts."""
        node = parse_filter(filter)
        ops = parse_update(update)
        target = self._target(collection, node, experiment)
        if target is None:
            return UpdateResult(0, 0)
        groups = self._groups(target)
        check = build.conflict_sql(target, node, ops, None)
        bad: list[tuple[str, str]] = []

        def look(group: str) -> None:
            rows = self._cluster.as_written(group).fetch_all(
                check.text.replace(" FOR UPDATE", ""), check.params, consistency="strong"
            )
            bad.extend((r[0], r[1]) for r in rows)

        run_all([_bind(look, g) for g in groups])
        if bad:
            _refuse(ops, bad)
        results: list[UpdateResult] = []

        def write(group: str) -> None:
            results.append(self._update_group(target, node, ops, group, None))

        run_all([_bind(write, g) for g in groups])
        return UpdateResult(
            sum(r.matched for r in results),
            sum(r.modified for r in results),
            tuple(t for r in results for t in r.tokens),
        )

    def _update_group(
        self,
        target: build.Target,
        node: Node,
        ops: Sequence[UpdateOp],
        group: str,
        one: tuple[str, str] | None,
    ) -> UpdateResult:
        check = build.conflict_sql(target, node, ops, one)
        change = build.update_sql(target, node, ops, one)
        with self._cluster.transaction(group=group, as_written=True) as tx:
            bad = tx.fetch_all(check.text, check.params)
            if bad:
                _refuse(ops, [(r[0], r[1]) for r in bad])
            row = tx.fetch_one(change.text, change.params)
        matched, modified = (int(row[0]), int(row[1])) if row else (0, 0)
        tokens = (_text(tx.token),) if modified and tx.token else ()
        return UpdateResult(matched, modified, tokens)

    # -- indexes --------------------------------------------------------------------------

    def create_index(self, path: str, *, collection: str = "runs") -> IndexInfo:
        """A GIN (``jsonb_path_ops``) index on the values of ``path`` (dotted) in
        ``collection``, on every shard group (if missing); equality and ``$in``
        filters on the path use it from then on. CREATE INDEX blocks writes to the
        table while it builds."""
        keys = check_path(path, "index path")
        table = sql.table_of(collection)
        self._tables.ensure()
        ddl = build.index_ddl(table, keys)
        comment = build.index_comment(table, keys)

        def make(group: str) -> None:
            scope = self._cluster.as_written(group)
            scope.execute(ddl)
            scope.execute(comment)

        run_all([_bind(make, g) for g in self._tables.groups])
        self._indexed.pop(table, None)
        return IndexInfo(collection, ".".join(keys), build.index_name(table, keys))

    def indexes(self, collection: str = "runs") -> list[IndexInfo]:
        """The path indexes of ``collection`` (as the first shard group has them)."""
        table = sql.table_of(collection)
        if not self._tables.exist():
            return []
        paths = self._load_indexed(table)
        return [
            IndexInfo(collection, ".".join(p), build.index_name(table, p)) for p in sorted(paths)
        ]

    def explain(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        collection: str = "runs",
        experiment: str | None = None,
    ) -> str:
        """PostgreSQL's plan (EXPLAIN text) of a find of ``filter`` on one shard group
        (the experiment's, else the first)."""
        node = parse_filter(filter)
        target = self._target(collection, node, experiment)
        if target is None:
            raise ExperimentNotFound("the experiment store has no documents yet")
        group = (self._groups(target))[0]
        built = build.find_sql(target, node, (), None)
        rows = self._cluster.as_written(group).fetch_all(
            "EXPLAIN " + built.text, built.params, consistency="strong"
        )
        return "\n".join(r[0] for r in rows)

    # -- where things run -----------------------------------------------------------------

    def _target(self, collection: str, node: Node, experiment: str | None) -> build.Target | None:
        table = sql.table_of(collection)
        if experiment is not None:
            experiment = _name(experiment, "experiment")
        if not self._tables.exist():
            return None
        indexed = self._load_indexed(table) if self._use_indexes else frozenset()
        return build.Target(table, indexed, experiment or named_experiment(node))

    def _groups(self, target: build.Target) -> list[str]:
        if target.experiment is not None:
            return [self._tables.group_of(target.experiment)]
        return self._tables.groups

    def _read(
        self,
        target: build.Target,
        built: build.Built,
        token: Token,
        consistency: str | None,
        *,
        as_dict: bool = False,
    ) -> list[Any]:
        if target.experiment is not None:
            group = self._tables.group_of(target.experiment)
            rows: list[Any] = self._cluster.as_written(group).fetch_all(
                built.text, built.params, as_dict=as_dict, token=token, consistency=consistency
            )
            return rows
        result = self._cluster.scatter(
            built.text, built.params, token=token, consistency=consistency
        )
        return result.as_dicts() if as_dict else result.rows

    def _load_indexed(self, table: str) -> frozenset[Path]:
        known = self._indexed.get(table)
        if known is not None and time.monotonic() - known[0] < INDEX_TTL_S:
            return known[1]
        group = self._tables.groups[0]
        rows = self._cluster.as_written(group).fetch_all(
            "SELECT obj_description(i.indexrelid, 'pg_class') FROM pg_index i "
            "WHERE i.indrelid = %s::regclass",
            (table,),
            consistency="strong",
        )
        paths = frozenset(
            tuple(r[0][len(build.INDEX_COMMENT) :].split("."))
            for r in rows
            if r[0] and r[0].startswith(build.INDEX_COMMENT)
        )
        self._indexed[table] = (time.monotonic(), paths)
        return paths


def _bind(work: Any, group: str) -> Any:
    def call() -> None:
        work(group)

    return call


def _refuse(ops: Sequence[UpdateOp], bad: Sequence[tuple[str, str]]) -> None:
    names = ", ".join(f"{e}/{i}" for e, i in sorted(bad)[:5])
    paths = ", ".join(f"${op.kind} {'.'.join(op.path)}" for op in ops if op.kind != "unset")
    raise ExperimentError(
        f"the update ({paths}) meets a value that is not a document on its path, or "
        f"$inc a non-number, or $push a non-array, in: {names}; nothing was written"
    )


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise ExperimentError(
            f"{what} must be a non-empty string of at most {_MAX_NAME} chars, not {value!r}"
        )
    return value


def _document(doc: Mapping[str, Any], experiment: str, doc_id: str) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise ExperimentError(f"a document is a dict, not {type(doc).__name__}")
    check_json(dict(doc), "document")
    for key, want in (("experiment", experiment), ("_id", doc_id)):
        if key in doc and doc[key] != want:
            raise ExperimentError(f"the document's {key} is {doc[key]!r}, not {want!r}")
    return {
        "_id": doc_id,
        "experiment": experiment,
        **{k: v for k, v in doc.items() if k not in ("_id", "experiment")},
    }


def _text(token: CausalToken | None) -> str:
    return token.to_string() if token else ""

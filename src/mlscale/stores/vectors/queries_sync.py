# Generated from queries_async.py by scripts/async_to_sync.py: do not edit.
# Change queries_async.py and run the script again.
"""k-nearest queries of a vector collection (async source): query, query_many,
recall, tune_ef_search.

Every group answers with its own k nearest (never k / groups) under the call's
``ef_search`` / ``probes`` (set for that statement only), and the client merges them
exactly (:mod:`mlscale.core.vectors.merge`). A group whose answer is short of k rows
(a filter after the HNSW scan, a small ef_search) is asked again a step up -- HNSW
iterative scan (pgvector >= 0.8) or a raised ef_search, then exact -- and the result
says which step answered (``result.how``, ``result.steps``). ``exact=True`` scans
every row (ties broken by id): the answer numpy's brute force gives on the same
float32 vectors. ``query_many`` asks each group for up to 256 queries in one
statement. The async client asks the groups at once; the sync one asks them in turn
(a thread hand-off costs about what a group's answer does), so run queries from
several threads, or batch them, for throughput.

``queries_sync.py`` is generated from this file by ``scripts/async_to_sync.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ...core.causal import Token
from ...core.vectors import sql as vsql
from ...core.vectors.filters import to_sql
from ...core.vectors.merge import Step, ladder, merge_topk, raised_ef
from ...core.vectors.results import QueryResult, RecallResult, TuneResult
from ...core.vectors.spec import (
    Collection,
    IndexKind,
    check_ef_search,
    check_k,
    check_probes,
    finite,
)
from ...engine.cluster_sync import Cluster
from ...errors import VectorError
from ..shared_sync import run_all

if TYPE_CHECKING:
    from .store_sync import VectorStore

__all__ = ["VectorQueries", "Token"]

_BATCH_QUERIES = 256  # query vectors per statement of query_many()
_ITERATIVE_FROM = (0, 8, 0)  # pgvector's first version with hnsw.iterative_scan


class VectorQueries:
    """The queries of :class:`~.collection_sync.VectorCollection`, which sets
    the state below (see the module docstring)."""

    _store: VectorStore
    _cluster: Cluster
    _spec: Collection
    _iterative: bool | None  # whether every group's pgvector has iterative scans

    def query(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        include_metadata: bool = False,
        consistency: str | None = None,
        token: Token = None,
    ) -> QueryResult:
        """The ``k`` nearest rows to ``vector`` (see the module docstring), optionally
        only rows whose metadata satisfies ``filter``
        (:mod:`mlscale.core.vectors.filters`). ``ef_search`` (HNSW) / ``probes``
        (IVFFlat): this call's search width (default: the collection's); ``exact``:
        scan every row; ``consistency`` / ``token``: the reads' guarantee."""
        started = time.perf_counter()
        spec = self._spec
        k, ef, nprobes = _widths(spec, k, ef_search, probes)
        vec = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vec.shape != (spec.dim,):
            raise VectorError(
                f"collection {spec.name!r}: the query vector must have {spec.dim} values "
                f"(got {vec.size})"
            )
        finite(vec, f"collection {spec.name!r}")
        text = vsql.vector_text(vec.tolist())
        flt = to_sql(filter)
        steps = self._ladder(spec, exact, flt is not None)
        answers: dict[str, list[Any]] = {}
        used: dict[str, str] = {}
        retried: list[str] = []
        pending = list(self._store.groups)
        for n, step in enumerate(steps):
            stmt = vsql.knn(
                spec,
                text,
                k,
                flt,
                exact=step is Step.EXACT,
                ef_search=raised_ef(ef, k) if step is Step.EF_RAISED else ef,
                probes=nprobes,
                iterative=step is Step.ITERATIVE,
                with_metadata=include_metadata,
            )
            got: dict[str, list[Any]] = {}

            def reader(
                group: str, stmt: vsql.Knn = stmt, got: dict[str, list[Any]] = got
            ) -> Callable[[], Any]:
                def read() -> None:
                    got[group] = self._cluster.as_written(group).fetch_all(
                        stmt.sql,
                        stmt.params,
                        settings=stmt.settings,
                        consistency=consistency,
                        token=token,
                    )

                return read

            run_all([reader(g) for g in pending], small=True)
            for group in pending:
                answers[group] = got[group]
                used[group] = step.value
            pending = [g for g in pending if len(got[g]) < k]
            if not pending or n + 1 == len(steps):
                break
            retried += [g for g in pending if g not in retried]
        rows = merge_topk(answers.values(), k)
        strongest = max((Step(s) for s in used.values()), key=lambda s: s.rank)
        return QueryResult(
            ids=tuple(r[0] for r in rows),
            distances=tuple(float(r[1]) for r in rows),
            metadata=tuple(r[2] for r in rows) if include_metadata else None,
            k=k,
            how=strongest.value,
            steps=dict(sorted(used.items())),
            retried=tuple(retried),
            ef_search=ef,
            elapsed_s=time.perf_counter() - started,
        )

    def query_many(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
        exact: bool = False,
        include_metadata: bool = False,
        consistency: str | None = None,
        token: Token = None,
    ) -> list[QueryResult]:
        """:meth:`query` for each row of ``vectors`` (an (n, dim) array), in order, with
        the same options. Each group answers up to 256 queries in one statement (a
        LATERAL join, one index scan per query), so a batch costs one round trip per
        group instead of n. A query short of k rows on some group is answered again by
        :meth:`query` (its ladder); the others report the first step, and every
        result's ``elapsed_s`` is the whole batch's."""
        started = time.perf_counter()
        spec = self._spec
        k, ef, nprobes = _widths(spec, k, ef_search, probes)
        mat = np.asarray(vectors, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[1] != spec.dim:
            raise VectorError(
                f"collection {spec.name!r}: query vectors must be (n, {spec.dim}) "
                f"(got {tuple(mat.shape)})"
            )
        finite(mat, f"collection {spec.name!r}")
        flt = to_sql(filter)
        steps = self._ladder(spec, exact, flt is not None)
        first = steps[0]
        groups = self._store.groups
        per: list[dict[str, list[Any]]] = [{} for _ in range(len(mat))]
        for lo in range(0, len(mat), _BATCH_QUERIES):
            texts = [vsql.vector_text(row.tolist()) for row in mat[lo : lo + _BATCH_QUERIES]]
            stmt = vsql.knn_many(
                spec,
                texts,
                k,
                flt,
                exact=first is Step.EXACT,
                ef_search=ef,
                probes=nprobes,
                iterative=first is Step.ITERATIVE,
                with_metadata=include_metadata,
            )

            def reader(group: str, stmt: vsql.Knn = stmt, lo: int = lo) -> Callable[[], Any]:
                def read() -> None:
                    rows = self._cluster.as_written(group).fetch_all(
                        stmt.sql,
                        stmt.params,
                        settings=stmt.settings,
                        consistency=consistency,
                        token=token,
                    )
                    for row in rows:
                        per[lo + row[0] - 1].setdefault(group, []).append(row[1:])

                return read

            run_all([reader(g) for g in groups], small=True)
        elapsed = time.perf_counter() - started
        out: list[QueryResult] = []
        for i, answers in enumerate(per):
            if len(steps) > 1 and any(len(answers.get(g, ())) < k for g in groups):
                out.append(
                    self.query(
                        mat[i],
                        k,
                        filter=filter,
                        ef_search=ef,
                        probes=nprobes,
                        exact=exact,
                        include_metadata=include_metadata,
                        consistency=consistency,
                        token=token,
                    )
                )
                continue
            rows = merge_topk(answers.values(), k)
            out.append(
                QueryResult(
                    ids=tuple(r[0] for r in rows),
                    distances=tuple(float(r[1]) for r in rows),
                    metadata=tuple(r[2] for r in rows) if include_metadata else None,
                    k=k,
                    how=first.value,
                    steps={g: first.value for g in sorted(groups)},
                    retried=(),
                    ef_search=ef,
                    elapsed_s=elapsed,
                )
            )
        return out

    def recall(
        self,
        queries: Any,
        k: int = 10,
        *,
        ef_search: int | None = None,
        probes: int | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> RecallResult:
        """recall@k of the index against exact search over the rows of ``queries``."""
        mat = np.asarray(queries, dtype=np.float32)
        found = []
        for row in mat:
            truth = self.query(row, k, exact=True, filter=filter, consistency="strong")
            approx = self.query(
                row, k, ef_search=ef_search, probes=probes, filter=filter, consistency="strong"
            )
            want = set(truth.ids)
            found.append(len(want & set(approx.ids)) / max(1, len(want)))
        ef = self._spec.ef_search if ef_search is None else ef_search
        return RecallResult(
            k, ef, len(found), float(np.mean(found)) if found else 1.0, min(found, default=1.0)
        )

    def tune_ef_search(
        self,
        queries: Any,
        k: int = 10,
        *,
        target: float = 0.95,
        candidates: Sequence[int] = (10, 20, 40, 64, 100, 160, 250, 400, 640, 1000),
        save: bool = True,
    ) -> TuneResult:
        """The smallest ``ef_search`` of ``candidates`` whose recall@k over ``queries``
        reaches ``target``, measured against exact search; with ``save`` it becomes
        the collection's default (recorded on every group)."""
        if self._spec.index is None or self._spec.index.kind is not IndexKind.HNSW:
            raise VectorError(f"collection {self._spec.name!r} has no HNSW index to tune")
        mat = np.asarray(queries, dtype=np.float32)
        truths = [set((self.query(q, k, exact=True, consistency="strong")).ids) for q in mat]
        tried: list[RecallResult] = []
        for ef in sorted({check_ef_search(c) for c in candidates if c >= k}):
            scores = []
            for q, want in zip(mat, truths, strict=True):
                got = self.query(q, k, ef_search=ef, consistency="strong")
                scores.append(len(want & set(got.ids)) / max(1, len(want)))
            tried.append(RecallResult(k, ef, len(scores), float(np.mean(scores)), min(scores)))
            if tried[-1].recall >= target:
                break
        best = tried[-1]
        if save:
            new = Collection.from_spec({**self._spec.to_spec(), "ef_search": best.ef_search})
            self._spec = self._store.save_spec(new, replace=True)
        return TuneResult(best.ef_search, best.recall, target, best.recall >= target, tuple(tried))

    def _ladder(self, spec: Collection, exact: bool, filtered: bool) -> tuple[Step, ...]:
        """The steps a group short of k rows climbs, for ``spec``'s index."""
        return ladder(
            spec.index.kind if spec.index else None,
            exact=exact,
            filtered=filtered,
            iterative=self._has_iterative(),
        )

    def _has_iterative(self) -> bool:
        if self._iterative is None:
            self._iterative = self._store._pgvector_version() >= _ITERATIVE_FROM
        return self._iterative


def _widths(
    spec: Collection, k: int, ef_search: int | None, probes: int | None
) -> tuple[int, int, int]:
    """``k``, ef_search and probes checked; the widths default to the collection's."""
    return (
        check_k(k),
        check_ef_search(spec.ef_search if ef_search is None else ef_search),
        check_probes(spec.probes if probes is None else probes),
    )

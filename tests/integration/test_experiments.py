"""The experiment store on the session cluster (2 shard groups x 2 replicas): a
differential test of generated filters and updates against the pure-Python
evaluator in tests/unit/experiments/mongo_model.py on 10,000 nested documents,
sorted finds merged across groups, aggregate, unsupported operators, and a path
index shown in EXPLAIN.

Reads pass consistency="strong" (the documents were just written). The module puts
the sharding catalog back as it found it (the store's tables are dropped)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlscale import AsyncCluster, Cluster
from mlscale.errors import ExperimentError, ExperimentNotFound, UnsupportedQuery
from mlscale.stores.experiments import AsyncExperimentStore, ExperimentStore
from tests.integration.sharding_cleanup import restore_sharding
from tests.unit.experiments.mongo_model import (
    Conflict,
    View,
    apply_update,
    compile_filter,
    gen_docs,
    gen_filter,
    gen_update,
    matches,
    sort_key,
    value_pools,
)

pytestmark = pytest.mark.integration

N_DOCS = 10_000
N_FILTERS = 240
STRONG = {"consistency": "strong"}


@pytest.fixture(scope="module")
def loaded(cluster: Cluster) -> Iterator[tuple[ExperimentStore, list[dict[str, Any]]]]:
    before = cluster.refresh_shards()
    try:
        store = ExperimentStore(cluster)
        docs = gen_docs(N_DOCS, seed=18)
        started = time.perf_counter()
        ids = store.insert_runs(docs)  # one COPY per shard group
        print(f"loaded {len(ids)} documents in {time.perf_counter() - started:.2f} s")
        yield store, docs
    finally:
        restore_sharding(cluster, before)


def _ids(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["_id"] for d in docs)


def test_generated_filters_equal_the_evaluator(
    loaded: tuple[ExperimentStore, list[dict[str, Any]]],
) -> None:
    store, docs = loaded
    assert store.count(**STRONG) == N_DOCS
    rng = random.Random(1818)
    pools = value_pools(docs)
    filters = [gen_filter(rng, pools=pools) for _ in range(N_FILTERS)]
    started = time.perf_counter()
    views = [View(d) for d in docs]
    wanted = [sorted(v.doc["_id"] for v in views if p(v)) for p in map(compile_filter, filters)]
    print(f"the evaluator: {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    equal = selective = 0
    for i, (flt, want) in enumerate(zip(filters, wanted, strict=True)):
        got = _ids(store.find(flt, projection={"_id": 1}, **STRONG))
        assert got == want, f"filter {flt}: {len(got)} rows, the evaluator {len(want)}"
        if i % 4 == 0:
            assert store.count(flt, **STRONG) == len(want), flt
        equal += 1
        selective += 0 < len(want) < N_DOCS
    print(
        f"{equal} generated filters equal the evaluator ({selective} select some but not all "
        f"documents) in {time.perf_counter() - started:.1f} s"
    )
    assert equal >= 200 and selective >= 100

    # The filters on the paths given an index, again: the index's form of the SQL.
    store.create_index("params.lr")
    store.create_index("tags")
    assert {i.path for i in store.indexes()} >= {"params.lr", "tags"}
    again = 0
    for flt, want in zip(filters, wanted, strict=True):
        if "params.lr" in repr(flt) or "'tags'" in repr(flt):
            assert _ids(store.find(flt, projection={"_id": 1}, **STRONG)) == want, flt
            again += 1
    print(f"{again} filters on params.lr or tags equal again with path indexes on them")
    assert again >= 30


def test_sorted_finds_merge_exactly(loaded: tuple[ExperimentStore, list[dict[str, Any]]]) -> None:
    store, docs = loaded
    rng = random.Random(7)
    for _ in range(30):
        flt = gen_filter(rng)
        path = rng.choice(["metrics.auc", "metrics.loss", "params.opt", "flag"])
        direction = rng.choice([1, -1])
        limit = rng.choice([1, 5, 50])
        chosen = sorted((d for d in docs if matches(d, flt)), key=lambda d: d["_id"])
        chosen.sort(key=lambda d: sort_key(d, path), reverse=direction == -1)
        want = [d["_id"] for d in chosen[:limit]]
        got = store.find(flt, {"_id": 1}, sort={path: direction}, limit=limit, **STRONG)
        assert [d["_id"] for d in got] == want, (flt, path, direction)


def test_one_experiment_and_projection(
    loaded: tuple[ExperimentStore, list[dict[str, Any]]],
) -> None:
    store, docs = loaded
    mine = [d for d in docs if d["experiment"] == "exp3" and matches(d, {"tags": "a"})]
    got = store.find({"experiment": "exp3", "tags": "a"}, {"params.sched.kind": 1}, **STRONG)
    assert _ids(got) == _ids(mine)
    first = next(d for d in got if d["_id"] == min(_ids(mine)))
    source = next(d for d in mine if d["_id"] == first["_id"])
    assert set(first) <= {"_id", "params"}
    assert set(first.get("params", {})) <= {"sched"}
    run = store.get_run("exp3", source["_id"], **STRONG)
    assert run == source
    with pytest.raises(ExperimentNotFound):
        store.get_run("exp3", "nope", **STRONG)
    dropped = store.find(
        {"_id": source["_id"]}, {"params": 0, "_id": 0}, experiment="exp3", **STRONG
    )
    assert dropped == [{k: v for k, v in source.items() if k not in ("params", "_id")}]


def test_aggregate_groups_across_shard_groups(
    loaded: tuple[ExperimentStore, list[dict[str, Any]]],
) -> None:
    store, docs = loaded
    got = store.aggregate(
        [
            {"$match": {"metrics.auc": {"$gte": 0.2}}},
            {
                "$group": {
                    "_id": "$params.opt",
                    "n": {"$sum": 1},
                    "best": {"$max": "$metrics.auc"},
                    "mean": {"$avg": "$metrics.auc"},
                    "runs": {"$count": {}},
                }
            },
            {"$sort": {"n": -1, "_id": 1}},
        ],
        **STRONG,
    )
    groups: dict[Any, list[float]] = {}
    for d in docs:
        if matches(d, {"metrics.auc": {"$gte": 0.2}}):
            key = d.get("params", {}).get("opt")
            groups.setdefault(
                repr((type(key).__name__ if key is not None else "", key)), []
            ).append(d["metrics"]["auc"])
    assert sum(g["n"] for g in got) == sum(len(v) for v in groups.values())
    assert len(got) == len(groups)
    assert [g["n"] for g in got] == sorted((g["n"] for g in got), reverse=True)
    for g in got:
        values = groups[repr((type(g["_id"]).__name__ if g["_id"] is not None else "", g["_id"]))]
        assert (g["n"], g["runs"]) == (len(values), len(values))
        assert g["best"] == max(values)
        assert g["mean"] == pytest.approx(sum(values) / len(values))
    total = store.aggregate([{"$group": {"_id": None, "lr": {"$sum": "$params.lr"}}}], **STRONG)
    want = sum(
        v
        for d in docs
        if isinstance(v := d.get("params", {}).get("lr"), int | float) and not isinstance(v, bool)
    )
    assert total[0]["lr"] == pytest.approx(want)
    assert (
        store.aggregate([{"$match": {"nope": 1}}, {"$group": {"_id": None, "n": {"$sum": 1}}}])
        == []
    )


@pytest.mark.parametrize(
    ("call", "operator"),
    [
        (lambda s: s.find({"a": {"$regex": "x"}}), "$regex"),
        (lambda s: s.find({"a": {"$elemMatch": {"b": 1}}}), "$elemMatch"),
        (lambda s: s.find({"$nor": [{"a": 1}]}), "$nor"),
        (lambda s: s.find({"a.0": 1}), ".0"),
        (lambda s: s.find({"a": [1, 2]}), "$eq"),
        (lambda s: s.count({"a": {"$size": 2}}), "$size"),
        (lambda s: s.update_many({}, {"$rename": {"a": "b"}}), "$rename"),
        (lambda s: s.update_one({}, {"a": 1}), "a"),
        (lambda s: s.aggregate([{"$unwind": "$a"}]), "$unwind"),
        (lambda s: s.aggregate([{"$group": {"_id": None, "x": {"$push": "$a"}}}]), "$push"),
    ],
)
def test_unsupported_operators_raise_naming_them(
    loaded: tuple[ExperimentStore, list[dict[str, Any]]], call: Any, operator: str
) -> None:
    store, _ = loaded
    with pytest.raises(UnsupportedQuery, match=r"\S") as info:
        call(store)
    assert info.value.operator == operator
    assert operator in str(info.value)


def test_index_use_in_explain(loaded: tuple[ExperimentStore, list[dict[str, Any]]]) -> None:
    store, _ = loaded
    store.create_index("params.opt")
    plan = store.explain({"params.opt": "adam"})
    print(plan)
    assert "Bitmap Index Scan on mlscale_runs_px_" in plan
    assert "Index" not in store.explain({"notes": "baseline"})  # no index on that path


def test_async_twin(cluster: Cluster, loaded: tuple[ExperimentStore, list[dict[str, Any]]]) -> None:
    _, docs = loaded

    async def run() -> int:
        async with AsyncCluster(cluster.config) as ac:
            store = AsyncExperimentStore(ac)
            return await store.count({"params.lr": {"$in": [0.1, 1]}}, consistency="strong")

    assert asyncio.run(run()) == sum(matches(d, {"params.lr": {"$in": [0.1, 1]}}) for d in docs)


def test_experiment_documents(loaded: tuple[ExperimentStore, list[dict[str, Any]]]) -> None:
    store, _ = loaded
    doc = {"owner": "ana", "tags": ["search", "sweep"], "budget": {"gpus": 8}}
    store.create_experiment("exp-doc-1", doc)
    store.create_experiment("exp-doc-1", doc)  # the same document: a no-op
    with pytest.raises(ExperimentError, match="another document"):
        store.create_experiment("exp-doc-1", {"owner": "bob"})
    store.create_experiment("exp-doc-2", {"owner": "bob", "tags": ["sweep"]})
    got = store.get_experiment("exp-doc-1", **STRONG)
    assert got == {"_id": "exp-doc-1", "experiment": "exp-doc-1", **doc}
    found = store.find({"tags": "sweep"}, {"owner": 1}, sort={"owner": -1},
                       collection="experiments", **STRONG)  # fmt: skip
    assert found == [{"_id": "exp-doc-2", "owner": "bob"}, {"_id": "exp-doc-1", "owner": "ana"}]
    result = store.update_one({"_id": "exp-doc-2"}, {"$inc": {"budget.gpus": 2}},
                              collection="experiments")  # fmt: skip
    assert (result.matched, result.modified, len(result.tokens)) == (1, 1, 1)
    again = store.get_experiment("exp-doc-2", token=result.tokens[0])
    assert again["budget"] == {"gpus": 2}
    with pytest.raises(ExperimentNotFound):
        store.get_experiment("exp-doc-3", **STRONG)
    with pytest.raises(ExperimentError, match="no collection"):
        store.find({}, collection="models")


def test_updates_equal_the_evaluator(
    loaded: tuple[ExperimentStore, list[dict[str, Any]]],
) -> None:
    # Last in the module: its documents (experiments u-exp*) join the loaded ones.
    store, _ = loaded
    mine = {"experiment": {"$in": [f"u-exp{i}" for i in range(6)]}}
    docs = {d["_id"]: d for d in gen_docs(600, seed=99, experiments=6, prefix="u-")}
    store.insert_runs(docs.values())
    rng = random.Random(5)
    applied = refused = 0
    for i in range(40):
        flt = {"$and": [mine, gen_filter(rng)]}
        update = gen_update(rng)
        if not update:
            continue
        chosen = sorted(k for k, d in docs.items() if matches(d, flt))
        if i % 4 == 0:
            chosen = chosen[:1]
        try:
            after = {k: apply_update(docs[k], update) for k in chosen}
        except Conflict:
            with pytest.raises(ExperimentError, match="nothing was written"):
                if i % 4 == 0:
                    store.update_one(flt, update)
                else:
                    store.update_many(flt, update)
            refused += 1
        else:
            call = store.update_one if i % 4 == 0 else store.update_many
            result = call(flt, update)
            assert result.matched == len(chosen), (flt, update)
            docs.update(after)
            applied += 1
        stored = {d["_id"]: d for d in store.find(mine, **STRONG)}
        assert _rounded(stored) == _rounded(docs), (flt, update)
    print(f"{applied} updates equal the evaluator, {refused} refused as it refuses them")
    assert applied >= 15 and refused >= 3


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value

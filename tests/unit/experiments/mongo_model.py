"""A pure-Python evaluator of the MongoDB semantics the experiment store claims
(see mlscale.core.experiments), written from those rules and not from the
translator: filter documents, updates, sort keys. The differential tests run the
same documents through both. Also: the seeded generators of documents, filters and
updates they use."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "Conflict",
    "View",
    "apply_update",
    "compile_filter",
    "gen_docs",
    "gen_filter",
    "gen_update",
    "matches",
    "sort_key",
    "value_pools",
]


class Conflict(Exception):
    """An update meets a non-document on its path ($inc a non-number, $push a non-array)."""


Pred = Callable[["View"], bool]


class View:
    """A document with its paths' values and candidates kept as they are first
    walked (documents that do not change are matched against many filters)."""

    __slots__ = ("_memo", "doc")

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self._memo: dict[str, tuple[list[Any], list[Any]]] = {}

    def walk(self, path: str) -> tuple[list[Any], list[Any]]:
        """The values and the candidates of dotted ``path``."""
        found = self._memo.get(path)
        if found is None:
            values = _walk(self.doc, path.split("."))
            found = self._memo[path] = (values, _unwrap(values))
        return found


def _walk(doc: Any, path: list[str]) -> list[Any]:
    """The path's values: a key applied to an array applies to its document elements
    (one level)."""
    items = [doc]
    for key in path:
        nxt: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                if key in item:
                    nxt.append(item[key])
            elif isinstance(item, list):
                nxt += [e[key] for e in item if isinstance(e, dict) and key in e]
        items = nxt
    return items


def _unwrap(values: list[Any]) -> list[Any]:
    """The candidates: each value, or an array value's elements that are not arrays."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, list):
            out += [e for e in value if not isinstance(e, list)]
        else:
            out.append(value)
    return out


def _bracket(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda a, b: bool(a == b),
    "$gt": lambda a, b: bool(a > b),
    "$gte": lambda a, b: bool(a >= b),
    "$lt": lambda a, b: bool(a < b),
    "$lte": lambda a, b: bool(a <= b),
}


def _compare(path: str, op: str, value: Any) -> Pred:
    """Some candidate has ``value``'s bracket and compares so."""
    bracket = _bracket(value)
    test = _OPS[op]
    if bracket in ("null", "other"):
        return lambda doc: False

    def pred(doc: View) -> bool:
        return any(_bracket(c) == bracket and test(c, value) for c in doc.walk(path)[1])

    return pred


def _eq(path: str, value: Any) -> Pred:
    if value is None:  # missing (no value at all) or a null candidate

        def null(doc: View) -> bool:
            values, candidates = doc.walk(path)
            return not values or any(c is None for c in candidates)

        return null
    return _compare(path, "$eq", value)


def _not(pred: Pred) -> Pred:
    return lambda doc: not pred(doc)


def _op(path: str, op: str, value: Any) -> Pred:
    if op == "$eq":
        return _eq(path, value)
    if op == "$ne":
        return _not(_eq(path, value))
    if op in ("$gt", "$gte", "$lt", "$lte"):
        return _compare(path, op, value)
    if op in ("$in", "$nin"):
        preds = [_eq(path, v) for v in value]

        def found(doc: View) -> bool:
            return any(p(doc) for p in preds)

        return found if op == "$in" else _not(found)
    if op == "$exists":
        return lambda doc: bool(doc.walk(path)[0]) == bool(value)
    if op == "$not":
        return _not(_field(path, value))
    raise ValueError(op)


def _field(path: str, cond: Any) -> Pred:
    if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
        preds = [_op(path, op, v) for op, v in cond.items()]
        return lambda doc: all(p(doc) for p in preds)
    return _eq(path, cond)


def compile_filter(flt: Mapping[str, Any]) -> Pred:
    """A predicate over :class:`View` s of documents for filter ``flt``."""
    preds: list[Pred] = []
    for key, value in flt.items():
        if key in ("$and", "$or"):
            parts = [compile_filter(f) for f in value]
            join = all if key == "$and" else any
            preds.append(lambda doc, parts=parts, join=join: join(p(doc) for p in parts))
        else:
            preds.append(_field(key, value))
    return lambda doc: all(p(doc) for p in preds)


def matches(doc: Mapping[str, Any] | View, flt: Mapping[str, Any]) -> bool:
    """Whether ``doc`` matches filter ``flt``."""
    return compile_filter(flt)(doc if isinstance(doc, View) else View(doc))


_RANK = {"null": 1, "number": 2, "string": 3, "object": 4, "array": 5, "bool": 6}


def sort_key(doc: Mapping[str, Any], path: str) -> tuple[int, Any]:
    """The sort key of ``doc`` by ``path``: the value through documents only, in
    MongoDB's bracket order (scalars only: documents and arrays are not compared)."""
    value: Any = doc
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, dict):
        return (_RANK["object"], 0)
    if isinstance(value, list):
        return (_RANK["array"], 0)
    bracket = _bracket(value)
    return (_RANK[bracket], value if value is not None else 0)


def apply_update(doc: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` after ``update``; Conflict if any operation meets a conflict (then the
    document is left as it was)."""
    out = copy.deepcopy(doc)
    for op, fields in update.items():
        for text, value in fields.items():
            path = text.split(".")
            parent: Any = out
            if op == "$unset":
                for key in path[:-1]:
                    parent = parent.get(key) if isinstance(parent, dict) else None
                if isinstance(parent, dict):
                    parent.pop(path[-1], None)
                continue
            for key in path[:-1]:
                if key not in parent:
                    parent[key] = {}
                if not isinstance(parent[key], dict):
                    raise Conflict(text)
                parent = parent[key]
            last = path[-1]
            if op == "$set":
                parent[last] = copy.deepcopy(value)
            elif op == "$inc":
                have = parent.get(last, 0)
                if isinstance(have, bool) or not isinstance(have, int | float):
                    raise Conflict(text)
                parent[last] = have + value
            elif op == "$push":
                have = parent.get(last, [])
                if not isinstance(have, list):
                    raise Conflict(text)
                parent[last] = [*have, copy.deepcopy(value)]
    return out


# -- generators -----------------------------------------------------------------------

SCALARS: list[Any] = [
    0,
    1,
    1.0,
    2,
    2.5,
    -1,
    0.001,
    "1",
    "a",
    "b",
    "adam",
    "sgd",
    "",
    True,
    False,
    None,
]
MIXED: list[Any] = [
    *SCALARS, [1, "a"], [[1]], [[1], 2], [], {"b": 1}, {"b": None}, {"c": 2},
    [{"b": 1}, {"b": 2}], [{"b": [1, 3]}], [{"c": 1}], [{"b": None}, 5], [None],
]  # fmt: skip
PATHS = [
    "params.lr", "params.opt", "params.layers", "params.sched.kind", "params.sched.warm",
    "tags", "metrics.auc", "metrics.loss", "flag", "a", "a.b", "a.c", "notes", "nope",
]  # fmt: skip


def _maybe(rng: random.Random, value: Any, missing: float = 0.15) -> Any:
    return _MISSING if rng.random() < missing else value


_MISSING = object()


def gen_docs(n: int, seed: int, experiments: int = 40, prefix: str = "") -> list[dict[str, Any]]:
    """``n`` nested run documents with missing fields, nulls, arrays (of scalars, of
    documents, of arrays) and mixed types at the same path."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        params = {
            "lr": _maybe(rng, rng.choice([0.001, 0.01, 0.1, 1, 2.5, "0.1", None, True, [0.1, 2]])),
            "opt": _maybe(rng, rng.choice(["adam", "sgd", "a", "b", None, 1])),
            "layers": _maybe(rng, rng.choice([[64, 32], [1, 2, 3], [], [[1]], 2, ["a", 1]])),
            "sched": _maybe(
                rng,
                rng.choice([
                    {"kind": "cos", "warm": 1}, {"kind": "step"}, [{"kind": "cos"}, {"warm": 2}],
                    {"kind": None, "warm": 2.5}, "none", None,
                ]),
            ),
        }  # fmt: skip
        doc = {
            "experiment": f"{prefix}exp{i % experiments}",
            "_id": f"{prefix}r{i:05d}",
            "params": {k: v for k, v in params.items() if v is not _MISSING},
            "tags": _maybe(
                rng, rng.choice([["a", "b"], ["b"], "a", None, [["a"]], [], ["sgd", 1]])
            ),
            "metrics": _maybe(
                rng,
                {
                    "auc": rng.choice([rng.randint(0, 100) / 100, None, "0.5", True]),
                    "loss": rng.choice([rng.random(), None, -1]),
                },
                0.1,
            ),
            "flag": _maybe(rng, rng.choice([True, False, 0, 1, None, "true"])),
            "a": _maybe(rng, rng.choice(MIXED), 0.2),
            "notes": _maybe(rng, rng.choice(["baseline", "a", "", None]), 0.5),
        }
        docs.append({k: v for k, v in doc.items() if v is not _MISSING})
    return docs


def value_pools(docs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The scalars found at each of :data:`PATHS` (so filters select some documents)."""
    pools: dict[str, list[Any]] = {}
    for path in PATHS:
        seen = {
            (type(c), c)
            for d in docs[:500]
            for c in _unwrap(_walk(d, path.split(".")))
            if not isinstance(c, dict | list)
        }
        pools[path] = sorted((c for _, c in seen), key=repr)
    return pools


def gen_filter(
    rng: random.Random, depth: int = 0, pools: dict[str, list[Any]] | None = None
) -> dict[str, Any]:
    """A filter of the supported operators over the documents' paths (values mostly
    from ``pools``, when given)."""
    roll = rng.random()
    if depth < 2 and roll < 0.2:
        op = rng.choice(["$and", "$or"])
        return {op: [gen_filter(rng, depth + 1, pools) for _ in range(rng.randint(1, 3))]}
    flt: dict[str, Any] = {}
    for _ in range(rng.choice([1, 1, 1, 2])):
        path = rng.choice(PATHS)
        flt[path] = _condition(rng, depth, (pools or {}).get(path) or SCALARS)
    return flt


def _condition(rng: random.Random, depth: int, pool: list[Any] = SCALARS) -> Any:
    value = rng.choice(pool if rng.random() < 0.7 else SCALARS)
    roll = rng.random()
    if roll < 0.25:
        return value  # implicit $eq
    op = rng.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$not"])
    if op in ("$gt", "$gte", "$lt", "$lte"):
        value = rng.choice([v for v in SCALARS if v is not None])
        cond: dict[str, Any] = {op: value}
        if rng.random() < 0.3:  # a range
            cond["$lt" if op.startswith("$g") else "$gt"] = rng.choice([0, 1, 2, "b", True])
        return cond
    if op in ("$in", "$nin"):
        choices = list({repr(v): v for v in [*pool, *SCALARS[:4]]}.values())
        return {op: rng.sample(choices, min(len(choices), rng.randint(0, 3)))}
    if op == "$exists":
        return {op: rng.random() < 0.5}
    if op == "$not":
        inner = _condition(rng, depth + 1, pool) if depth < 2 else {"$eq": value}
        if not (isinstance(inner, dict) and inner and all(k.startswith("$") for k in inner)):
            inner = {"$eq": inner}
        return {"$not": inner}
    return {op: value}


def gen_update(rng: random.Random) -> dict[str, Any]:
    """An update of the supported operators (paths never overlapping)."""
    update: dict[str, dict[str, Any]] = {}
    used: list[list[str]] = []
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(
            [
                "params.lr",
                "params.new.deep",
                "metrics.n",
                "tags",
                "a.b",
                "notes",
                "x",
                "x.y",
                "flag",
            ]
        ).split(".")
        if any(p[: len(path)] == path[: len(p)] for p in used):
            continue
        used.append(path)
        op = rng.choice(["$set", "$inc", "$push", "$unset"])
        value: Any = ""
        if op == "$set":
            value = rng.choice([1, "s", None, [1, 2], {"k": True}, 0.5])
        elif op == "$inc":
            value = rng.choice([1, -2, 0.5])
        elif op == "$push":
            value = rng.choice([1, "t", [3], {"k": 1}])
        update.setdefault(op, {})[".".join(path)] = value
    return update


def canonical(doc: Any) -> str:
    """A document as sorted JSON (for comparing documents read back)."""
    return json.dumps(doc, sort_keys=True)

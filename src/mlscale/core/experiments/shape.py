"""Sort, projection and aggregation pipeline documents as typed values, and the
projection applied to a fetched document (pure).

Sort order (MongoDB's brackets): missing and null < numbers < strings < documents <
arrays < booleans (false < true). The sort value of a path is the value reached
through documents only (an array on the way gives no value: it sorts as missing);
documents and arrays compare by their JSON text, not field by field as MongoDB does.
Ties, and results without a sort, come in ``_id`` order (C collation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ExperimentError, UnsupportedQuery
from .query import Node, Path, check_path, parse_filter

__all__ = [
    "ACCUMULATORS",
    "STAGES",
    "Accumulator",
    "Group",
    "Pipeline",
    "Projection",
    "SortKey",
    "apply_projection",
    "parse_limit",
    "parse_pipeline",
    "parse_projection",
    "parse_sort",
]

STAGES = ("$match", "$group", "$sort", "$limit")
ACCUMULATORS = ("$sum", "$avg", "$min", "$max", "$count")


@dataclass(frozen=True)
class SortKey:
    """Sort by ``path`` (ascending unless ``descending``)."""

    path: Path
    descending: bool = False


@dataclass(frozen=True)
class Projection:
    """Keep only ``paths`` (``include``) or drop them; ``with_id``: keep ``_id``."""

    include: bool
    paths: tuple[Path, ...]
    with_id: bool = True


@dataclass(frozen=True)
class Accumulator:
    """Output field ``name`` of a group: ``kind`` is ``sum``, ``avg``, ``min``, ``max``
    or ``count``, over the numbers at ``path`` (or ``constant`` per document, for
    ``{"$sum": 1}``). Values that are not numbers are skipped, as MongoDB's $sum and
    $avg do; $min and $max here consider numbers only."""

    name: str
    kind: str
    path: Path | None = None
    constant: int | float | None = None


@dataclass(frozen=True)
class Group:
    """``$group`` by the value at ``key`` (None: one group of every document)."""

    key: Path | None
    accumulators: tuple[Accumulator, ...]


@dataclass(frozen=True)
class Pipeline:
    """``$match`` then ``$group`` then ``$sort`` then ``$limit``, each optional."""

    match: Node
    group: Group | None
    sort: tuple[SortKey, ...]
    limit: int | None


def parse_sort(sort: Mapping[str, int] | Sequence[tuple[str, int]] | None) -> tuple[SortKey, ...]:
    """Sort keys from ``{"path": 1 | -1, ...}`` or ``[("path", 1 | -1), ...]``."""
    if sort is None:
        return ()
    items = list(sort.items()) if isinstance(sort, Mapping) else list(sort)
    keys: list[SortKey] = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ExperimentError(f"a sort key is (path, 1 or -1), not {item!r}")
        path, direction = item
        if direction not in (1, -1) or isinstance(direction, bool):
            raise UnsupportedQuery(
                f"sort {path!r}: direction {direction!r} (1 or -1 only)", operator="$sort"
            )
        keys.append(SortKey(check_path(path, "sort path"), direction == -1))
    return tuple(keys)


def parse_limit(limit: object) -> int | None:
    """A limit: None or 0 (no limit, as MongoDB) or a positive int."""
    if limit is None or limit == 0:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ExperimentError(f"a limit is a non-negative int, not {limit!r}")
    return limit


def parse_projection(projection: Mapping[str, Any] | None) -> Projection | None:
    """A projection: ``{"a.b": 1, ...}`` keeps those paths, ``{"a": 0, ...}`` drops
    them; ``_id`` is kept unless ``"_id": 0``. Mixing 1 and 0 (other than for
    ``_id``) is refused, as MongoDB does."""
    if not projection:
        return None
    with_id = True
    include: bool | None = None
    paths: list[Path] = []
    for text, flag in projection.items():
        if isinstance(flag, Mapping):
            raise UnsupportedQuery(
                f"projection {text!r}: operators in projections are not supported",
                operator=str(next(iter(flag), "$")),
            )
        if not isinstance(flag, bool | int) or flag not in (0, 1):
            raise ExperimentError(f"projection {text!r}: 1 or 0, not {flag!r}")
        if text == "_id":
            with_id = bool(flag)
            continue
        if include is not None and include != bool(flag):
            raise ExperimentError("a projection cannot both include and exclude paths")
        include = bool(flag)
        paths.append(check_path(text, "projection path"))
    if include is None:  # only _id named
        return Projection(include=with_id, paths=(), with_id=with_id)
    return Projection(include=include, paths=tuple(paths), with_id=with_id)


def apply_projection(doc: Mapping[str, Any], projection: Projection | None) -> dict[str, Any]:
    """``doc`` as ``projection`` shapes it (a path applies to every document element
    of an array it meets, as MongoDB's projection does)."""
    if projection is None:
        return dict(doc)
    if projection.include:
        out: dict[str, Any] = _keep(doc, [p for p in projection.paths if p != ("_id",)])
        if projection.with_id and "_id" in doc:
            out = {"_id": doc["_id"], **{k: v for k, v in out.items() if k != "_id"}}
        return out
    out = dict(_drop(doc, list(projection.paths)))
    if not projection.with_id:
        out.pop("_id", None)
    return out


def _keep(value: Any, paths: list[Path]) -> Any:
    if isinstance(value, list):
        return [_keep(v, paths) for v in value if isinstance(v, Mapping | list)]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        rests = [p[1:] for p in paths if p[0] == key]
        if not rests:
            continue
        if any(not r for r in rests):
            out[key] = item
            continue
        if isinstance(item, Mapping | list):
            out[key] = _keep(item, rests)
    return out


def _drop(value: Any, paths: list[Path]) -> Any:
    if isinstance(value, list):
        return [_drop(v, paths) for v in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        rests = [p[1:] for p in paths if p[0] == key]
        if any(not r for r in rests):
            continue
        out[key] = _drop(item, rests) if rests else item
    return out


def parse_pipeline(stages: Sequence[Mapping[str, Any]]) -> Pipeline:
    """A pipeline of ``$match``, ``$group``, ``$sort``, ``$limit`` stages, each at most
    once and in that order; UnsupportedQuery naming any other stage or order."""
    if isinstance(stages, Mapping | str) or not isinstance(stages, Sequence):
        raise ExperimentError("a pipeline is a list of stage documents")
    seen: list[str] = []
    match: Node = parse_filter(None)
    group: Group | None = None
    sort: tuple[SortKey, ...] = ()
    limit: int | None = None
    for stage in stages:
        if not isinstance(stage, Mapping) or len(stage) != 1:
            raise ExperimentError(f"a stage is a document of one stage operator, not {stage!r}")
        ((name, body),) = stage.items()
        if name not in STAGES:
            raise UnsupportedQuery(
                f"unsupported pipeline stage {name} (supported: {', '.join(STAGES)})",
                operator=str(name),
            )
        if name in seen or any(STAGES.index(s) > STAGES.index(name) for s in seen):
            raise UnsupportedQuery(
                f"pipeline stage {name} after {', '.join(seen)}: stages are supported once "
                f"each, in the order {', '.join(STAGES)}",
                operator=name,
            )
        seen.append(name)
        if name == "$match":
            match = parse_filter(body)
        elif name == "$group":
            group = _group(body)
        elif name == "$sort":
            if not isinstance(body, Mapping) or not body:
                raise ExperimentError("$sort takes a non-empty document of paths")
            sort = parse_sort(body)
            if group is not None:
                names = {"_id", *(a.name for a in group.accumulators)}
                for key in sort:
                    if len(key.path) != 1 or key.path[0] not in names:
                        raise UnsupportedQuery(
                            f"$sort after $group by {'.'.join(key.path)}: sort by _id or an "
                            "accumulator's name",
                            operator="$sort",
                        )
        else:
            limit = parse_limit(body)
            if limit is None:
                raise ExperimentError("$limit takes a positive int")
    return Pipeline(match, group, sort, limit)


def _group(body: object) -> Group:
    if not isinstance(body, Mapping) or "_id" not in body:
        raise ExperimentError("$group takes a document with an _id")
    key_spec = body["_id"]
    if key_spec is None:
        key: Path | None = None
    elif isinstance(key_spec, str) and key_spec.startswith("$"):
        key = check_path(key_spec[1:], "$group _id")
    else:
        raise UnsupportedQuery(
            f"$group _id {key_spec!r}: group by null or by one field path ('$a.b')",
            operator="$group",
        )
    accumulators: list[Accumulator] = []
    for name, spec in body.items():
        if name == "_id":
            continue
        if not isinstance(name, str) or not name or name.startswith("$") or "." in name:
            raise ExperimentError(f"$group output name {name!r} is not a plain field name")
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ExperimentError(f"$group {name}: one accumulator, e.g. {{'$sum': '$a'}}")
        ((op, arg),) = spec.items()
        if op not in ACCUMULATORS:
            raise UnsupportedQuery(
                f"unsupported accumulator {op} in $group {name} "
                f"(supported: {', '.join(ACCUMULATORS)})",
                operator=str(op),
            )
        kind = op[1:]
        if kind == "count":
            if arg != {}:
                raise ExperimentError(f"$group {name}: $count takes {{}}")
            accumulators.append(Accumulator(name, "count"))
        elif isinstance(arg, str) and arg.startswith("$"):
            accumulators.append(Accumulator(name, kind, check_path(arg[1:], f"{op} path")))
        elif kind == "sum" and isinstance(arg, int | float) and not isinstance(arg, bool):
            accumulators.append(Accumulator(name, "sum", constant=arg))
        else:
            raise UnsupportedQuery(
                f"$group {name}: {op} {arg!r} (a field path '$a.b', or a number for $sum)",
                operator=str(op),
            )
    return Group(key, tuple(accumulators))

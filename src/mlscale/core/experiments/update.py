"""Update documents (``$set $inc $push $unset``) as typed operations.

Semantics (MongoDB's, with the limits noted): operators apply in the order given;
``$set`` and ``$inc`` and ``$push`` create missing documents on the way; meeting a
value on the way that is not a document (a number, a string, null, an array) is an
error for the whole call, as in MongoDB (nothing is written). ``$inc`` on a missing
field sets it to the increment; on a non-number it is an error; sums are exact
decimals (PostgreSQL numeric: 0.1 + 0.2 is 0.3). ``$push`` appends one value (an
array is pushed as one element) to an array, or makes ``[value]``; on a non-array it
is an error. ``$unset`` removes the field; a path through a non-document changes
nothing. Two operations on the same path, or on a path and one inside it, are
refused (MongoDB's "would create a conflict"). ``_id`` and ``experiment`` (the
shard key) cannot be changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import ExperimentError, UnsupportedQuery
from .query import Path, check_path

__all__ = ["PROTECTED", "UPDATE_OPERATORS", "UpdateOp", "check_json", "parse_update"]

UPDATE_OPERATORS = ("$set", "$inc", "$push", "$unset")
PROTECTED = ("_id", "experiment")


@dataclass(frozen=True)
class UpdateOp:
    """One operation: ``kind`` is ``set``, ``inc``, ``push`` or ``unset``; ``value`` the
    JSON value (the increment for ``inc``; None for ``unset``)."""

    kind: str
    path: Path
    value: Any = None


def parse_update(document: Mapping[str, Any]) -> tuple[UpdateOp, ...]:
    """The operations of an update document; UnsupportedQuery naming an operator not
    supported (or a replacement document), ExperimentError for malformed ones."""
    if not isinstance(document, Mapping) or not document:
        raise ExperimentError("an update must be a non-empty document of update operators")
    ops: list[UpdateOp] = []
    for op, fields in document.items():
        if not isinstance(op, str) or not op.startswith("$"):
            raise UnsupportedQuery(
                f"replacement documents are not supported ({op!r} is not an update "
                f"operator; use {', '.join(UPDATE_OPERATORS)})",
                operator=str(op),
            )
        if op not in UPDATE_OPERATORS:
            raise UnsupportedQuery(
                f"unsupported update operator {op} (supported: {', '.join(UPDATE_OPERATORS)})",
                operator=op,
            )
        if not isinstance(fields, Mapping) or not fields:
            raise ExperimentError(f"{op} takes a non-empty document of paths")
        for text, value in fields.items():
            path = check_path(text, f"{op} path")
            if path[0] in PROTECTED:
                raise ExperimentError(f"{op} {text}: {path[0]!r} cannot be changed")
            ops.append(_op(op, path, value))
    _check_conflicts(ops)
    return tuple(ops)


def _op(op: str, path: Path, value: Any) -> UpdateOp:
    name = ".".join(path)
    if op == "$unset":
        return UpdateOp("unset", path)
    if op == "$inc":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ExperimentError(f"$inc {name}: the increment must be a number, not {value!r}")
        check_json(value, f"$inc {name}")
        return UpdateOp("inc", path, value)
    if (
        op == "$push"
        and isinstance(value, Mapping)
        and any(isinstance(k, str) and k.startswith("$") for k in value)
    ):
        modifier = next(k for k in value if isinstance(k, str) and k.startswith("$"))
        raise UnsupportedQuery(
            f"$push {name}: modifier {modifier} is not supported", operator=modifier
        )
    check_json(value, f"{op} {name}")
    return UpdateOp("set" if op == "$set" else "push", path, value)


def _check_conflicts(ops: Sequence[UpdateOp]) -> None:
    for i, a in enumerate(ops):
        for b in ops[i + 1 :]:
            short = min(len(a.path), len(b.path))
            if a.path[:short] == b.path[:short]:
                raise ExperimentError(
                    f"updating {'.'.join(a.path)} and {'.'.join(b.path)} in one call would "
                    "conflict (one is, or is inside, the other)"
                )


def check_json(value: Any, what: str) -> None:
    """ExperimentError unless ``value`` is JSON a document can hold: dicts with string
    keys that neither start with ``$`` nor contain ``.``, lists, strings, finite
    numbers, booleans, null."""
    if value is None or isinstance(value, bool | str | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExperimentError(f"{what}: {value!r} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
                raise ExperimentError(
                    f"{what}: key {key!r} (keys are non-empty strings without a leading $ or a '.')"
                )
            check_json(item, what)
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_json(item, what)
        return
    raise ExperimentError(f"{what}: {type(value).__name__} {value!r} is not JSON")

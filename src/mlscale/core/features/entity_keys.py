"""The entity keys of an online read, checked and put in columns (no I/O).

``entity_ids`` comes in one of these shapes, and anything else is a
:class:`~mlscale.errors.FeatureError` saying what was expected and which rows are
wrong (never a numpy ``ValueError``):

- one entity column: a sequence (list, tuple, numpy array, pandas Series) of scalar
  keys, one per entity;
- several entity columns (a composite key): a sequence of tuples or lists, each as
  wide as the view has entity columns, in the view's order; or a 2-D numpy array of
  that width;
- either: a mapping (or a DataFrame) of entity column name to its keys, all of one
  length.

Integer keys must be integers in their type's range (not floats, bools or strings:
a cast would read another entity); text keys strings PostgreSQL can store (no NUL
character, no lone surrogate); uuid keys uuids or strings that parse as one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import FeatureError
from ..keycolumns import INT_RANGES, rows_text
from ..slots import KeyType
from .spec import FeatureView

__all__ = ["keys_of"]

# Containers that are never one key: a key inside one is a nesting mistake.
_NESTED = (list, tuple, set, frozenset, dict, np.ndarray)


def keys_of(view: FeatureView, entity_ids: Any) -> dict[str, npt.NDArray[Any]]:
    """The request's keys as one array per entity column of ``view`` (int64 for
    integer keys, str objects for text and uuid keys), checked (see the module
    docstring)."""
    names = view.entity_names
    if entity_ids is None:
        raise FeatureError(f"entity_ids is missing: give the keys of {_expected(names)}")
    if isinstance(entity_ids, str | bytes):
        raise FeatureError(
            f"entity_ids is one {type(entity_ids).__name__} value, not a sequence: give a "
            f"list of keys of {_expected(names)}"
        )
    if isinstance(entity_ids, Mapping) or _is_frame(entity_ids):
        cols = _from_mapping(entity_ids, names)
    elif len(names) == 1:
        cols = {names[0]: _column(_listed(entity_ids, names), names[0])}
    else:
        cols = _from_rows(entity_ids, names)
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        shown = ", ".join(f"{n}: {len(v)}" for n, v in cols.items())
        raise FeatureError(f"entity_ids: the entity columns have different lengths ({shown})")
    return {e.name: _typed(cols[e.name], e.name, e.key_type) for e in view.entities}


def _expected(names: Sequence[str]) -> str:
    if len(names) == 1:
        return f"entity {names[0]!r}"
    return f"entities ({', '.join(names)}) as tuples, or a mapping of column to keys"


def _is_frame(value: Any) -> bool:
    return hasattr(value, "columns") and hasattr(value, "__getitem__") and hasattr(value, "iloc")


def _listed(entity_ids: Any, names: Sequence[str]) -> Any:
    """``entity_ids`` as something numpy can take whole (a list if it is a mere
    iterable), or a FeatureError if it is not a collection of keys."""
    if isinstance(entity_ids, np.ndarray | Sequence) or hasattr(entity_ids, "to_numpy"):
        return entity_ids
    if isinstance(entity_ids, Iterable):
        return list(entity_ids)
    raise FeatureError(
        f"entity_ids must be a sequence of keys of {_expected(names)}; "
        f"got {type(entity_ids).__name__} {entity_ids!r:.60}"
    )


def _column(values: Any, name: str) -> npt.NDArray[Any]:
    """One entity column's keys as a 1-D array; a FeatureError naming the rows that
    are not scalar keys (a tuple or list where a key was expected)."""
    if hasattr(values, "to_numpy"):  # a pandas Series: its own values, no copy
        values = values.to_numpy()
    if isinstance(values, np.ndarray):
        arr = values
    else:
        seq = list(values)
        try:
            arr = np.asarray(seq)
        except (ValueError, TypeError):  # ragged nesting: numpy refuses the shape
            nested = np.fromiter((isinstance(v, _NESTED) for v in seq), bool, len(seq))
            where = f"; {rows_text(nested)} hold a tuple or list" if nested.any() else ""
            raise FeatureError(
                f"entity_ids: one key per entity of {name!r} expected{where} (a composite "
                "key for a view with one entity column?)"
            ) from None
    if arr.ndim != 1:
        raise FeatureError(
            f"entity_ids: one key per entity of {name!r} expected, got an array of shape "
            f"{arr.shape} (a tuple or list where a key belongs?)"
        )
    if arr.dtype == object and arr.size:
        nested = np.fromiter((isinstance(v, _NESTED) for v in arr.tolist()), bool, arr.size)
        if nested.any():
            raise FeatureError(
                f"entity_ids: one key per entity of {name!r} expected; "
                f"{rows_text(nested)} hold a tuple, list or mapping"
            )
    return arr


def _from_mapping(entity_ids: Any, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    given = set(map(str, entity_ids.keys() if isinstance(entity_ids, Mapping) else entity_ids))
    missing = [n for n in names if n not in given]
    if missing:
        raise FeatureError(
            f"entity_ids lacks entity column(s) {', '.join(missing)} (given: "
            f"{', '.join(sorted(given)) or 'none'})"
        )
    out = {}
    for n in names:
        value = entity_ids[n]
        many = isinstance(value, np.ndarray | Sequence) or hasattr(value, "to_numpy")
        if not many or isinstance(value, str | bytes) or getattr(value, "ndim", 1) == 0:
            raise FeatureError(
                f"entity_ids[{n!r}] must be a sequence of keys, got "
                f"{type(value).__name__} {value!r:.60}"
            )
        out[n] = _column(_listed(value, [n]), n)
    return out


def _from_rows(entity_ids: Any, names: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    width = len(names)
    if isinstance(entity_ids, np.ndarray) and entity_ids.ndim == 2:
        if entity_ids.shape[1] != width:
            raise FeatureError(
                f"entity_ids: an array of shape {entity_ids.shape}; {width} columns "
                f"({', '.join(names)}) expected"
            )
        return {n: _column(entity_ids[:, i], n) for i, n in enumerate(names)}
    rows = list(_listed(entity_ids, names))
    shaped = np.fromiter(
        (isinstance(r, tuple | list) and len(r) == width for r in rows), bool, len(rows)
    )
    if not shaped.all():
        scalar = np.fromiter((not isinstance(r, tuple | list) for r in rows), bool, len(rows))
        if scalar.any():
            why = f"{rows_text(scalar)} are single values, not tuples"
        else:
            why = f"{rows_text(~shaped)} are not {width} wide"
        raise FeatureError(
            f"entity_ids: tuples of ({', '.join(names)}) expected, one per entity; {why}"
        )
    return {n: _column([r[i] for r in rows], n) for i, n in enumerate(names)}


def _typed(arr: npt.NDArray[Any], name: str, kt: KeyType) -> npt.NDArray[Any]:
    """One column's keys in the type the read sends, checked against ``kt``."""
    if not arr.size:
        return np.zeros(0, dtype=np.int64) if kt.is_integer else np.zeros(0, dtype=object)
    values = arr.tolist() if arr.dtype == object else None
    if values is not None:
        missing = np.fromiter((v is None for v in values), bool, len(values))
        if missing.any():
            raise FeatureError(
                f"entity {name!r}: the key is missing (None) in {rows_text(missing)}"
            )
    if kt.is_integer:
        if arr.dtype.kind not in "iu":
            if values is None or not all(type(v) is int for v in values):
                raise FeatureError(
                    f"entity {name!r} is {kt}; the keys given are {arr.dtype} (integers expected)"
                )
            try:
                arr = np.asarray(values, dtype=np.int64)
            except OverflowError:
                raise FeatureError(f"entity {name!r}: a key is out of range for {kt}") from None
        lo, hi = INT_RANGES[kt]
        if arr.dtype.kind == "u" and arr.max() > hi:
            raise FeatureError(f"entity {name!r}: a key is out of range for {kt}")
        out = arr.astype(np.int64)
        bad = (out < lo) | (out > hi)
        if bad.any():
            raise FeatureError(f"entity {name!r}: key out of range for {kt} in {rows_text(bad)}")
        return out
    values = arr.tolist()
    if kt is KeyType.TEXT:
        wrong = np.fromiter((type(v) is not str for v in values), bool, len(values))
        if wrong.any():
            raise FeatureError(
                f"entity {name!r} is text; the keys in {rows_text(wrong)} are not strings"
            )
        unstorable = np.fromiter((not _storable(v) for v in values), bool, len(values))
        if unstorable.any():
            raise FeatureError(
                f"entity {name!r}: the keys in {rows_text(unstorable)} hold a NUL character "
                "or a lone surrogate, which PostgreSQL cannot store"
            )
        return np.asarray(values, dtype=object)
    bad = np.fromiter((not _is_uuid(v) for v in values), bool, len(values))
    if bad.any():
        raise FeatureError(f"entity {name!r} is {kt}; the keys in {rows_text(bad)} are not uuids")
    return np.asarray([str(v) for v in values], dtype=object)


def _storable(text: str) -> bool:
    if text.isascii():
        return "\x00" not in text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def _is_uuid(value: Any) -> bool:
    if isinstance(value, uuid.UUID):
        return True
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True

"""Key columns of a batch as numpy arrays, checked: what the feature store's pushes and
the prediction log's writes share. No I/O.

A pandas column of integer keys becomes one int64 array, with the first rows that are
out of the key type's range named; anything else than integers is refused, not cast
(a float key would round, a string key would hash to another slot).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import MlscaleError
from .slots import KeyType

__all__ = ["INT_RANGES", "integer_keys", "rows_text"]

INT_RANGES: dict[KeyType, tuple[int, int]] = {
    KeyType.INT8: (-(2**63), 2**63 - 1),
    KeyType.INT4: (-(2**31), 2**31 - 1),
    KeyType.INT2: (-(2**15), 2**15 - 1),
}


def rows_text(mask: npt.NDArray[np.bool_]) -> str:
    """The rows where ``mask`` is true, in words: the first five and how many in all."""
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:5].tolist())
    return f"row(s) {shown}{' ...' if idx.size > 5 else ''} ({idx.size} in all)"


def integer_keys(
    series: Any, key_type: KeyType, *, where: str, what: str, error: type[MlscaleError]
) -> npt.NDArray[np.int64]:
    """The non-null pandas ``series`` of ``key_type`` (one of :data:`INT_RANGES`) as int64;
    ``error`` naming ``what`` (e.g. "entity 'user_id'") at ``where`` when a value is not
    an integer or is out of the type's range."""
    kind = series.dtype.kind
    if kind in "iu":
        arr = series.to_numpy()
    elif kind == "O" and all(type(v) is int for v in series.tolist()):
        try:
            arr = np.asarray(series.tolist(), dtype=np.int64)
        except OverflowError:
            raise error(f"{where}: {what}: a key is out of range for {key_type}") from None
    else:
        raise error(
            f"{where}: {what} is {key_type}; the column is {series.dtype} (integers expected)"
        )
    lo, hi = INT_RANGES[key_type]
    if arr.dtype.kind == "u" and arr.size and arr.max() > hi:
        raise error(f"{where}: {what}: a key is out of range for {key_type}")
    out: npt.NDArray[np.int64] = arr.astype(np.int64)
    bad = (out < lo) | (out > hi)
    if bad.any():
        raise error(f"{where}: {what}: key out of range for {key_type} in {rows_text(bad)}")
    return out

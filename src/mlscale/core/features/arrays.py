"""PostgreSQL arrays in their binary form (``array_send``, binary COPY), to and from numpy.

The binary form is a header (dimensions, a has-NULL flag, the element type) and
then, per element, a 4-byte length (-1 for NULL) and the element's bytes, big-endian.
Fixed-width elements with no NULL sit at a fixed stride, so numpy reads and writes
them as a structured array, without a Python loop; NULLs take the slow path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PG_EPOCH_US", "Decoded", "decode", "element_dtype", "encode_header"]

# timestamptz is microseconds since 2000-01-01 UTC; numpy counts from 1970.
PG_EPOCH_US = 946_684_800_000_000

_OIDS = {
    "bool": 16,
    "int4": 23,
    "int8": 20,
    "float4": 700,
    "float8": 701,
    "text": 25,
    "timestamptz": 1184,
}
_DTYPES: dict[int, np.dtype[Any]] = {
    16: np.dtype("?"),
    23: np.dtype(">i4"),
    20: np.dtype(">i8"),
    700: np.dtype(">f4"),
    701: np.dtype(">f8"),
    1184: np.dtype(">i8"),
}


_HEAD = struct.Struct(">iii")
_INT = struct.Struct(">i")
_RECORDS: dict[int, np.dtype[Any]] = {
    oid: np.dtype([("n", ">i4"), ("v", dt)]) for oid, dt in _DTYPES.items()
}


def element_dtype(oid: int) -> np.dtype[Any] | None:
    """The big-endian numpy dtype of an element type (None: variable width)."""
    return _DTYPES.get(oid)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A decoded array: ``values`` shaped by its dimensions (native byte order),
    ``valid`` False where an element was NULL (None when none was)."""

    values: npt.NDArray[Any]
    valid: npt.NDArray[np.bool_] | None


def decode(data: bytes | memoryview | None) -> Decoded | None:
    """An ``array_send`` value as numpy (None for a NULL or an empty array); text
    elements come back as an object array of str."""
    if data is None:
        return None
    mv = memoryview(data)
    ndim, has_null, oid = _HEAD.unpack_from(mv, 0)
    if ndim == 0:
        return None
    dims = [_INT.unpack_from(mv, 12 + 8 * d)[0] for d in range(ndim)]
    off = 12 + 8 * ndim
    count = dims[0] if ndim == 1 else dims[0] * dims[1] if ndim == 2 else int(np.prod(dims))
    dtype = _DTYPES.get(oid)
    if dtype is not None and not has_null:
        values = np.frombuffer(mv, dtype=_RECORDS[oid], count=count, offset=off)["v"]
        return Decoded(values.astype(dtype.newbyteorder("=")).reshape(dims), None)
    return _slow(mv, off, count, dims, dtype)


def _slow(
    mv: memoryview, off: int, count: int, dims: list[int], dtype: np.dtype[Any] | None
) -> Decoded:
    """Element by element: NULLs, or variable-width (text) elements."""
    valid = np.ones(count, dtype=bool)
    out: npt.NDArray[Any] = (
        np.empty(count, dtype=object) if dtype is None else np.zeros(count, dtype.newbyteorder("="))
    )
    for i in range(count):
        (n,) = _INT.unpack_from(mv, off)
        off += 4
        if n < 0:
            valid[i] = False
            continue
        raw = mv[off : off + n]
        out[i] = bytes(raw).decode() if dtype is None else np.frombuffer(raw, dtype=dtype)[0]
        off += n
    return Decoded(out.reshape(dims), valid.reshape(dims))


def encode_header(oid_name: str, length: int) -> bytes:
    """The header of a one-dimensional array of ``length`` elements with no NULL."""
    return struct.pack(">iiiii", 1, 0, _OIDS[oid_name], length, 1)

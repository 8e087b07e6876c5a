"""Binary COPY streams built by hand, as PostgreSQL sends them, for decoder tests."""

from __future__ import annotations

import struct
from collections.abc import Sequence

from mlscale.core.copydecode import SIGNATURE

__all__ = ["array_value", "stream"]

_HEADER = SIGNATURE + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


def stream(rows: Sequence[Sequence[bytes | None]]) -> bytes:
    """A binary COPY stream of ``rows``, each a sequence of field bytes (None: NULL)."""
    out = bytearray(_HEADER)
    for row in rows:
        out += struct.pack(">h", len(row))
        for field in row:
            if field is None:
                out += struct.pack(">i", -1)
            else:
                out += struct.pack(">i", len(field)) + field
    return bytes(out + _TRAILER)


def array_value(elements: Sequence[bytes | None], oid: int) -> bytes:
    """A 1-D array's binary form (lower bound 1) of element bytes (None: NULL)."""
    if not elements:
        return struct.pack(">iii", 0, 0, oid)
    has_nulls = int(any(e is None for e in elements))
    out = bytearray(struct.pack(">iiiii", 1, has_nulls, oid, len(elements), 1))
    for e in elements:
        out += struct.pack(">i", -1) if e is None else struct.pack(">i", len(e)) + e
    return bytes(out)

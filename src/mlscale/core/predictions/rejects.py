"""Predictions the server refused for good, set aside by the writer: which errors are
permanent, and the refused rows read back from their binary COPY bytes. No I/O.

A group write that fails is tried again while the failure may pass (a connection
lost, a node restarting, a conflict, the server short of resources). Only the
failures that the same rows would meet again on every try are *permanent*; their
part is then sifted (see ``stores/predictions/flush_async.py``): the rows the server
takes are written, the ones it refuses are set aside as :class:`RejectedPrediction`.
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from ...errors import QueryError
from ..plain import plain_dict
from ..slots import KeyType

__all__ = [
    "RejectedPrediction",
    "copy_line",
    "is_permanent",
    "no_partition",
    "read_row",
    "rejected_from_copy",
]

# SQLSTATEs a row meets again on every try (PostgreSQL's errcodes, Appendix A):
# class 22 data exception (a value the type refuses: a NUL in text, an invalid
# JSON escape, a time out of range, ...), 23502 not null, 23503 foreign key, 23514
# check (but not "no partition ... found for row", which shares the code and is
# cured by making the day's partition), 23P01 exclusion, 54000 program limit
# exceeded (a value too large). Everything else is retried: 08 connection, 40001/40P01
# conflicts, 53 insufficient resources, 57P0x shutdown, and any error not listed
# (a row is never set aside for a failure that might pass).
PERMANENT_CODES = frozenset({"23502", "23503", "23514", "23P01", "54000"})
PERMANENT_CLASSES = ("22",)
_NO_PARTITION = "no partition of relation"
_COPY_LINE = re.compile(r"\bCOPY \S+, line (\d+)")


def no_partition(exc: BaseException) -> bool:
    """Whether ``exc`` is the server finding no partition for a row (23514 with that
    message): the writer makes the day's partition and tries again."""
    return isinstance(exc, QueryError) and exc.sqlstate == "23514" and _NO_PARTITION in str(exc)


def is_permanent(exc: BaseException) -> bool:
    """Whether a group write's ``exc`` is the server refusing some of its rows for good
    (see :data:`PERMANENT_CODES`): its part is sifted instead of tried again."""
    if not isinstance(exc, QueryError) or exc.sqlstate is None:
        return False
    code = exc.sqlstate
    if code == "23514":
        return not no_partition(exc)
    return code in PERMANENT_CODES or code.startswith(PERMANENT_CLASSES)


def copy_line(exc: BaseException) -> int | None:
    """The row (1-based) of a COPY the server named in ``exc``'s context ("COPY t, line
    N"), if it did: a hint of which row it refused, to be confirmed."""
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    context = getattr(diag, "context", None) or ""
    found = _COPY_LINE.search(context)
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class RejectedPrediction:
    """A prediction the server refused for good, set aside (not written): its values as
    sent, the shard ``group`` it was sent to, the server's ``sqlstate`` and ``error``
    (one line). ``extra`` is the JSON text sent; ``ts`` None if it is out of Python's
    range."""

    prediction_id: uuid.UUID
    entity: Any
    ts: dt.datetime | None
    score: float | None
    model: str
    model_version: str
    predicted: str | None
    extra: str | None
    group: str
    sqlstate: str | None
    error: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data (ids and times as strings)."""
        return plain_dict(self)


_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_INT = {KeyType.INT8: ">q", KeyType.INT4: ">i", KeyType.INT2: ">h"}


def read_row(key_type: KeyType, raw: bytes) -> list[bytes | None]:
    """The fields of one binary COPY row (``raw``: from its field count on), None for
    NULL."""
    (fields,) = struct.unpack_from(">h", raw, 0)
    pos = 2
    out: list[bytes | None] = []
    for _ in range(fields):
        (length,) = struct.unpack_from(">i", raw, pos)
        pos += 4
        if length < 0:
            out.append(None)
            continue
        out.append(raw[pos : pos + length])
        pos += length
    return out


def rejected_from_copy(
    key_type: KeyType, raw: bytes, group: str, exc: BaseException
) -> RejectedPrediction:
    """The prediction in binary COPY row ``raw`` (the writer's column order), refused
    on ``group`` with ``exc``."""
    entity, pid, ts, score, model, version, predicted, extra = read_row(key_type, raw)
    assert entity is not None and pid is not None and ts is not None  # never NULL
    if key_type in _INT:
        key: Any = struct.unpack(_INT[key_type], entity)[0]
    elif key_type is KeyType.UUID:
        key = uuid.UUID(bytes=entity)
    else:
        key = entity.decode("utf-8", "replace")
    try:
        at: dt.datetime | None = _PG_EPOCH + dt.timedelta(microseconds=struct.unpack(">q", ts)[0])
    except OverflowError:
        at = None
    return RejectedPrediction(
        prediction_id=uuid.UUID(bytes=pid),
        entity=key,
        ts=at,
        score=None if score is None else struct.unpack(">d", score)[0],
        model=(model or b"").decode("utf-8", "replace"),
        model_version=(version or b"").decode("utf-8", "replace"),
        predicted=None if predicted is None else predicted.decode("utf-8", "replace"),
        extra=None if extra is None else extra[1:].decode("utf-8", "replace"),
        group=group,
        sqlstate=getattr(exc, "sqlstate", None),
        error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
    )

"""A vector batch as arrays, before any of it is written: ids of the collection's type,
the last row of a repeated id, metadata as JSON text, each row's shard group, and the
binary COPY payload for a group's stage. Pure (no I/O), so both clients share it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ...core.copybinary import CopyColumn, PgType, encode_copy
from ...core.sharding import group_indexes
from ...core.vectors.spec import Collection, IdType
from ...errors import VectorError

__all__ = ["id_array", "id_param", "last_of_each", "metadata_json", "payload", "place"]


def id_array(spec: Collection, ids: Any) -> npt.NDArray[Any]:
    """Ids as an array of the collection's type (int64, or objects: str / UUID)."""
    if spec.id_type is IdType.INT8:
        arr = np.asarray(ids)
        if arr.size and arr.dtype.kind not in "iu":
            raise VectorError(f"collection {spec.name!r}: ids must be integers (int8)")
        return arr.astype(np.int64).reshape(-1)
    out = np.empty(len(ids), dtype=object)
    for i, key in enumerate(ids):
        if spec.id_type is IdType.TEXT:
            if not isinstance(key, str):
                raise VectorError(f"collection {spec.name!r}: ids must be str (got {key!r})")
            out[i] = key
        else:
            try:
                out[i] = key if isinstance(key, uuid.UUID) else uuid.UUID(str(key))
            except ValueError:
                raise VectorError(f"collection {spec.name!r}: {key!r} is not a uuid") from None
    return out


def id_param(spec: Collection, key: Any) -> Any:
    """``key`` as a bound parameter of the delete (uuids as text)."""
    return str(key) if spec.id_type is IdType.UUID else key


def last_of_each(keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Positions of the last occurrence of each key, in first-seen order."""
    last = {k: i for i, k in enumerate(keys.tolist())}
    if len(last) == len(keys):
        return np.arange(len(keys), dtype=np.int64)
    return np.fromiter(sorted(last.values()), dtype=np.int64, count=len(last))


def metadata_json(
    spec: Collection, metadata: Sequence[Mapping[str, Any] | None] | None, n: int
) -> npt.NDArray[Any]:
    """The ``n`` rows' metadata as compact JSON text (None: ``{}``); VectorError names
    the first row that is not a JSON object."""
    out = np.empty(n, dtype=object)
    if metadata is None:
        out[:] = "{}"
        return out
    for i, doc in enumerate(metadata):
        if doc is None:
            out[i] = "{}"
            continue
        if not isinstance(doc, Mapping):
            raise VectorError(f"collection {spec.name!r}: metadata must be dicts (row {i})")
        try:
            out[i] = json.dumps(doc, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise VectorError(
                f"collection {spec.name!r}: metadata of row {i} is not JSON ({exc})"
            ) from None
    return out


def place(shard_map: Any, keys: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """The index in ``shard_map.groups`` of each key's group."""
    return group_indexes(shard_map, keys.tolist())


def payload(
    spec: Collection, keys: npt.NDArray[Any], mat: npt.NDArray[np.float32], docs: npt.NDArray[Any]
) -> bytes:
    """The rows as one binary COPY payload for the stage (id, embedding, metadata)."""
    n = len(keys)
    # pgvector's binary form: int16 dim, int16 unused (0), dim float4, big-endian.
    raw = np.empty((n, 4 + 4 * spec.dim), dtype=np.uint8)
    raw[:, :2] = np.frombuffer(np.array([spec.dim], dtype=">i2").tobytes(), dtype=np.uint8)
    raw[:, 2:4] = 0
    raw[:, 4:] = mat.astype(">f4").view(np.uint8).reshape(n, 4 * spec.dim)
    blobs = np.empty(n, dtype=object)
    blobs[:] = [row.tobytes() for row in raw]
    if spec.id_type is IdType.INT8:
        id_col = CopyColumn(PgType.INT8, keys.astype(np.int64))
    elif spec.id_type is IdType.TEXT:
        id_col = CopyColumn(PgType.TEXT, keys)
    else:
        id_col = CopyColumn(
            PgType.UUID,
            np.frombuffer(b"".join(k.bytes for k in keys), dtype=np.uint8).reshape(-1, 16),
        )
    # The vector column travels as a variable-width field of ready bytes (the encoder
    # writes bytes values as they are).
    return encode_copy([id_col, CopyColumn(PgType.TEXT, blobs), CopyColumn(PgType.JSONB, docs)])

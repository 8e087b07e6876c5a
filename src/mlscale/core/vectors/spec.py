"""What a vector collection is: its name, dimension, distance metric, id type and key
family, and its index (HNSW or IVFFlat with their knobs), checked before any I/O.

A collection is a table ``(id, embedding vector(dim), metadata jsonb)`` sharded by
``id`` on key family ``family`` (default ``vectors_<id type>``). Distances are
pgvector's operators: ``l2`` the Euclidean distance (``<->``), ``ip`` the *negative*
inner product (``<#>``, so smaller is nearer, as for the others), ``cosine`` one minus
the cosine similarity (``<=>``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ...errors import VectorError
from ..plain import plain_dict

__all__ = [
    "MAX_DIM",
    "MAX_K",
    "Collection",
    "IdType",
    "IndexKind",
    "IndexSpec",
    "Metric",
    "check_ef_search",
    "check_k",
    "check_name",
    "check_probes",
    "finite",
]

# pgvector: HNSW and IVFFlat index vectors of up to 2,000 dimensions; a column of up
# to 16,000. Collections are for indexed search, so the index's limit is the one here.
MAX_DIM = 2000
# hnsw.ef_search is at most 1,000 and an HNSW scan returns at most ef_search rows
# (without iterative scans): a k above it could never be answered by the index.
MAX_K = 1000
MAX_EF_SEARCH = 1000
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Metric(enum.StrEnum):
    """A distance: ``l2`` (Euclidean), ``ip`` (negative inner product), ``cosine``
    (1 - cosine similarity). Smaller is nearer for all three."""

    L2 = "l2"
    IP = "ip"
    COSINE = "cosine"

    @property
    def operator(self) -> str:
        """pgvector's distance operator."""
        return {"l2": "<->", "ip": "<#>", "cosine": "<=>"}[self.value]

    @property
    def opclass(self) -> str:
        """pgvector's operator class for indexes of this distance."""
        return {"l2": "vector_l2_ops", "ip": "vector_ip_ops", "cosine": "vector_cosine_ops"}[
            self.value
        ]


class IdType(enum.StrEnum):
    """The type of a collection's ids (its shard key)."""

    INT8 = "int8"
    TEXT = "text"
    UUID = "uuid"


class IndexKind(enum.StrEnum):
    """pgvector's approximate indexes."""

    HNSW = "hnsw"
    IVFFLAT = "ivfflat"


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """An index and its build knobs: HNSW ``m`` (graph degree, 2..100) and
    ``ef_construction`` (candidate list while building, >= 2 m); IVFFlat ``lists``
    (clusters, 1..32768, per shard group). Query knobs are per call (``ef_search``,
    ``probes``) with the collection's defaults stored beside it."""

    kind: IndexKind
    m: int = 16
    ef_construction: int = 64
    lists: int = 100

    def __post_init__(self) -> None:
        if self.kind is IndexKind.HNSW:
            if not 2 <= self.m <= 100:
                raise VectorError(f"HNSW m must be in 2..100 (got {self.m})")
            if not 4 <= self.ef_construction <= 1000 or self.ef_construction < 2 * self.m:
                raise VectorError(
                    f"HNSW ef_construction must be in 4..1000 and at least 2 m = {2 * self.m} "
                    f"(got {self.ef_construction})"
                )
        elif not 1 <= self.lists <= 32768:
            raise VectorError(f"IVFFlat lists must be in 1..32768 (got {self.lists})")

    def with_options(self) -> dict[str, int]:
        """The index's storage parameters (``WITH (...)``)."""
        if self.kind is IndexKind.HNSW:
            return {"m": self.m, "ef_construction": self.ef_construction}
        return {"lists": self.lists}

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Collection:
    """A vector collection (see the module docstring). ``ef_search`` and ``probes``:
    the query knobs used when a call gives none (``tune_ef_search`` stores the value
    it found); ``index``: the index built on every group, if any."""

    name: str
    dim: int
    metric: Metric = Metric.L2
    id_type: IdType = IdType.INT8
    family: str = ""
    index: IndexSpec | None = None
    ef_search: int = 40
    probes: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.name)
        if (
            isinstance(self.dim, bool)
            or not isinstance(self.dim, int)
            or not 1 <= self.dim <= MAX_DIM
        ):
            raise VectorError(f"collection {self.name!r}: dim must be an int in 1..{MAX_DIM}")
        try:
            object.__setattr__(self, "metric", Metric(self.metric))
        except ValueError:
            raise VectorError(
                f"collection {self.name!r}: metric must be one of {', '.join(Metric)} "
                f"(got {self.metric!r})"
            ) from None
        try:
            object.__setattr__(self, "id_type", IdType(self.id_type))
        except ValueError:
            raise VectorError(
                f"collection {self.name!r}: id_type must be one of {', '.join(IdType)} "
                f"(got {self.id_type!r})"
            ) from None
        if not self.family:
            object.__setattr__(self, "family", f"vectors_{self.id_type.value}")
        check_ef_search(self.ef_search)
        check_probes(self.probes)

    @property
    def table(self) -> str:
        """The sharded table holding the collection."""
        return f"mlscale_vec_{self.name}"

    @property
    def index_name(self) -> str:
        """The name of its vector index on every group."""
        return f"{self.table}_ann"

    def with_index(self, index: IndexSpec | None) -> Collection:
        """This collection with ``index`` recorded."""
        return replace(self, index=index)

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_spec` rebuilds an equal collection."""
        return {
            "name": self.name,
            "dim": self.dim,
            "metric": self.metric.value,
            "id_type": self.id_type.value,
            "family": self.family,
            "index": None if self.index is None else self.index.to_dict(),
            "ef_search": self.ef_search,
            "probes": self.probes,
        }

    to_dict = to_spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Collection:
        """The collection a :meth:`to_spec` dict describes."""
        index = spec.get("index")
        return cls(
            name=spec["name"],
            dim=int(spec["dim"]),
            metric=Metric(spec["metric"]),
            id_type=IdType(spec["id_type"]),
            family=spec["family"],
            index=None if not index else IndexSpec(**{**index, "kind": IndexKind(index["kind"])}),
            ef_search=int(spec.get("ef_search", 40)),
            probes=int(spec.get("probes", 1)),
        )


def check_name(name: str) -> str:
    """A collection name: lower case letters, digits and ``_``, a letter first, at most
    40 characters (it names a table on every group)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise VectorError(
            f"collection name {name!r}: use lower case letters, digits and _, starting "
            "with a letter, at most 40 characters"
        )
    return name


def check_k(k: int) -> int:
    """How many neighbours a query asks for: 1..MAX_K."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise VectorError(f"k must be an int in 1..{MAX_K} (got {k!r})")
    return k


def check_ef_search(ef: int) -> int:
    """An HNSW ef_search: 1..1000 (pgvector's range)."""
    if isinstance(ef, bool) or not isinstance(ef, int) or not 1 <= ef <= MAX_EF_SEARCH:
        raise VectorError(f"ef_search must be an int in 1..{MAX_EF_SEARCH} (got {ef!r})")
    return ef


def check_probes(probes: int) -> int:
    """An IVFFlat probes: 1..32768."""
    if isinstance(probes, bool) or not isinstance(probes, int) or not 1 <= probes <= 32768:
        raise VectorError(f"probes must be an int in 1..32768 (got {probes!r})")
    return probes


def finite(values: Any, what: str) -> None:
    """Refuse NaN and infinities (pgvector rejects them; better here, naming the call)."""
    if not np.isfinite(values).all():
        raise VectorError(f"{what}: vectors must be finite (found NaN or infinity)")

"""Feature views: what a view holds, checked once, as plain immutable values.

A :class:`FeatureView` names its entity key columns (the shard key of its tables,
placed by a key family's map), its typed features, a TTL, a version, an owner and a
description. Its spec (``to_spec``/``from_spec``) is what the catalog stores.

Names are lower-case SQL identifiers (letters, digits, ``_``), short enough that
every table a view owns fits PostgreSQL's 63-byte limit.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import FeatureError
from ..slots import KeyType

__all__ = [
    "ENTITY_TYPES",
    "Entity",
    "Feature",
    "FeatureType",
    "FeatureView",
    "check_name",
]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Column names the tables use for themselves (see layout.py): no entity is called so.
RESERVED = frozenset({"event_ts", "created_ts", "f4", "i8", "row_id"})
ENTITY_TYPES = (KeyType.INT8, KeyType.INT4, KeyType.INT2, KeyType.TEXT, KeyType.UUID)
MAX_FEATURES = 1000
MAX_DIM = 16000  # pgvector's own bound for a stored vector; plenty for a float4[]


def check_name(value: object, what: str) -> str:
    """``value`` if it is a valid name (``[a-z][a-z0-9_]{0,39}``), else a FeatureError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise FeatureError(
            f"{what} {value!r} is not a valid name: use 1 to 40 lower-case letters, digits "
            "or '_', starting with a letter"
        )
    return value


class FeatureType(enum.StrEnum):
    """A feature's value type: how it is stored and returned.

    FLOAT and INT are packed, one ``float4[]`` / ``int8[]`` per entity for all the
    view's features of that type; BOOL, TEXT and EMBEDDING each get a column.
    """

    FLOAT = "float"  # float4: returned as float32
    INT = "int"  # int8: returned as int64
    BOOL = "bool"
    TEXT = "text"
    EMBEDDING = "embedding"  # a float4 vector of ``dim`` elements


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a view. ``allow_nan``: whether a float NaN is a value (else a
    push holding one is refused); ``dim``: an embedding's length."""

    name: str
    type: FeatureType = FeatureType.FLOAT
    dim: int | None = None
    allow_nan: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "feature")
        try:
            kind = FeatureType(self.type)
        except ValueError:
            kinds = ", ".join(t.value for t in FeatureType)
            raise FeatureError(
                f"feature {self.name!r}: unknown type {self.type!r} (one of {kinds})"
            ) from None
        object.__setattr__(self, "type", kind)
        if kind is FeatureType.EMBEDDING:
            if (
                not isinstance(self.dim, int)
                or isinstance(self.dim, bool)
                or not (1 <= self.dim <= MAX_DIM)
            ):
                raise FeatureError(
                    f"feature {self.name!r}: an embedding needs dim between 1 and {MAX_DIM}, "
                    f"got {self.dim!r}"
                )
        elif self.dim is not None:
            raise FeatureError(f"feature {self.name!r}: dim is for embeddings only")

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON-able data."""
        out: dict[str, Any] = {"name": self.name, "type": self.type.value}
        if self.dim is not None:
            out["dim"] = self.dim
        if self.allow_nan:
            out["allow_nan"] = True
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class Entity:
    """An entity key column: its name and key type (int8, int4, int2, text, uuid)."""

    name: str
    key_type: KeyType = KeyType.INT8

    def __post_init__(self) -> None:
        check_name(self.name, "entity")
        if self.name in RESERVED:
            raise FeatureError(f"entity name {self.name!r} is reserved; pick another")
        try:
            kt = KeyType.parse(str(self.key_type))
        except Exception:
            kt = None
        if kt not in ENTITY_TYPES:
            allowed = ", ".join(t.value for t in ENTITY_TYPES)
            raise FeatureError(
                f"entity {self.name!r}: key type {self.key_type!r} is not one of {allowed}"
            )
        object.__setattr__(self, "key_type", kt)


def _entities(value: object) -> tuple[Entity, ...]:
    if isinstance(value, Entity | str):
        value = (value,)
    if not isinstance(value, Sequence) or not value:
        raise FeatureError("a feature view needs at least one entity key column")
    out = tuple(Entity(v) if isinstance(v, str) else v for v in value)
    if not all(isinstance(e, Entity) for e in out):
        raise FeatureError(f"entities must be Entity values or names, got {value!r}")
    return out


@dataclass(frozen=True, slots=True)
class FeatureView:
    """A named, versioned set of features of one entity key, stored in a key family.

    ``ttl_s``: a value older than this (seconds, by its event time) reads as missing,
    online and in training sets (None: never). ``family``: the key family whose map
    places the view's tables (default: the view's name); its key types must be the
    entities'. A new ``version`` lives in new tables beside the old ones.
    """

    name: str
    entities: tuple[Entity, ...]
    features: tuple[Feature, ...]
    ttl_s: float | None = None
    version: int = 1
    family: str = ""
    owner: str = ""
    description: str = ""
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, "feature view")
        object.__setattr__(self, "entities", _entities(self.entities))
        features = tuple(self.features)
        if not features or not all(isinstance(f, Feature) for f in features):
            raise FeatureError(f"feature view {self.name!r} needs Feature values, one or more")
        if len(features) > MAX_FEATURES:
            raise FeatureError(f"feature view {self.name!r}: at most {MAX_FEATURES} features")
        object.__setattr__(self, "features", features)
        names = [e.name for e in self.entities] + [f.name for f in features]
        prefixes = {FeatureType.BOOL: "b_", FeatureType.TEXT: "t_", FeatureType.EMBEDDING: "e_"}
        own = {prefixes[f.type] + f.name for f in features if f.type in prefixes}
        clash = sorted(e.name for e in self.entities if e.name in own)
        if clash:
            raise FeatureError(
                f"feature view {self.name!r}: entity name(s) {', '.join(clash)} clash with "
                "the columns of its bool/text/embedding features (b_, t_, e_ + name)"
            )
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise FeatureError(f"feature view {self.name!r}: duplicate names {', '.join(dup)}")
        if (
            not isinstance(self.version, int)
            or isinstance(self.version, bool)
            or not (1 <= self.version <= 9999)
        ):
            raise FeatureError(f"feature view {self.name!r}: version must be 1..9999")
        if self.ttl_s is not None and (
            isinstance(self.ttl_s, bool)
            or not isinstance(self.ttl_s, int | float)
            or not self.ttl_s > 0
        ):
            raise FeatureError(
                f"feature view {self.name!r}: ttl_s must be a positive number of seconds or None"
            )
        object.__setattr__(self, "family", check_name(self.family or self.name, "key family"))
        self._index.update({f.name: i for i, f in enumerate(features)})

    @property
    def key_types(self) -> tuple[KeyType, ...]:
        """The entity key columns' types, in key order."""
        return tuple(e.key_type for e in self.entities)

    @property
    def entity_names(self) -> tuple[str, ...]:
        """The entity key columns' names, in key order."""
        return tuple(e.name for e in self.entities)

    def feature(self, name: str) -> Feature:
        """The feature called ``name``; a FeatureError naming the view's features if none."""
        return self.features[self.index_of(name)]

    def index_of(self, name: str) -> int:
        """The position of feature ``name``; a FeatureError naming the view's features if none."""
        i = self._index.get(name)
        if i is None:
            known = ", ".join(f.name for f in self.features[:20])
            more = "" if len(self.features) <= 20 else f" and {len(self.features) - 20} more"
            raise FeatureError(
                f"feature view {self.name!r} (version {self.version}) has no feature "
                f"{name!r}; it has {known}{more}"
            )
        return i

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_spec` rebuilds an equal view."""
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "entities": [{"name": e.name, "key_type": e.key_type.value} for e in self.entities],
            "features": [f.to_spec() for f in self.features],
            "ttl_s": self.ttl_s,
            "owner": self.owner,
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureView:
        """A view from :meth:`to_spec`'s data; a FeatureError if malformed."""
        try:
            return cls(
                name=spec["name"],
                version=spec.get("version", 1),
                family=spec.get("family", ""),
                entities=tuple(
                    Entity(e["name"], KeyType.parse(e["key_type"])) for e in spec["entities"]
                ),
                features=tuple(
                    Feature(
                        f["name"],
                        FeatureType(f.get("type", "float")),
                        f.get("dim"),
                        bool(f.get("allow_nan", False)),
                        f.get("description", ""),
                    )
                    for f in spec["features"]
                ),
                ttl_s=spec.get("ttl_s"),
                owner=spec.get("owner", ""),
                description=spec.get("description", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(f"malformed feature view spec: {exc}") from exc

"""A prediction log: what it holds, checked once, as a plain immutable value.

A :class:`PredictionLog` names its tables and its entity key column, the shard key
that co-locates an entity's predictions and labels on one shard group (placed by
the key family's map). Its spec (``to_spec``/``from_spec``) is what the catalog
stores.

Every prediction has an id (a uuid, the idempotency key: sending a prediction twice
stores it once), an entity key, a model and a model version, a time, and what was
predicted: a ``score`` (a probability or a regressed value, float8), a ``predicted``
class (text) or both, and optional ``extra`` JSON. A label (``outcome`` float8,
``label`` text) arrives later for a prediction id and entity.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import PredictionError
from ..slots import KeyType

__all__ = ["KEY_TYPES", "PredictionLog"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
KEY_TYPES = (KeyType.INT8, KeyType.INT4, KeyType.INT2, KeyType.TEXT, KeyType.UUID)
# The tables' own columns: the entity column may not be called so.
RESERVED = frozenset(
    {"prediction_id", "ts", "model", "model_version", "score", "predicted", "extra"}
    | {"label_ts", "outcome", "label", "received_ts"}
)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PredictionError(
            f"{what} {value!r} is not a valid name: use 1 to 40 lower-case letters, digits "
            "or '_', starting with a letter"
        )
    return value


@dataclass(frozen=True, slots=True)
class PredictionLog:
    """A prediction log's definition.

    ``name``: its tables are ``name`` (predictions), ``name_labels`` and
    ``name_unmatched`` (labels whose prediction was not found, kept aside).
    ``entity``/``key_type``: the entity key column, the shard key of all three.
    ``family``: the key family whose map places them (default: ``name``).
    ``retention_days``: what :meth:`~mlscale.stores.predictions.PredictionStore.retain`
    keeps when not told (None: everything). ``days_ahead``: daily partitions made
    ahead of today (and one day back), so a write rarely makes one itself.
    """

    name: str = "predictions"
    entity: str = "entity_id"
    key_type: KeyType = KeyType.INT8
    family: str = ""
    retention_days: int | None = None
    days_ahead: int = 3

    def __post_init__(self) -> None:
        _name(self.name, "prediction log")
        if len(self.name) > 30:
            # name + "_unmatched" + a partition's "_d20261207" stay within 63 bytes.
            raise PredictionError(f"prediction log {self.name!r}: at most 30 characters")
        _name(self.entity, "entity column")
        if self.entity in RESERVED:
            raise PredictionError(f"entity column name {self.entity!r} is reserved; pick another")
        try:
            kt = KeyType.parse(str(self.key_type))
        except Exception:
            kt = None
        if kt not in KEY_TYPES:
            allowed = ", ".join(t.value for t in KEY_TYPES)
            raise PredictionError(
                f"prediction log {self.name!r}: key type {self.key_type!r} is not one of {allowed}"
            )
        object.__setattr__(self, "key_type", kt)
        object.__setattr__(self, "family", _name(self.family or self.name, "key family"))
        if self.retention_days is not None and (
            isinstance(self.retention_days, bool)
            or not isinstance(self.retention_days, int)
            or self.retention_days < 1
        ):
            raise PredictionError(
                f"prediction log {self.name!r}: retention_days must be a whole number >= 1 or None"
            )
        if (
            isinstance(self.days_ahead, bool)
            or not isinstance(self.days_ahead, int)
            or not 0 <= self.days_ahead <= 60
        ):
            raise PredictionError(f"prediction log {self.name!r}: days_ahead must be 0..60")

    @property
    def labels(self) -> str:
        """The labels table's name."""
        return f"{self.name}_labels"

    @property
    def unmatched(self) -> str:
        """The table of labels whose prediction was not found."""
        return f"{self.name}_unmatched"

    def to_spec(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_spec` rebuilds an equal log."""
        return {
            "name": self.name,
            "entity": self.entity,
            "key_type": self.key_type.value,
            "family": self.family,
            "retention_days": self.retention_days,
            "days_ahead": self.days_ahead,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> PredictionLog:
        """A log from :meth:`to_spec`'s data; a PredictionError if malformed."""
        try:
            return cls(
                name=spec["name"],
                entity=spec["entity"],
                key_type=KeyType.parse(spec["key_type"]),
                family=spec.get("family", ""),
                retention_days=spec.get("retention_days"),
                days_ahead=spec.get("days_ahead", 3),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PredictionError(f"malformed prediction log spec: {exc}") from exc

"""What the model registry's calls return: frozen values with ``to_dict()`` (JSON-ready:
datetimes as ISO 8601 strings, mappings as plain dicts).

Mappings inside a result (a version's metadata and metrics, a model's tags and
aliases) are read-only views: a cached result is shared by every caller of the
process, so nobody may change it for the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..causal import CausalToken
from ..plain import plain_dict

__all__ = ["AliasState", "Model", "ModelVersion", "Transition", "TransitionResult"]


def frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only view of a copy of ``value`` (None: empty)."""
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class Model:
    """A registered model: its ``name``, ``description``, ``tags``, the newest version
    number handed out (``latest_version``, 0 before the first), its ``aliases``
    (alias -> version, only those set), and who created it when. ``token``: the causal
    token of the write that returned it (``create_model``; empty when read)."""

    name: str
    description: str
    tags: Mapping[str, str]
    latest_version: int
    aliases: Mapping[str, int]
    created_at: dt.datetime
    created_by: str
    token: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetimes as ISO strings)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One version of a model.

    ``version``: 1, 2, ... per model, handed out in registration order with no gap;
    ``artifact_uri``: where its files are; ``metadata``: a JSON object; ``metrics``:
    name -> float; ``feature_views``: the feature views it was trained on (``view`` or
    ``view:version``); ``run_id``: the training run; ``status``: ``"ready"`` (the only
    status today; kept for states such as a pending upload); ``aliases``: the aliases
    pointing at it when it was read, sorted; ``token``: the causal token of the
    registration that returned it (empty when read): pass it as ``token=`` to read it
    back from a replica.
    """

    name: str
    version: int
    artifact_uri: str
    metadata: Mapping[str, Any]
    metrics: Mapping[str, float]
    feature_views: tuple[str, ...]
    run_id: str | None
    status: str
    created_at: dt.datetime
    created_by: str
    aliases: tuple[str, ...]
    token: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetimes as ISO strings)."""
        return plain_dict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ModelVersion:
        """A version from a row (or a cached dict) with the statements' column names."""
        return cls(
            name=row["model"],
            version=row["version"],
            artifact_uri=row["artifact_uri"],
            metadata=frozen_map(row["metadata"]),
            metrics=frozen_map(row["metrics"]),
            feature_views=tuple(row["feature_views"] or ()),
            run_id=row["run_id"],
            status=row["status"],
            created_at=row["created_at"],
            created_by=row["created_by"],
            aliases=tuple(sorted(row["aliases"] or ())),
        )


@dataclass(frozen=True, slots=True)
class AliasState:
    """Where alias ``alias`` of model ``name`` points: ``version`` (None: never set, or
    cleared) and its ``revision`` (0: never set; +1 at each change). Pass the revision
    as ``expected_revision`` to move the alias only if nobody moved it since."""

    name: str
    alias: str
    version: int | None
    revision: int
    updated_at: dt.datetime | None
    updated_by: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetimes as ISO strings)."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """A transition's outcome: alias ``alias`` of ``name`` now points at ``version``
    (None: cleared) at ``revision``; it pointed at ``previous_version`` before.
    ``changed`` is False when it already pointed there (nothing written, revision
    unchanged). ``token``: the commit's causal token as a string (empty when nothing
    was written): pass it as ``token=`` to read at least this fresh anywhere."""

    name: str
    alias: str
    version: int | None
    previous_version: int | None
    revision: int
    changed: bool
    token: str

    @property
    def causal_token(self) -> CausalToken:
        """``token`` parsed."""
        return CausalToken.parse(self.token) if self.token else CausalToken()

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return plain_dict(self)


@dataclass(frozen=True, slots=True)
class Transition:
    """One entry of an alias's history: at ``revision`` alias ``alias`` of ``name``
    moved from ``from_version`` to ``to_version`` (either None: unset), by ``actor``
    at ``at``, because ``reason``."""

    name: str
    alias: str
    revision: int
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        """Plain data (datetimes as ISO strings)."""
        return plain_dict(self)

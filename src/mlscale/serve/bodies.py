"""The service's request and response bodies (pydantic), so the OpenAPI schema says
exactly what each route takes and returns. Limits per request are here too."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_ENTITIES",
    "MAX_FEATURES",
    "MAX_ROWS",
    "AliasStateBody",
    "ErrorBody",
    "FieldError",
    "Health",
    "LabelRow",
    "LabelsRequest",
    "LabelsResponse",
    "ModelBody",
    "ModelCreate",
    "OnlineRequest",
    "OnlineResponse",
    "PredictionRow",
    "PredictionsRequest",
    "PredictionsResponse",
    "PushRequest",
    "PushResponse",
    "Readiness",
    "TransitionBody",
    "TransitionEntry",
    "TransitionRequest",
    "VersionBody",
    "VersionCreate",
]

MAX_ENTITIES = 1_000  # entities of one online read
MAX_FEATURES = 200  # feature references of one online read
MAX_ROWS = 10_000  # rows of one push, prediction or label request

Name = Annotated[str, Field(min_length=1, max_length=200)]
Key = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)] | Annotated[str, Field(max_length=1000)]


def _storable(value: Any, depth: int = 0) -> Any:
    """``value`` if PostgreSQL can store every string in it (UTF-8, no NUL character),
    nested at most 32 deep; a ValueError naming the problem otherwise. Checked here,
    at the door: a row the database refuses later would stay in a writer's queue."""
    if depth > 32:
        raise ValueError("nested more than 32 levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("a text holds a NUL character, which PostgreSQL cannot store")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a text holds a lone surrogate (not valid UTF-8)") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k, depth + 1)
            _storable(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _storable(v, depth + 1)
    return value


Storable = AfterValidator(_storable)
Finite = Annotated[float, Field(allow_inf_nan=False)]
Level = Literal["strong", "read_your_writes", "bounded_staleness", "eventual"]


class _Strict(BaseModel):
    # Unknown fields are refused (422 names them) rather than silently ignored.
    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    """One thing wrong with a request: where (``loc``: "body", "rows", 3, "score"), what."""

    loc: list[str | int]
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error's body: a stable ``error`` code, a sentence, and (422) the fields."""

    error: str = Field(description="A stable code: unauthorized, forbidden, validation, ...")
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class Health(BaseModel):
    """``/healthz``: the process answers."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """``/readyz``: whether every node answered a trivial query in time, per node."""

    ready: bool
    nodes: dict[str, str] = Field(description="node -> 'ok' or why it did not answer")


class OnlineRequest(_Strict):
    """Newest feature values of up to 1,000 entities."""

    features: list[Name] = Field(
        min_length=1,
        max_length=MAX_FEATURES,
        description='"view:feature", "view@2:feature", "view:*" or a view name (all its features)',
    )
    entity_ids: list[Key | list[Key]] = Field(
        min_length=1,
        max_length=MAX_ENTITIES,
        description="entity keys in request order; a list per entity for composite keys",
    )
    consistency: Level | None = Field(
        default=None, description="how fresh the read must be (default: the cluster's policy)"
    )

    @model_validator(mode="after")
    def _one_key_shape(self) -> OnlineRequest:
        # Every entity the same shape: all single keys, or all lists of one length.
        shapes = {len(e) if isinstance(e, list) else None for e in self.entity_ids}
        if len(shapes) > 1 or 0 in shapes:
            raise ValueError(
                "entity_ids: give every entity the same shape (all keys, or all lists "
                "of the same number of key columns)"
            )
        return self


class OnlineResponse(BaseModel):
    """Column per feature, in request order, one value per entity (null: missing or
    past the view's TTL); per view, each entity's event time (null: no row)."""

    entities: int
    features: dict[str, list[Any]]
    present: dict[str, list[bool]]
    event_time: dict[str, list[dt.datetime | None]]


class PushRequest(_Strict):
    """Rows of a feature view: its entity columns, the event time and every feature."""

    rows: Annotated[list[dict[str, Any]], Storable] = Field(min_length=1, max_length=MAX_ROWS)
    timestamp_column: Name = "event_ts"


class PushResponse(BaseModel):
    """What a push wrote; ``token`` as in the ``Mlscale-Causal-Token`` header."""

    view: str
    version: int
    rows: int
    groups: dict[str, int]
    token: str


class PredictionRow(_Strict):
    """One prediction. ``prediction_id`` and ``ts`` are made when missing (a version 7
    uuid of the row's time, so sending the same row again stores it once)."""

    entity: Key
    model: Name
    model_version: Name
    score: Finite | None = None
    predicted: Annotated[str, Field(max_length=1000)] | None = None
    prediction_id: uuid.UUID | None = None
    ts: dt.datetime | None = None
    extra: Annotated[dict[str, Any], Storable] | None = None


class PredictionsRequest(_Strict):
    """Predictions to log; with ``wait`` the answer comes once they are committed
    (and carries their causal token), otherwise once they are queued."""

    rows: list[PredictionRow] = Field(min_length=1, max_length=MAX_ROWS)
    wait: bool = False


class PredictionsResponse(BaseModel):
    """The predictions' ids in request order; ``durable``: committed (``wait``) or
    queued (written within the flush interval, and at shutdown)."""

    ids: list[uuid.UUID]
    rows: int
    durable: bool
    token: str


class LabelRow(_Strict):
    """A label of a logged prediction: its id, its entity, the outcome and/or label."""

    prediction_id: uuid.UUID
    entity: Key
    outcome: Finite | None = None
    label: Annotated[str, Field(max_length=1000)] | None = None
    label_ts: dt.datetime | None = None


class LabelsRequest(_Strict):
    """Labels to attach."""

    rows: list[LabelRow] = Field(min_length=1, max_length=MAX_ROWS)


class LabelsResponse(BaseModel):
    """Labels attached, superseded (older than the one there) and kept aside unmatched."""

    written: int
    superseded: int
    unmatched: int
    token: str


# -- model registry ----------------------------------------------------------------------

Text = Annotated[str, Field(max_length=10_000)]


class ModelCreate(_Strict):
    """A model to register (the same name, description and tags again: no change)."""

    name: Name
    description: Text = ""
    tags: dict[Name, Annotated[str, Field(max_length=1000)]] | None = None


class ModelBody(BaseModel):
    """A model: the newest version number handed out, its aliases (alias -> version),
    who made it when; ``token`` on a create (as in the header)."""

    name: str
    description: str
    tags: dict[str, str]
    latest_version: int
    aliases: dict[str, int]
    created_at: dt.datetime
    created_by: str
    token: str = ""


class VersionCreate(_Strict):
    """A new version of a model: numbered 1, 2, ... by the registry."""

    artifact_uri: Annotated[str, Field(min_length=1, max_length=2000)]
    metadata: Annotated[dict[str, Any], Storable] | None = None
    metrics: dict[Name, Finite] | None = None
    feature_views: list[Name] = Field(
        default_factory=list, max_length=100, description='"view" or "view:version"'
    )
    run_id: Annotated[str, Field(max_length=200)] | None = None


class VersionBody(BaseModel):
    """A version of a model; ``aliases`` point at it; ``token`` on a registration."""

    name: str
    version: int
    artifact_uri: str
    metadata: dict[str, Any]
    metrics: dict[str, float]
    feature_views: list[str]
    run_id: str | None
    status: str
    created_at: dt.datetime
    created_by: str
    aliases: list[str]
    token: str = ""


class AliasStateBody(BaseModel):
    """Where an alias points (null: never set, or cleared) and its revision (0: never
    set); send the revision as ``expected_revision`` to move it only if unmoved since."""

    name: str
    alias: str
    version: int | None
    revision: int
    updated_at: dt.datetime | None
    updated_by: str | None


class TransitionRequest(_Strict):
    """Point the alias at ``version`` (null: clear it), only if it is still at
    ``expected_revision`` when given (else 409); ``reason`` goes to the history."""

    version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None
    expected_revision: Annotated[int, Field(ge=0, le=2**62)] | None = None
    reason: Annotated[str, Field(max_length=2000)] = ""


class TransitionBody(BaseModel):
    """The alias now at ``version`` and ``revision``, from ``previous_version``;
    ``changed`` false when it already pointed there (nothing written)."""

    name: str
    alias: str
    version: int | None
    previous_version: int | None
    revision: int
    changed: bool
    token: str


class TransitionEntry(BaseModel):
    """One move of an alias: who, when, why, from which version to which."""

    name: str
    alias: str
    revision: int
    from_version: int | None
    to_version: int | None
    actor: str
    reason: str
    at: dt.datetime

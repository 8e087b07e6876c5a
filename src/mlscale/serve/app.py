"""The HTTP service: :func:`create_app` builds the FastAPI application.

An entry point with no logic of its own: each route checks its request (pydantic
models, :mod:`.models`), its API key (:mod:`.keys`) and calls the async stores
(features, predictions) on one :class:`~mlscale.AsyncCluster` per process. Errors
become answers in one place (:mod:`.errors`).

Causal tokens: every write answers with its commits' token in the
``Mlscale-Causal-Token`` header; every read takes that header and reads at least
that fresh, so a client's write-then-read is consistent even when the read lands
on a lagging replica, in any worker process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core.apikeys import KeyScope, grants
from ..core.causal import CausalToken, InvalidToken
from ..core.features.online import OnlineFeatures
from ..core.predictions.rows import new_ids
from .errors import ApiError, install_handlers
from .keys import ApiKey
from .limits import BodyLimit
from .models import (
    ErrorBody,
    Health,
    LabelsRequest,
    LabelsResponse,
    OnlineRequest,
    OnlineResponse,
    PredictionRow,
    PredictionsRequest,
    PredictionsResponse,
    PushRequest,
    PushResponse,
    Readiness,
)
from .settings import ServeSettings
from .state import ServeState

__all__ = ["TOKEN_HEADER", "app_from_env", "create_app"]

TOKEN_HEADER = "Mlscale-Causal-Token"
log_ = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made by `mlscale keys create` (scope read or write)",
)
_ERRORS = {
    400: "the body could not be decoded (it must be UTF-8 JSON)",
    401: "no API key, or an unknown or revoked one",
    403: "the key's scope does not allow this route",
    404: "no such feature view or prediction log",
    409: "a conflicting write",
    413: "the request body is over the service's limit",
    422: "the request is not valid (the fields are named)",
    503: "the cluster could not do it now (retry later)",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()
}
_TOKEN_OUT: dict[str, Any] = {
    TOKEN_HEADER: {
        "description": "the causal token of the commits; send it with later reads",
        "schema": {"type": "string"},
    }
}
_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_RESPONSES,
    200: {"description": "written", "headers": _TOKEN_OUT},
}


def _state(request: Request) -> ServeState:
    state: ServeState = request.app.state.mlscale
    return state


def _needs(scope: KeyScope) -> Callable[..., Awaitable[ApiKey]]:
    """A dependency: the request's API key, if it has ``scope`` (401/403 otherwise)."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(
                401, "an API key is needed: send 'Authorization: Bearer <key>'", headers=challenge
            )
        key = await _state(request).verifier.verify(credentials.credentials)
        if key is None:
            raise ApiError(401, "the API key is unknown or revoked", headers=challenge)
        if not grants(key.scope, scope):
            raise ApiError(
                403,
                f"this route needs a key of scope {scope.value}; key {key.key_id} "
                f"({key.name}) has scope {key.scope.value}",
            )
        return key

    return check


async def _token(
    token: Annotated[
        str | None,
        Header(
            alias=TOKEN_HEADER,
            max_length=4096,
            description="a causal token from a write's answer: read at least that fresh",
        ),
    ] = None,
) -> CausalToken | None:
    if token is None or not token.strip():
        return None
    try:
        return CausalToken.parse(token.strip())
    except InvalidToken as exc:
        raise ApiError(422, f"header {TOKEN_HEADER}: {exc}") from None


Reader = Annotated[ApiKey, Depends(_needs(KeyScope.READ))]
Writer = Annotated[ApiKey, Depends(_needs(KeyScope.WRITE))]
Token = Annotated[CausalToken | None, Depends(_token)]
ViewName = Annotated[str, Path(min_length=1, max_length=200, description="a feature view")]
LogName = Annotated[str, Path(min_length=1, max_length=200, description="a prediction log")]


def _reference(text: str) -> str:
    """A feature reference as the store takes it: a bare view name means every feature."""
    return text if ":" in text else f"{text}:*"


def _column(values: np.ndarray[Any, Any], present: np.ndarray[Any, Any]) -> list[Any]:
    """One feature's values as JSON: null where missing (and for NaN, which JSON lacks)."""
    out = values.astype(object)
    if values.dtype.kind == "f":
        out[np.isnan(values)] = None
    rows: list[Any] = out.tolist()
    for i in np.flatnonzero(~present).tolist():
        rows[i] = None
    return rows


def _times(times: np.ndarray[Any, Any]) -> list[dt.datetime | None]:
    return [
        None if t is None else t.replace(tzinfo=dt.UTC)
        for t in times.astype("datetime64[us]").tolist()
    ]


def _online_body(got: OnlineFeatures) -> OnlineResponse:
    return OnlineResponse(
        entities=len(got),
        features={n: _column(v, got.present[n]) for n, v in got.values.items()},
        present={n: p.tolist() for n, p in got.present.items()},
        event_time={view: _times(t) for view, t in got.event_time.items()},
    )


def _prediction_records(entity: str, rows: list[PredictionRow]) -> tuple[list[Any], list[Any]]:
    """Rows as the writer takes them, every id and time given: a missing time is now
    (to the millisecond), a missing id a version 7 uuid of the row's time, as the
    writer would make them, so the answer can name every id."""
    now = _EPOCH + dt.timedelta(milliseconds=time.time_ns() // 1_000_000)
    times = [
        now if r.ts is None else (r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=dt.UTC))
        for r in rows
    ]
    missing = [i for i, r in enumerate(rows) if r.prediction_id is None]
    made: dict[int, uuid.UUID] = {}
    if missing:
        us = np.array([(times[i] - _EPOCH) // _US for i in missing], dtype=np.int64)
        made = {i: uuid.UUID(bytes=bytes(b)) for i, b in zip(missing, new_ids(us), strict=True)}
    ids = [r.prediction_id or made[i] for i, r in enumerate(rows)]
    records = [
        {
            entity: r.entity,
            "model": r.model,
            "model_version": r.model_version,
            "score": r.score,
            "predicted": r.predicted,
            "prediction_id": pid,
            "ts": ts,
            "extra": r.extra,
        }
        for r, pid, ts in zip(rows, ids, times, strict=True)
    ]
    return records, ids


def _routes() -> APIRouter:
    """The versioned routes (``/v1/...``)."""
    router = APIRouter(prefix="/v1", responses=_RESPONSES)

    @router.post(
        "/features/online",
        response_model=OnlineResponse,
        tags=["features"],
        summary="Newest feature values of up to 1,000 entities",
    )
    async def online_features(
        body: OnlineRequest, request: Request, key: Reader, token: Token
    ) -> OnlineResponse:
        ids = [tuple(e) if isinstance(e, list) else e for e in body.entity_ids]
        got = await _state(request).features.get_online_features(
            [_reference(f) for f in body.features],
            ids,
            token=token,
            consistency=body.consistency,
        )
        return _online_body(got)

    @router.post(
        "/features/{view}/push",
        response_model=PushResponse,
        responses=_WRITE_RESPONSES,
        tags=["features"],
        summary="Write feature rows into a view (online table and history)",
    )
    async def push_features(
        view: ViewName, body: PushRequest, request: Request, response: Response, key: Writer
    ) -> PushResponse:
        done = await _state(request).features.push(
            view, body.rows, timestamp_column=body.timestamp_column
        )
        token = done.token.to_string()
        response.headers[TOKEN_HEADER] = token
        return PushResponse(
            view=done.view, version=done.version, rows=done.rows, groups=done.groups, token=token
        )

    @router.post(
        "/predictions/{log}",
        response_model=PredictionsResponse,
        responses=_WRITE_RESPONSES,
        tags=["predictions"],
        summary="Log predictions (queued, or committed with wait=true); their ids",
    )
    async def log_predictions(
        log: LogName,
        body: PredictionsRequest,
        request: Request,
        response: Response,
        key: Writer,
    ) -> PredictionsResponse:
        found, writer = await _state(request).writer(log)
        records, ids = _prediction_records(found.entity, body.rows)
        await writer.log_many(records)
        token = CausalToken()
        if body.wait:
            token = (await writer.flush(timeout=_state(request).settings.flush_wait_s)).token
        text = token.to_string()
        response.headers[TOKEN_HEADER] = text
        return PredictionsResponse(ids=ids, rows=len(ids), durable=body.wait, token=text)

    @router.post(
        "/predictions/{log}/labels",
        response_model=LabelsResponse,
        responses=_WRITE_RESPONSES,
        tags=["predictions"],
        summary="Attach labels (outcomes) to logged predictions",
    )
    async def log_labels(
        log: LogName, body: LabelsRequest, request: Request, response: Response, key: Writer
    ) -> LabelsResponse:
        state = _state(request)
        found = await state.predictions.get(log)
        records = [
            {
                "prediction_id": r.prediction_id,
                found.entity: r.entity,
                "outcome": r.outcome,
                "label": r.label,
                "label_ts": r.label_ts,
            }
            for r in body.rows
        ]
        done = await state.predictions.log_labels(found, records)
        token = done.token.to_string()
        response.headers[TOKEN_HEADER] = token
        return LabelsResponse(
            written=done.written, superseded=done.superseded, unmatched=done.unmatched, token=token
        )

    return router


async def _ready(state: ServeState) -> Readiness:
    """Ask every primary and the control database for ``SELECT 1`` at once, each within
    the settings' timeout (replicas are not needed: reads fall back to primaries)."""
    cluster = state.cluster
    names = ["control", *(cluster.primary_node(g.name) for g in cluster.config.shard_groups)]

    async def ask(node: str) -> str:
        async def ping() -> None:
            async with cluster.connection(node) as conn:
                await conn.execute("SELECT 1")

        try:
            await asyncio.wait_for(ping(), state.settings.ready_timeout_s)
        except TimeoutError:
            return f"no answer within {state.settings.ready_timeout_s:g} s"
        except Exception as exc:  # any failure means not ready
            # The probe is unauthenticated: the body names the kind of failure only
            # (no hosts or ports); the details go to the service's log.
            log_.warning("readiness: %s did not answer: %s", node, exc)
            return f"down ({type(exc).__name__})"
        return "ok"

    answers = await asyncio.gather(*(ask(n) for n in names))
    nodes = dict(zip(names, answers, strict=True))
    return Readiness(ready=all(a == "ok" for a in answers), nodes=nodes)


def create_app(settings: ServeSettings, *, state: ServeState | None = None) -> FastAPI:
    """The service's FastAPI app. Its lifespan opens the cluster of
    ``settings.config_path`` (or uses ``state``, which it then closes too) and, on
    shutdown, after the requests in flight have finished, writes everything the
    prediction writers acknowledged before it closes the cluster."""
    from .. import __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opened = state if state is not None else ServeState.open(settings)
        app.state.mlscale = opened
        try:
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="mlscale",
        version=__version__,
        summary="Features, predictions and labels over HTTP, on a scaled PostgreSQL",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.get("/healthz", response_model=Health, tags=["health"], summary="The process answers")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["health"],
        summary="Ready: the control database and every primary answered in time",
        responses={503: {"model": Readiness, "description": "a node did not answer"}},
    )
    async def readyz(request: Request) -> Any:
        got = await _ready(_state(request))
        if not got.ready:
            return JSONResponse(got.model_dump(), status_code=503)
        return got

    app.include_router(_routes())
    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's worker processes (``--factory``): settings from the
    environment (:meth:`ServeSettings.from_env`)."""
    return create_app(ServeSettings.from_env())

"""The HTTP service: :func:`create_app` builds the FastAPI application.

An entry point with no logic of its own: each route checks its request (pydantic
models, :mod:`.bodies`), its API key (:mod:`.keys`) and calls the async stores
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ..core.causal import CausalToken
from ..core.features.online import OnlineFeatures
from ..core.predictions.rows import new_ids
from ..metrics import render_multiprocess
from .bodies import (
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
from .deps import (
    RESPONSES,
    TOKEN_HEADER,
    WRITE_RESPONSES,
    Reader,
    Token,
    Writer,
    send_token,
    state_of,
)
from .errors import install_handlers
from .limits import BodyLimit
from .registry_routes import registry_routes
from .settings import ServeSettings
from .state import ServeState

__all__ = ["TOKEN_HEADER", "app_from_env", "create_app"]

log_ = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)

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
    router = APIRouter(prefix="/v1", responses=RESPONSES)

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
        got = await state_of(request).features.get_online_features(
            [_reference(f) for f in body.features],
            ids,
            token=token,
            consistency=body.consistency,
        )
        return _online_body(got)

    @router.post(
        "/features/{view}/push",
        response_model=PushResponse,
        responses=WRITE_RESPONSES,
        tags=["features"],
        summary="Write feature rows into a view (online table and history)",
    )
    async def push_features(
        view: ViewName, body: PushRequest, request: Request, response: Response, key: Writer
    ) -> PushResponse:
        done = await state_of(request).features.push(
            view, body.rows, timestamp_column=body.timestamp_column
        )
        token = send_token(response, done.token)
        return PushResponse(
            view=done.view, version=done.version, rows=done.rows, groups=done.groups, token=token
        )

    @router.post(
        "/predictions/{log}",
        response_model=PredictionsResponse,
        responses=WRITE_RESPONSES,
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
        found, writer = await state_of(request).writer(log)
        records, ids = _prediction_records(found.entity, body.rows)
        await writer.log_many(records)
        token = CausalToken()
        if body.wait:
            token = (await writer.flush(timeout=state_of(request).settings.flush_wait_s)).token
        text = send_token(response, token)
        return PredictionsResponse(ids=ids, rows=len(ids), durable=body.wait, token=text)

    @router.post(
        "/predictions/{log}/labels",
        response_model=LabelsResponse,
        responses=WRITE_RESPONSES,
        tags=["predictions"],
        summary="Attach labels (outcomes) to logged predictions",
    )
    async def log_labels(
        log: LogName, body: LabelsRequest, request: Request, response: Response, key: Writer
    ) -> LabelsResponse:
        state = state_of(request)
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
        token = send_token(response, done.token)
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
            await opened.start()
            yield
        finally:
            await opened.close()

    app = FastAPI(
        title="mlscale",
        version=__version__,
        summary="Features, predictions, labels and models over HTTP, on a scaled PostgreSQL",
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
        got = await _ready(state_of(request))
        if not got.ready:
            return JSONResponse(got.model_dump(), status_code=503)
        return got

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics of every worker process (text exposition format)",
        response_class=PlainTextResponse,
    )
    async def metrics() -> Response:
        body, content_type = render_multiprocess()
        return Response(body, media_type=content_type)

    app.include_router(_routes())
    app.include_router(registry_routes())
    return app


def app_from_env() -> FastAPI:
    """The app for uvicorn's worker processes (``--factory``): settings from the
    environment (:meth:`ServeSettings.from_env`)."""
    return create_app(ServeSettings.from_env())

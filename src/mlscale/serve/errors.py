"""Errors as HTTP answers, decided in one place: every error body is an
:class:`~mlscale.serve.bodies.ErrorBody`, and every mlscale error a route lets
through is mapped here (not per route) to a 4xx, or 503 when the cluster could
not do it. Bad input never becomes a 500, and no answer echoes an API key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    CacheError,
    CatalogError,
    DatabaseError,
    FeatureError,
    IntegrityViolation,
    MlscaleError,
    ModelExists,
    NoReplicaAvailable,
    NotFound,
    PartialWriteError,
    PredictionError,
    QueryError,
    RegistryConflict,
    RegistryError,
    RoutingError,
    TransactionConflict,
    WriterQueueFull,
)
from .bodies import ErrorBody, FieldError

__all__ = ["ApiError", "error_response", "install_handlers", "status_of"]

log_ = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    422: "validation",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success, raised by the service's own code."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def status_of(exc: MlscaleError) -> int:
    """The HTTP status of an mlscale error (see the module docstring): 404 for every
    :class:`~mlscale.errors.NotFound` (feature view, prediction log, model), by type."""
    text = str(exc)
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, WriterQueueFull):
        return 503  # the writer is full: retry later
    if isinstance(exc, RegistryConflict | ModelExists):
        return 409  # the body names the version that won, or the model as it is
    if isinstance(exc, RegistryError):
        return 422  # a bad name, alias, version, metadata or lineage
    if isinstance(exc, FeatureError):
        return 422
    if isinstance(exc, PredictionError):
        if "writer is closed" in text or text.startswith("flush:"):
            return 503  # shutting down, or the rows are not written yet (the writer retries)
        return 422
    if isinstance(exc, NoReplicaAvailable):
        return 503
    if isinstance(exc, RoutingError):
        return 422  # a shard key that cannot be placed, an unknown level: the input
    if isinstance(exc, IntegrityViolation | TransactionConflict):
        return 409
    if isinstance(exc, PartialWriteError):
        return 503  # the message names the groups; sending the same data again is harmless
    if isinstance(exc, QueryError) and (exc.sqlstate is None or exc.sqlstate.startswith("22")):
        return 422  # the driver refused a value, or the server found it out of range
    if isinstance(exc, DatabaseError | CatalogError | CacheError):
        return 503
    return 500


def error_response(
    status: int,
    message: str,
    fields: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON :class:`ErrorBody` answer."""
    # A message may quote the request (a column name): keep it encodable whatever it held.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    body = ErrorBody(error=_CODES.get(status, "error"), message=message, fields=list(fields))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _field_errors(errors: Sequence[Any]) -> list[FieldError]:
    out = []
    for e in errors[:50]:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        out.append(FieldError(loc=loc, message=str(e.get("msg", "")), type=str(e.get("type", ""))))
    return out


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into :class:`ErrorBody` answers."""

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        fields = _field_errors(exc.errors())
        where = ", ".join(".".join(str(p) for p in f.loc) for f in fields[:5])
        return error_response(422, f"the request is not valid: {where}", fields)

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def api(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, headers=exc.headers)

    async def mlscale(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MlscaleError)
        status = status_of(exc)
        if status >= 500:
            log_.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return error_response(status, str(exc), headers=headers)

    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log_.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error (logged by the service)")

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http)
    app.add_exception_handler(ApiError, api)
    app.add_exception_handler(MlscaleError, mlscale)
    app.add_exception_handler(Exception, internal)

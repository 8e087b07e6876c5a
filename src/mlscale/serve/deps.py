"""What every route of the service depends on: the process's state, the request's API
key checked for a scope (401/403), the causal token header parsed (422) and sent
back with a write's answer, and the error answers each route documents in the OpenAPI schema."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..core.apikeys import KeyScope, grants
from ..core.causal import CausalToken, InvalidToken
from .bodies import ErrorBody
from .errors import ApiError
from .keys import ApiKey
from .state import ServeState

__all__ = [
    "RESPONSES",
    "TOKEN_HEADER",
    "WRITE_RESPONSES",
    "Reader",
    "Token",
    "Writer",
    "send_token",
    "state_of",
]

TOKEN_HEADER = "Mlscale-Causal-Token"

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key made by `mlscale keys create` (scope read or write)",
)
_ERRORS = {
    400: "the body could not be decoded (it must be UTF-8 JSON)",
    401: "no API key, or an unknown or revoked one",
    403: "the key's scope does not allow this route",
    404: "no such feature view, prediction log, model, version or alias",
    409: "a conflicting write (an alias moved since the expected revision)",
    413: "the request body is over the service's limit",
    422: "the request is not valid (the fields are named)",
    503: "the cluster could not do it now (retry later)",
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()
}
_TOKEN_OUT: dict[str, Any] = {
    TOKEN_HEADER: {
        "description": "the causal token of the commits; send it with later reads",
        "schema": {"type": "string"},
    }
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES,
    200: {"description": "written", "headers": _TOKEN_OUT},
}


def state_of(request: Request) -> ServeState:
    """The state of the process serving ``request``."""
    state: ServeState = request.app.state.mlscale
    return state


def send_token(response: Response, token: CausalToken | str) -> str:
    """Answer a write with its commits' causal token in the header :data:`TOKEN_HEADER`;
    the token as text (for the body too). A store's token is always sent (an empty
    CausalToken still has its prefix); the registry's is empty when nothing was
    written, and then no header is sent."""
    text = token.to_string() if isinstance(token, CausalToken) else token
    if text:
        response.headers[TOKEN_HEADER] = text
    return text


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
        key = await state_of(request).verifier.verify(credentials.credentials)
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

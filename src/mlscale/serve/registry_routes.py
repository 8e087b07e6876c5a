"""The model registry over HTTP (``/v1/models/...``): models, versions, aliases and
their history, calling :class:`~mlscale.stores.registry.AsyncModelRegistry`.

"Which version is in production?" is ``GET /v1/models/{name}/aliases/production``,
answered from the registry's cache (L1 in the worker, L2 on Redis), which every
change invalidates in every worker. A read sent with a ``Mlscale-Causal-Token``
header reads the database at least that fresh instead (a client's own change, read
back through any worker). Changes record the API key's name as their actor and
answer with the commit's token; a transition with an ``expected_revision`` that is
no longer the alias's answers 409, naming the version that won.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from ..core.registry.results import ModelVersion
from .bodies import (
    AliasStateBody,
    ModelBody,
    ModelCreate,
    TransitionBody,
    TransitionEntry,
    TransitionRequest,
    VersionBody,
    VersionCreate,
)
from .deps import RESPONSES, WRITE_RESPONSES, Reader, Token, Writer, send_token, state_of

__all__ = ["registry_routes"]

ModelName = Annotated[str, Path(min_length=1, max_length=200, description="a model's name")]
Alias = Annotated[
    str, Path(min_length=1, max_length=200, description="an alias: production, staging, ...")
]
Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="a version number")]


def _version(found: ModelVersion) -> VersionBody:
    return VersionBody.model_validate(found.to_dict())


class _Encoded:
    """JSON bodies of the versions lookups answered last, by object: a cached lookup
    hands out the same frozen ModelVersion until a change replaces it, so its body is
    built once, not at every request (the hot route: "which version is in production?")."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._bodies: dict[int, tuple[ModelVersion, bytes]] = {}

    def body(self, found: ModelVersion) -> bytes:
        hit = self._bodies.get(id(found))
        if hit is not None and hit[0] is found:
            return hit[1]
        body = _version(found).model_dump_json().encode()
        if len(self._bodies) >= self._size:
            self._bodies.clear()
        self._bodies[id(found)] = (found, body)
        return body


def registry_routes() -> APIRouter:
    """The registry's routes, under ``/v1``."""
    router = APIRouter(prefix="/v1/models", responses=RESPONSES, tags=["models"])
    encoded = _Encoded()

    @router.get("", response_model=list[ModelBody], summary="Every registered model")
    async def list_models(request: Request, key: Reader, token: Token) -> list[ModelBody]:
        found = await state_of(request).registry.list_models(token=token)
        return [ModelBody.model_validate(m.to_dict()) for m in found]

    @router.post(
        "",
        response_model=ModelBody,
        responses=WRITE_RESPONSES,
        summary="Register a model (the same name and description again: no change)",
    )
    async def create_model(
        body: ModelCreate, request: Request, response: Response, key: Writer
    ) -> ModelBody:
        made = await state_of(request).registry.create_model(
            body.name, description=body.description, tags=body.tags, actor=key.name
        )
        send_token(response, made.token)
        return ModelBody.model_validate(made.to_dict())

    @router.get("/{name}", response_model=ModelBody, summary="A model and its aliases")
    async def get_model(name: ModelName, request: Request, key: Reader, token: Token) -> ModelBody:
        found = await state_of(request).registry.get_model(name, token=token)
        return ModelBody.model_validate(found.to_dict())

    @router.get(
        "/{name}/versions", response_model=list[VersionBody], summary="Every version of a model"
    )
    async def versions(
        name: ModelName, request: Request, key: Reader, token: Token
    ) -> list[VersionBody]:
        found = await state_of(request).registry.versions(name, token=token)
        return [_version(v) for v in found]

    @router.post(
        "/{name}/versions",
        response_model=VersionBody,
        responses=WRITE_RESPONSES,
        summary="Register the model's next version (numbered 1, 2, ...)",
    )
    async def register_version(
        name: ModelName, body: VersionCreate, request: Request, response: Response, key: Writer
    ) -> VersionBody:
        made = await state_of(request).registry.register_version(
            name,
            artifact_uri=body.artifact_uri,
            metadata=body.metadata,
            metrics=body.metrics,
            feature_views=body.feature_views,
            run_id=body.run_id,
            actor=key.name,
        )
        send_token(response, made.token)
        return _version(made)

    @router.get("/{name}/versions/{version}", response_model=VersionBody, summary="One version")
    async def get_version(
        name: ModelName, version: Version, request: Request, key: Reader, token: Token
    ) -> VersionBody:
        return _version(await state_of(request).registry.get_version(name, version, token=token))

    @router.get(
        "/{name}/aliases/{alias}",
        response_model=VersionBody,
        summary="The version at an alias (production: the one serving), from the cache",
    )
    async def by_alias(
        name: ModelName, alias: Alias, request: Request, key: Reader, token: Token
    ) -> Response:
        found = await state_of(request).registry.get_by_alias(name, alias, token=token)
        return Response(encoded.body(found), media_type="application/json")

    @router.get(
        "/{name}/aliases/{alias}/state",
        response_model=AliasStateBody,
        summary="Where an alias points and its revision (for expected_revision)",
    )
    async def alias_state(
        name: ModelName, alias: Alias, request: Request, key: Reader, token: Token
    ) -> AliasStateBody:
        # No token: the revision a caller will pass as expected_revision must be current.
        consistency = None if token is not None else "strong"
        found = await state_of(request).registry.alias_state(
            name, alias, token=token, consistency=consistency
        )
        return AliasStateBody.model_validate(found.to_dict())

    @router.put(
        "/{name}/aliases/{alias}",
        response_model=TransitionBody,
        responses=WRITE_RESPONSES,
        summary="Move an alias to a version (409 if it moved since expected_revision)",
    )
    async def transition(
        name: ModelName,
        alias: Alias,
        body: TransitionRequest,
        request: Request,
        response: Response,
        key: Writer,
    ) -> TransitionBody:
        done = await state_of(request).registry.transition(
            name,
            body.version,
            alias,
            expected_revision=body.expected_revision,
            actor=key.name,
            reason=body.reason,
        )
        send_token(response, done.token)
        return TransitionBody.model_validate(done.to_dict())

    @router.get(
        "/{name}/history",
        response_model=list[TransitionEntry],
        summary="Who moved the model's aliases, when and why (oldest first)",
    )
    async def history(
        name: ModelName,
        request: Request,
        key: Reader,
        token: Token,
        alias: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> list[TransitionEntry]:
        found = await state_of(request).registry.history(name, alias=alias, token=token)
        return [TransitionEntry.model_validate(t.to_dict()) for t in found]

    return router

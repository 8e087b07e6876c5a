"""API keys in the catalog (``mlscale_catalog.api_keys``, catalog version 7): made,
listed and revoked by ``mlscale keys``, checked by the service.

The catalog holds each key's id, name, scope and SHA-256 digest (why a fast hash:
:mod:`mlscale.core.apikeys`), never the key itself: it is printed once when made.

:class:`KeyVerifier` remembers a verified key (and a refused one) for ``ttl_s``
seconds in the process, so most requests cost no catalog round trip; the price is
that a revoked key keeps working for up to ``ttl_s`` seconds in a process that had
just verified it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from ..core.apikeys import KeyScope, digest, new_key, parse_key, same_digest
from ..engine.cluster_async import AsyncCluster
from ..errors import MlscaleError
from ..stores.shared_async import catalog

__all__ = ["ApiKey", "ApiKeyError", "ApiKeys", "KeyVerifier", "NewKey"]

_TABLE = "mlscale_catalog.api_keys"
_WHAT = "API keys"
# Verified keys remembered at most; past it the memory starts over (a flood of
# made-up keys must not grow a process without bound).
_CACHE_ENTRIES = 10_000


class ApiKeyError(MlscaleError):
    """An API key command failed in the user's terms (no such key, a bad name)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as the catalog knows it: ``key_id`` (public), ``name``, ``scope``, when it
    was made and revoked (None: still valid)."""

    key_id: str
    name: str
    scope: KeyScope
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        """Whether the key still works (not revoked)."""
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (times as ISO strings)."""
        return {
            "id": self.key_id,
            "name": self.name,
            "scope": self.scope.value,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: what the catalog holds, and ``secret``, the key to hand out
    (shown once; mlscale keeps only its digest)."""

    key: ApiKey
    secret: str

    def __repr__(self) -> str:  # never the secret
        return f"NewKey({self.key!r})"


def _key(row: Any) -> ApiKey:
    return ApiKey(row[0], row[1], KeyScope(row[2]), row[3], row[4])


class ApiKeys:
    """The catalog's API keys of one cluster."""

    def __init__(self, cluster: AsyncCluster) -> None:
        self._cluster = cluster

    async def create(self, name: str, scope: KeyScope | str) -> NewKey:
        """Make a key called ``name`` with ``scope`` ("read" or "write")."""
        name = name.strip()
        if not name or len(name) > 200:
            raise ApiKeyError("a key's name must be 1 to 200 characters")
        try:
            level = KeyScope(scope)
        except ValueError:
            raise ApiKeyError(f"scope must be read or write, got {scope!r}") from None
        key_id, text = new_key()
        async with catalog(self._cluster, _WHAT) as conn:
            cur = await conn.execute(
                f"INSERT INTO {_TABLE} (id, name, scope, digest) VALUES (%s, %s, %s, %s) "  # noqa: S608
                "RETURNING id, name, scope, created_at, revoked_at",
                (key_id, name, level.value, digest(text)),
            )
            row = await cur.fetchone()
        assert row is not None
        return NewKey(_key(row), text)

    async def list(self, *, revoked: bool = True) -> list[ApiKey]:
        """Every key, oldest first (without revoked ones unless ``revoked``)."""
        where = "" if revoked else " WHERE revoked_at IS NULL"
        async with catalog(self._cluster, _WHAT) as conn:
            cur = await conn.execute(
                f"SELECT id, name, scope, created_at, revoked_at FROM {_TABLE}{where} "  # noqa: S608
                "ORDER BY created_at, id"
            )
            rows = await cur.fetchall()
        return [_key(r) for r in rows]

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke key ``key_id`` (again: no change); the key as it now is."""
        async with catalog(self._cluster, _WHAT) as conn:
            cur = await conn.execute(
                f"UPDATE {_TABLE} SET revoked_at = coalesce(revoked_at, now()) "  # noqa: S608
                "WHERE id = %s RETURNING id, name, scope, created_at, revoked_at",
                (key_id,),
            )
            row = await cur.fetchone()
        if row is None:
            raise ApiKeyError(f"no API key with id {key_id!r} (see `mlscale keys list`)")
        return _key(row)

    async def verify(self, text: str) -> ApiKey | None:
        """The active key ``text`` is, or None (malformed, unknown, revoked, wrong secret)."""
        parsed = parse_key(text)
        if parsed is None:
            return None
        async with catalog(self._cluster, _WHAT) as conn:
            cur = await conn.execute(
                f"SELECT id, name, scope, created_at, revoked_at, digest FROM {_TABLE} "  # noqa: S608
                "WHERE id = %s",
                (parsed.key_id,),
            )
            row = await cur.fetchone()
        if row is None or row[4] is not None or not same_digest(bytes(row[5]), digest(text)):
            return None
        return _key(row)


class KeyVerifier:
    """Checks keys through :meth:`ApiKeys.verify`, remembering answers ``ttl_s`` seconds
    (see the module docstring). Entries are named by the key's digest, not the key."""

    def __init__(self, keys: ApiKeys, ttl_s: float) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._known: dict[bytes, tuple[ApiKey | None, float]] = {}

    async def verify(self, text: str) -> ApiKey | None:
        """The active key ``text`` is, or None; from memory when checked lately."""
        if parse_key(text) is None:  # no catalog round trip for garbage
            return None
        name = digest(text)
        now = time.monotonic()
        hit = self._known.get(name)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await self._keys.verify(text)
        if self._ttl_s > 0:
            if len(self._known) >= _CACHE_ENTRIES:
                self._known.clear()
            self._known[name] = (found, now + self._ttl_s)
        return found

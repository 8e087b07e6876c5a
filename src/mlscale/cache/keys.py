"""Cache key names: namespaced, versioned, injective, and Redis Cluster aware.

Every key mlscale writes to Redis starts with ``mls:`` and the namespace, so two
applications sharing one Redis never read each other's entries, and bumping the
``version`` of a :class:`KeyBuilder` retires every entry of the old layout at once
(the old keys simply stop being read and expire).

Layout of the names a :class:`KeyBuilder` makes (``ns`` the namespace, ``1`` the
version, ``a`` and ``b`` escaped parts)::

    entry        mls:ns:v1:a:b           hash_tag=False, no group
                 mls:{ns}:v1:a:b         hash_tag=True: the whole namespace in one slot
                 mls:ns:v1:{g}:a:b       group="g": every key of group g in one slot
    lease        mls:ns:v1:%lease:{mls:ns:v1:a:b}   (untagged entry: its name is the tag)
                 mls:{ns}:v1:%lease:a:b             (tagged entry: the same tag)
                 mls:ns:v1:%lease:{g}:a:b
    tombstone    as the lease, with %tomb
    tag set      mls:ns:v1:%tag:t        (or mls:{ns}:v1:%tag:t, mls:ns:v1:%tag:{g}:t)
    epoch        mls:ns:v1:%epoch        (or mls:{ns}:v1:%epoch)
    channel      mls:ns:v1:%inval        pub/sub channel (channels have no slot)

Why each companion key exists (the Redis tier owns their contents):

- the **lease** key holds the token of the one caller allowed to fill a missed entry;
- the **tombstone** key is the short-lived marker an invalidation leaves, carrying the
  writer's causal token, so a later fill can insist on a node at least that fresh;
- the **tag set** holds the entry keys carrying a tag, so invalidation by tag never
  needs KEYS or SCAN;
- the **epoch** counter is bumped when a process reconnects to Redis after losing
  invalidations, so every process can tell that its L1 predates the gap.

A lease or tombstone always hashes to the same Redis Cluster slot as its entry, so
one Lua script may touch all three. A tag set shares a slot with its entries only
when they share a hash tag (``hash_tag=True`` or the same ``group``).

Parts are escaped (``%`` → ``%25``, ``:`` → ``%3A``, ``{`` → ``%7B``, ``}`` → ``%7D``), so
``("a:b",)`` and ``("a", "b")`` name different keys and no part can open a hash tag.
The companion markers (``%lease``, ``%tomb``, ...) cannot come out of escaping, since an
escaped ``%`` is always followed by two hex digits, so they never collide with entries.
Integer parts are written in decimal, so ``key(7)`` and ``key("7")`` are the same key
on purpose: an id read from a URL and the same id read from a row address one entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["KeyBuilder", "KeyPart"]

KeyPart = str | int
"""One component of a cache key."""

_PREFIX = "mls"
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")
_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def _escape(part: object) -> str:
    # bool is an int subclass; True would silently become "True" or 1: refuse it.
    if type(part) is str:
        return part.translate(_ESCAPES)
    if type(part) is int:
        return str(part)
    raise TypeError(f"a cache key part must be str or int, not {type(part).__name__}")


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    """Builds the Redis key names of one namespace at one layout version.

    ``namespace``: 1-64 characters from ``A-Z a-z 0-9 _ . - /`` (no colons or braces,
    so it cannot forge another namespace's prefix or a hash tag). ``version``: a
    non-negative int, bumped to retire every entry written under an older layout.
    ``hash_tag``: put the namespace in ``{...}`` so every key of the namespace lands
    on one Redis Cluster node (batch operations then need one round trip, at the cost
    of concentrating the namespace on that node; prefer ``group=`` for big namespaces).
    """

    namespace: str
    version: int = 1
    hash_tag: bool = False

    def __post_init__(self) -> None:
        if type(self.namespace) is not str or not _NAMESPACE_RE.fullmatch(self.namespace):
            raise ValueError(
                f"invalid cache namespace {self.namespace!r}: use 1-64 characters from "
                "A-Z a-z 0-9 _ . - / (no colons or braces)"
            )
        if type(self.version) is not int or self.version < 0:
            raise ValueError(f"cache key version must be an int >= 0, not {self.version!r}")

    @property
    def prefix(self) -> str:
        """The start every entry name of this builder shares, e.g. ``mls:ns:v1:``."""
        ns = f"{{{self.namespace}}}" if self.hash_tag else self.namespace
        return f"{_PREFIX}:{ns}:v{self.version}:"

    def _tail(self, parts: tuple[KeyPart, ...], group: KeyPart | None) -> str:
        if not parts:
            # key() would equal key(""): refuse rather than alias two entries.
            raise ValueError("a cache key needs at least one part")
        escaped = ":".join(_escape(p) for p in parts)
        if group is None:
            return escaped
        tag = _escape(group)
        if not tag:
            # "{}" is not a hash tag to Redis: the whole name would be hashed instead.
            raise ValueError("a cache key group must not be empty")
        return f"{{{tag}}}:{escaped}"

    def _base(self, group: KeyPart | None) -> str:
        # With a group the group is the tag, so the namespace must not be braced:
        # Redis hashes the first {...} of a name only.
        ns = self.namespace if group is not None or not self.hash_tag else f"{{{self.namespace}}}"
        return f"{_PREFIX}:{ns}:v{self.version}:"

    def key(self, *parts: KeyPart, group: KeyPart | None = None) -> str:
        """The entry key for ``parts`` (one or more, str or int each), e.g.
        ``mls:ns:v1:user:42``.

        ``group``: a value put in a hash tag, so every key built with the same group
        (in any namespace) lands in one Redis Cluster slot; it overrides ``hash_tag``.
        """
        return self._base(group) + self._tail(parts, group)

    def _companion(self, kind: str, parts: tuple[KeyPart, ...], group: KeyPart | None) -> str:
        base = self._base(group)
        marker = f"{base}%{kind}:"
        if group is not None or self.hash_tag:
            return marker + self._tail(parts, group)
        # Untagged entry: Redis hashes its whole name, so the companion carries that
        # name as its hash tag (entry names never contain braces) and shares its slot.
        return f"{marker}{{{base}{self._tail(parts, None)}}}"

    def lease_key(self, *parts: KeyPart, group: KeyPart | None = None) -> str:
        """The key holding the fill lease of entry ``key(*parts, group=group)``; same slot."""
        return self._companion("lease", parts, group)

    def tombstone_key(self, *parts: KeyPart, group: KeyPart | None = None) -> str:
        """The key of the invalidation tombstone of entry ``key(*parts, group=group)``;
        same slot."""
        return self._companion("tomb", parts, group)

    def tag_key(self, tag: KeyPart, *, group: KeyPart | None = None) -> str:
        """The key of the set of entry keys carrying ``tag``. With ``group`` (or
        ``hash_tag``) it shares the slot of that group's entries."""
        return self._base(group) + "%tag:" + self._tail((tag,), group)

    def epoch_key(self) -> str:
        """The key of this namespace's epoch counter (bumped on reconnect)."""
        return self.prefix + "%epoch"

    def invalidation_channel(self) -> str:
        """The pub/sub channel carrying this namespace's L1 invalidations."""
        return self.prefix + "%inval"

    def owns(self, key: str) -> bool:
        """Whether ``key`` is a name this builder could have made (any kind, any group)."""
        plain = f"{_PREFIX}:{self.namespace}:v{self.version}:"
        return key.startswith(plain) or key.startswith(self.prefix)

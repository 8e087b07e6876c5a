"""The Redis tier (L2): leases, tombstones, version-guarded sets, tags and batches.

Values are opaque ``bytes`` (the caller encodes). Every change to an entry is one
Lua script (:mod:`.scripts`), run by EVALSHA, so each decision below is atomic on
the server:

- ``lease_get`` on a miss grants a lease token to exactly one caller; the others
  are told to wait (and get the stale value, if one is kept and they allow it).
  If a recent invalidation left a tombstone, its causal token comes back with the
  lease: the holder must load from a node at least that fresh.
- ``lease_set`` stores only with the outstanding token and a version not older
  than the entry's version floor.
- ``set`` (write-through) never replaces a newer version and voids any lease,
  since its holder may have read an older row.
- ``invalidate`` removes values, voids leases (an in-flight fill is refused) and
  leaves a tombstone with the writer's causal token and version floor.
- A tag is a sorted set ``tag_prefix + tag`` of member keys scored by how long the
  membership must last; ``invalidate_tag`` invalidates the members. No KEYS/SCAN.

An entry is one Redis hash, so a script touches one slot and runs on Redis Cluster
whatever the key. A tag lives in its own slot (unless the caller puts the same hash
tag in the tag name): membership is recorded in a round trip that completes
*before* a lease is granted or a value stored, so a tag invalidation that misses a
new member can only race a fill that read after the invalidation's commit.

Batches (``get_many``, ``set_many``, ``invalidate``) group keys by hash slot, one
script call per slot group, all in one pipeline: one round trip per node.

Decisions are made apart from I/O: :class:`RemotePlans` turns a call into
script calls and their replies into typed results; :class:`RemoteCache` here and
``AsyncRemoteCache`` in :mod:`.remote_async` only send. Errors::

    CacheError (mlscale.errors)
    ├── CacheValueTooLarge   value over ``max_value_bytes``; nothing stored
    └── CacheUnavailable     Redis could not be reached or timed out (the policy
                             layer falls back to the database)
"""

from __future__ import annotations

import contextlib
import enum
import random
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgpack
import redis
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.retry import Retry

from ..errors import CacheError, CacheValueTooLarge
from . import scripts
from .scripts import Script

__all__ = [
    "CacheUnavailable",
    "Entry",
    "EntryState",
    "Got",
    "LeaseGet",
    "LeaseOutcome",
    "Refusal",
    "RemoteCache",
    "RemotePlans",
    "RemoteSettings",
    "Stored",
]

T = TypeVar("T")

MAX_VERSION = 2**53 - 1  # compared as Lua doubles on the server: exact up to here
# Tag memberships outlive their entry by this much, so clock differences between
# the node holding a tag and the node holding an entry cannot end one too early.
_TAG_MARGIN_MS = 1_000
# Keys per script call: one call must not block Redis for long.
_BATCH_KEYS = 500


class CacheUnavailable(CacheError):
    """Redis could not be reached, refused the connection or did not answer in time.

    The policy layer catches it to serve from the database instead; ``__cause__``
    holds redis-py's error."""


class EntryState(enum.Enum):
    """What the cache holds for a key."""

    VALUE = "value"  # a value
    ABSENT = "absent"  # a negative entry: the database had no row (cached absence)
    MISS = "miss"  # nothing usable


class LeaseOutcome(enum.Enum):
    """What ``lease_get`` decided."""

    HIT = "hit"  # a fresh value or absence: use it
    GRANTED = "granted"  # this caller holds the lease: load, then ``lease_set``
    WAIT = "wait"  # another caller holds the lease: wait briefly and retry


class Refusal(enum.Enum):
    """Why a store was refused."""

    NO_LEASE = "no_lease"  # the token is not the outstanding lease (voided, expired, wrong)
    OLDER_VERSION = "older_version"  # a newer version is or was cached for the key


@dataclass(frozen=True, slots=True)
class Got:
    """The result of ``get``: ``value`` is set when ``state`` is VALUE; ``version``
    when it is VALUE or ABSENT."""

    key: str
    state: EntryState
    value: bytes | None = None
    version: int | None = None

    @property
    def hit(self) -> bool:
        """Whether the cache answered (a value or a cached absence)."""
        return self.state is not EntryState.MISS


@dataclass(frozen=True, slots=True)
class LeaseGet:
    """The result of ``lease_get``.

    On HIT, ``state``/``value``/``version`` are the fresh entry. On GRANTED or WAIT
    they are the stale entry when one was kept and the call allowed stale
    (``stale`` is then True), else ``state`` is MISS. ``token`` is set on GRANTED
    only. ``tombstone`` says a recent invalidation left one; ``causal_token`` is
    the token it carried (None if the writer gave none): load from a node at least
    that fresh.
    """

    key: str
    outcome: LeaseOutcome
    state: EntryState = EntryState.MISS
    value: bytes | None = None
    version: int | None = None
    stale: bool = False
    token: str | None = None
    tombstone: bool = False
    causal_token: str | None = None


@dataclass(frozen=True, slots=True)
class Stored:
    """The result of ``set``/``lease_set``: truthy when stored, else ``refusal`` says why."""

    key: str
    ok: bool
    refusal: Refusal | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True, slots=True)
class Entry:
    """One write-through write for ``set_many``; ``value`` None caches absence."""

    key: str
    value: bytes | None
    version: int
    ttl_ms: int | None = None
    tags: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteSettings:
    """Tunables of the Redis tier; every duration in milliseconds.

    ``stale_ms``: how long an expired or invalidated value is kept to be served
    as stale (0: never). ``ttl_jitter``: each TTL is shortened by a random share up
    to this fraction, so keys written together do not expire together.
    """

    default_ttl_ms: int = 5 * 60 * 1000
    negative_ttl_ms: int = 30 * 1000
    lease_ttl_ms: int = 2 * 1000
    tombstone_ttl_ms: int = 10 * 1000
    stale_ms: int = 0
    ttl_jitter: float = 0.0
    max_value_bytes: int = 8 * 1024 * 1024
    tag_prefix: str = "tag:"

    def __post_init__(self) -> None:
        for name in (
            "default_ttl_ms",
            "negative_ttl_ms",
            "lease_ttl_ms",
            "tombstone_ttl_ms",
            "max_value_bytes",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.stale_ms < 0:
            raise ValueError(f"stale_ms must be >= 0, not {self.stale_ms}")
        if not 0.0 <= self.ttl_jitter < 1.0:
            raise ValueError(f"ttl_jitter must be in [0, 1), not {self.ttl_jitter}")


@dataclass(frozen=True, slots=True)
class Call:
    """One EVALSHA to send."""

    script: Script
    keys: tuple[bytes, ...]
    args: tuple[bytes | str | int, ...]


@dataclass(frozen=True, slots=True)
class Plan(Generic[T]):
    """Script calls in phases, and how their replies become the result.

    Each phase is sent as one pipeline; a phase is sent only after the previous
    one has been answered (a tag membership before the lease it guards). ``finish``
    receives the replies of every call, in order, phases concatenated.
    """

    phases: list[list[Call]]
    finish: Callable[[list[Any]], T]


def jittered(ttl_ms: int, jitter: float, rng: Callable[[], float] = random.random) -> int:
    """``ttl_ms`` shortened by a random share up to ``jitter`` (never below 1 ms)."""
    if jitter <= 0.0:
        return ttl_ms
    return max(1, ttl_ms - int(ttl_ms * jitter * rng()))


def _text(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise ValueError(f"a version must be an int in 0 .. 2**53-1, not {version!r}")


def _check_ms(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int of milliseconds, not {value!r}")


@dataclass(frozen=True, slots=True)
class RemotePlans:
    """Pure planning of the Redis tier: what to send for each call and how to read
    the replies. No I/O; shared by the sync and async clients."""

    settings: RemoteSettings = field(default_factory=RemoteSettings)
    cluster: bool = False
    rng: Callable[[], float] = random.random

    # -- helpers ------------------------------------------------------------------

    def _slot(self, key: bytes) -> int:
        return key_slot(key) if self.cluster else 0

    def _groups(self, keys: Sequence[str]) -> list[list[int]]:
        """Indexes of ``keys`` grouped by hash slot, each group at most _BATCH_KEYS."""
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(self._slot(key.encode()), []).append(i)
        out: list[list[int]] = []
        for idx in by_slot.values():
            out += [idx[j : j + _BATCH_KEYS] for j in range(0, len(idx), _BATCH_KEYS)]
        return out

    def _tag_calls(self, members_by_tag: dict[str, list[str]], life_ms: int) -> list[Call]:
        life = life_ms + _TAG_MARGIN_MS
        return [
            Call(
                scripts.TAG_ADD,
                ((self.settings.tag_prefix + tag).encode(),),
                (life, *[m.encode() for m in members]),
            )
            for tag, members in members_by_tag.items()
        ]

    def _phases(self, first: list[Call], then: list[Call]) -> list[list[Call]]:
        """``first`` answered before ``then`` is sent, unless all share one slot."""
        if not first:
            return [then]
        slots = {self._slot(k) for c in first + then for k in c.keys}
        if len(slots) == 1:
            return [first + then]  # one node, one connection: pipeline order holds
        return [first, then]

    def _value_args(self, value: bytes | None) -> tuple[str, bytes]:
        if value is None:
            return "1", b""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"the Redis tier stores bytes, not {type(value).__name__}")
        if len(value) > self.settings.max_value_bytes:
            raise CacheValueTooLarge(
                f"a value of {len(value)} bytes is over the cache's limit of "
                f"{self.settings.max_value_bytes} bytes; nothing was stored"
            )
        return "0", bytes(value)

    def _ttl(self, value: bytes | None, ttl_ms: int | None) -> int:
        if ttl_ms is None:
            s = self.settings
            ttl_ms = s.negative_ttl_ms if value is None else s.default_ttl_ms
        _check_ms("ttl_ms", ttl_ms)
        return jittered(ttl_ms, self.settings.ttl_jitter, self.rng)

    # -- reads --------------------------------------------------------------------

    def get(self, key: str) -> Plan[Got]:
        """One GET script call for one key: :meth:`get_many`'s plan without grouping
        (the L2 hit of a single key is the tier's hottest call)."""
        call = Call(scripts.GET, (key.encode(),), ())
        return Plan([[call]], lambda replies: _got_one(key, replies[0]))

    def get_many(self, keys: Sequence[str]) -> Plan[list[Got]]:
        """One GET script call per slot group; results in the order of ``keys``."""
        keys = list(keys)
        groups = self._groups(keys)
        calls = [Call(scripts.GET, tuple(keys[i].encode() for i in g), ()) for g in groups]

        def finish(replies: list[Any]) -> list[Got]:
            out: list[Got | None] = [None] * len(keys)
            for group, reply in zip(groups, replies, strict=True):
                for i, item in zip(group, _unpacked(reply), strict=True):
                    out[i] = _got(keys[i], item)
            return [g for g in out if g is not None]

        return Plan([calls], finish)

    def lease_get(
        self,
        key: str,
        *,
        lease_ttl_ms: int | None = None,
        allow_stale: bool = False,
        tags: Sequence[str] = (),
    ) -> Plan[LeaseGet]:
        """The lease script, after the key's tag memberships (see the module doc)."""
        lease_ttl = self.settings.lease_ttl_ms if lease_ttl_ms is None else lease_ttl_ms
        _check_ms("lease_ttl_ms", lease_ttl)
        token = secrets.token_hex(12)
        tag_calls = self._tag_calls({t: [key] for t in tags}, lease_ttl)
        call = Call(
            scripts.LEASE_GET, (key.encode(),), (token, lease_ttl, "1" if allow_stale else "0")
        )

        def finish(replies: list[Any]) -> LeaseGet:
            return _lease_get(key, token, replies[-1])

        return Plan(self._phases(tag_calls, [call]), finish)

    # -- writes -------------------------------------------------------------------

    def _store(self, mode: str, token: str, entries: Sequence[Entry]) -> Plan[list[Stored]]:
        stores: list[Call] = []
        by_life: dict[int, dict[str, list[str]]] = {}
        for e in entries:
            _check_version(e.version)
            negative, raw = self._value_args(e.value)
            ttl = self._ttl(e.value, e.ttl_ms)
            life = ttl + self.settings.stale_ms
            for tag in e.tags:
                by_life.setdefault(life, {}).setdefault(tag, []).append(e.key)
            stores.append(
                Call(
                    scripts.STORE,
                    (e.key.encode(),),
                    (mode, token, str(e.version), negative, raw, ttl, self.settings.stale_ms),
                )
            )
        tag_calls = [c for life, tags in by_life.items() for c in self._tag_calls(tags, life)]
        n = len(stores)

        def finish(replies: list[Any]) -> list[Stored]:
            return [_stored(e.key, r) for e, r in zip(entries, replies[-n:], strict=True)]

        return Plan(self._phases(tag_calls, stores), finish)

    def lease_set(
        self,
        key: str,
        token: str,
        value: bytes | None,
        version: int,
        *,
        ttl_ms: int | None = None,
        tags: Sequence[str] = (),
    ) -> Plan[Stored]:
        """A fill: stored only with the outstanding ``token`` and version >= floor."""
        if not token:
            raise ValueError("lease_set needs the token lease_get granted")
        plan = self._store("lease", token, [Entry(key, value, version, ttl_ms, tags)])
        return Plan(plan.phases, lambda replies: plan.finish(replies)[0])

    def set_many(self, entries: Sequence[Entry]) -> Plan[list[Stored]]:
        """Write-through stores: each refused only if a newer version is or was cached."""
        return self._store("set", "", list(entries))

    def invalidate(
        self,
        keys: Iterable[str],
        causal_token: str | None = None,
        *,
        version: int | None = None,
        tombstone_ttl_ms: int | None = None,
    ) -> Plan[int]:
        """One INVALIDATE call per slot group; the result counts fresh values removed."""
        keys = list(dict.fromkeys(keys))
        tomb = self.settings.tombstone_ttl_ms if tombstone_ttl_ms is None else tombstone_ttl_ms
        _check_ms("tombstone_ttl_ms", tomb)
        if version is not None:
            _check_version(version)
        if causal_token == "":
            raise ValueError("causal_token must be a non-empty string or None")
        args = (
            causal_token or "",
            tomb,
            self.settings.stale_ms,
            "" if version is None else str(version),
        )
        calls = [
            Call(scripts.INVALIDATE, tuple(keys[i].encode() for i in g), args)
            for g in self._groups(keys)
        ]
        return Plan([calls] if calls else [], lambda replies: sum(int(r) for r in replies))

    def tag_members(self, tag: str) -> Plan[list[str]]:
        """The keys whose membership of ``tag`` is not over."""
        call = Call(scripts.TAG_MEMBERS, ((self.settings.tag_prefix + tag).encode(),), ())
        return Plan([[call]], lambda replies: [_text(m) for m in replies[0]])


def _unpacked(reply: Any) -> Any:
    """A script's cmsgpack reply (GET, LEASE_GET) as lists of bytes and ints."""
    if not isinstance(reply, bytes):
        raise CacheError(f"unexpected reply from the cache's script: {reply!r:.80}")
    try:
        return msgpack.unpackb(reply, raw=True, use_list=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise CacheError(f"unreadable reply from the cache's script: {exc}") from exc


def _got_one(key: str, reply: Any) -> Got:
    items = _unpacked(reply)
    if len(items) != 1:
        raise CacheError(f"the cache's GET script answered {len(items)} entries for one key")
    return _got(key, items[0])


def _got(key: str, item: Any) -> Got:
    if item == 0 or item is None:
        return Got(key, EntryState.MISS)
    if item[0] == b"n":
        return Got(key, EntryState.ABSENT, None, int(item[1]))
    return Got(key, EntryState.VALUE, bytes(item[2]), int(item[1]))


def _lease_get(key: str, token: str, reply: Any) -> LeaseGet:
    kind, ver, negative, value, tomb, ttok = _unpacked(reply)
    outcome = LeaseOutcome(_text(kind))
    has_value = _text(ver) != ""
    state = (
        EntryState.MISS
        if not has_value
        else EntryState.ABSENT
        if _text(negative) == "1"
        else EntryState.VALUE
    )
    return LeaseGet(
        key=key,
        outcome=outcome,
        state=state,
        value=bytes(value) if state is EntryState.VALUE else None,
        version=int(ver) if has_value else None,
        stale=has_value and outcome is not LeaseOutcome.HIT,
        token=token if outcome is LeaseOutcome.GRANTED else None,
        tombstone=_text(tomb) == "1",
        causal_token=_text(ttok) or None,
    )


def _stored(key: str, reply: Any) -> Stored:
    text = _text(reply)
    if text == "ok":
        return Stored(key, True)
    return Stored(key, False, Refusal.NO_LEASE if text == "lease" else Refusal.OLDER_VERSION)


# -- I/O: errors translated once, here ------------------------------------------------

_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    OSError,
)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """redis-py's errors as the cache's: unreachable -> CacheUnavailable, else CacheError."""
    try:
        yield
    except CacheError:
        raise
    except _UNAVAILABLE as exc:
        raise CacheUnavailable(f"the cache's Redis is unavailable: {exc}") from exc
    except redis.RedisError as exc:
        raise CacheError(f"the cache's Redis refused a call: {exc}") from exc


def check_replies(replies: list[Any]) -> list[int]:
    """Indexes of replies that failed for NOSCRIPT (to resend after loading the
    scripts); raises for any other error reply."""
    missing: list[int] = []
    for i, reply in enumerate(replies):
        if isinstance(reply, redis.exceptions.NoScriptError):
            missing.append(i)
        elif isinstance(reply, Exception):
            with translated():
                raise reply
    return missing


def default_retry() -> Retry:
    """One quick retry (a pooled connection may be stale after a Redis restart), no
    more: a down Redis must surface as CacheUnavailable in well under a second."""
    return Retry(ExponentialBackoff(cap=0.05, base=0.01), 1)


AnyRedis = redis.Redis | redis.RedisCluster


def _blocking_pool(opts: dict[str, Any]) -> redis.BlockingConnectionPool:
    return redis.BlockingConnectionPool(**opts)  # type: ignore[no-untyped-call]


class RemoteCache:
    """The Redis tier over a sync ``redis.Redis`` or ``redis.RedisCluster``.

    Give it a client whose socket timeouts are set (``connect`` does), or a call
    to a hung Redis could wait forever. Safe to share across threads (redis-py's
    pool is). See the module docstring for the semantics.
    """

    def __init__(self, client: AnyRedis, *, settings: RemoteSettings | None = None) -> None:
        self.client = client
        self.plans = RemotePlans(
            settings or RemoteSettings(), cluster=isinstance(client, redis.RedisCluster)
        )
        self._closed = False

    @classmethod
    def connect(
        cls,
        host: str = "127.0.0.1",
        port: int = 6379,
        *,
        password: str | None = None,
        cluster: bool = False,
        connect_timeout_s: float = 0.5,
        timeout_s: float = 1.0,
        max_connections: int = 64,
        settings: RemoteSettings | None = None,
    ) -> RemoteCache:
        """A cache over a new client with timeouts set; ``cluster`` for Redis Cluster
        (``host:port`` is any node). ``max_connections`` is per node; seconds for
        the timeouts."""
        opts: dict[str, Any] = {
            "host": host,
            "port": port,
            "password": password,
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": timeout_s,
            "retry": default_retry(),
            # Callers beyond max_connections wait for a connection (up to timeout_s)
            # rather than fail: a stampede of threads must queue, not error.
            "max_connections": max_connections,
            "timeout": timeout_s,
        }
        with translated():
            client: AnyRedis = (
                redis.RedisCluster(
                    **opts,
                    connection_pool_class=redis.BlockingConnectionPool,
                )
                if cluster
                else redis.Redis(connection_pool=_blocking_pool(opts))
            )
        return cls(client, settings=settings)

    # -- sending ------------------------------------------------------------------

    def _send(self, calls: list[Call]) -> list[Any]:
        if len(calls) == 1:
            c = calls[0]
            try:
                return [self.client.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for c in calls:
            pipe.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
        return list(pipe.execute(raise_on_error=False))

    def _load_scripts(self) -> None:
        for script in scripts.ALL_SCRIPTS:
            self.client.script_load(script.source)  # on a cluster: every primary

    def _run(self, plan: Plan[T]) -> T:
        if self._closed:
            raise CacheError("this RemoteCache is closed")
        phases = plan.phases if self.plans.cluster else [[c for p in plan.phases for c in p]]
        replies: list[Any] = []
        with translated():
            for phase in phases:
                got = self._send(phase) if phase else []
                missing = check_replies(got)
                if missing:  # first use, a restarted Redis or a new cluster node
                    self._load_scripts()
                    again = self._send([phase[i] for i in missing])
                    if check_replies(again):
                        raise CacheError("Redis did not keep the cache's Lua scripts")
                    for i, reply in zip(missing, again, strict=True):
                        got[i] = reply
                replies += got
        return plan.finish(replies)

    # -- the API --------------------------------------------------------------------

    def get(self, key: str) -> Got:
        """The fresh value or cached absence of ``key``, or a miss."""
        return self._run(self.plans.get(key))

    def get_many(self, keys: Sequence[str]) -> list[Got]:
        """``get`` of every key in one round trip per node; in the order of ``keys``."""
        return self._run(self.plans.get_many(keys))

    def lease_get(
        self,
        key: str,
        *,
        lease_ttl_ms: int | None = None,
        allow_stale: bool = False,
        tags: Sequence[str] = (),
    ) -> LeaseGet:
        """A hit, or a lease to fill the key (exactly one caller at a time), or WAIT.
        ``tags`` are recorded before the lease is granted, so that a tag
        invalidation during the fill voids it."""
        return self._run(
            self.plans.lease_get(key, lease_ttl_ms=lease_ttl_ms, allow_stale=allow_stale, tags=tags)
        )

    def lease_set(
        self,
        key: str,
        token: str,
        value: bytes | None,
        version: int,
        *,
        ttl_ms: int | None = None,
        tags: Sequence[str] = (),
    ) -> Stored:
        """Fill ``key`` with the lease ``token``; ``value`` None caches absence (with
        the negative TTL unless ``ttl_ms``). Refused (falsy, with a reason) if the
        lease was voided or expired, or ``version`` is older than the key's floor."""
        return self._run(self.plans.lease_set(key, token, value, version, ttl_ms=ttl_ms, tags=tags))

    def set(
        self,
        key: str,
        value: bytes | None,
        version: int,
        *,
        ttl_ms: int | None = None,
        tags: Sequence[str] = (),
    ) -> Stored:
        """Write-through: store unless a newer version is or was cached; voids leases."""
        return self._run(self.plans.set_many([Entry(key, value, version, ttl_ms, tags)]))[0]

    def set_many(self, entries: Sequence[Entry]) -> list[Stored]:
        """``set`` of many entries in one round trip per node (two with tags on a cluster)."""
        return self._run(self.plans.set_many(entries))

    def invalidate(
        self,
        keys: Iterable[str],
        causal_token: str | None = None,
        *,
        version: int | None = None,
        tombstone_ttl_ms: int | None = None,
    ) -> int:
        """Remove the keys' values, void their leases, leave tombstones carrying
        ``causal_token`` and (if given) the writer's ``version`` as a floor. Returns
        how many keys held a fresh value."""
        return self._run(
            self.plans.invalidate(
                keys, causal_token, version=version, tombstone_ttl_ms=tombstone_ttl_ms
            )
        )

    def invalidate_tag(
        self,
        tag: str,
        causal_token: str | None = None,
        *,
        version: int | None = None,
        tombstone_ttl_ms: int | None = None,
    ) -> int:
        """``invalidate`` every member of ``tag``; how many held a fresh value."""
        members = self.tag_members(tag)
        return self.invalidate(
            members, causal_token, version=version, tombstone_ttl_ms=tombstone_ttl_ms
        )

    def tag_members(self, tag: str) -> list[str]:
        """The keys whose membership of ``tag`` is not over (e.g. to drop them from L1)."""
        return self._run(self.plans.tag_members(tag))

    def close(self) -> None:
        """Close the client's connections; later calls raise CacheError."""
        self._closed = True
        self.client.close()

    def __enter__(self) -> RemoteCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Feast, the peer ``mlscale bench features`` is compared with, driven from mlscale's venv.

Feast cannot live in mlscale's venv (its pins clash with ours), so it gets a venv of
its own, made on demand by :func:`feast_python`, and runs :mod:`.feast_probe` there
as a subprocess that answers one JSON line per command. :class:`FeastProbe` is this
side of that conversation: it starts the probe over one online store (Feast's
PostgreSQL store or its Redis store), sends ``load``/``round``/``size``/``teardown``,
and parses each answer into a small frozen dataclass.

Secrets pass by environment only (``$MLSCALE_BENCH_PG_PASSWORD``,
``$MLSCALE_BENCH_REDIS_PASSWORD``), never argv, so ``ps`` does not show them. Every
answer is awaited with a timeout: a stuck Feast is killed and reported as a
:class:`FeastProbeError`, never left to hang the benchmark. Errors::

    MlscaleError
    └── FeastProbeError   the probe failed to start, answered an error, died or timed out
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal

from ..engine.connect import redis_password
from ..errors import ConfigError, MlscaleError
from .peer_venv import peer_python

if TYPE_CHECKING:
    from ..config import ClusterConfig
    from ..core.topology import Node

__all__ = [
    "FEAST_REQUIREMENT",
    "FEAST_VERSION",
    "FeastProbe",
    "FeastProbeError",
    "FeastReady",
    "LoadResult",
    "PgSize",
    "PgTarget",
    "RedisSize",
    "RedisTarget",
    "RoundResult",
    "feast_python",
    "passfile_password",
    "pg_target",
    "redis_target",
]

# The newest 0.6x release on PyPI; it installs and runs under Python 3.11 here (its
# PostgreSQL store on psycopg 3, its Redis store on redis-py). Its own dependencies
# are left to pip's resolver within Feast's pins.
FEAST_VERSION = "0.67.0"
FEAST_REQUIREMENT = f"feast[postgres,redis]=={FEAST_VERSION}"
PG_PASSWORD_ENV = "MLSCALE_BENCH_PG_PASSWORD"
REDIS_PASSWORD_ENV = "MLSCALE_BENCH_REDIS_PASSWORD"
# pip resolving and fetching ~600 MB of wheels (pyarrow, pandas, numpy, ...): about
# 30 s with a warm pip cache here; the bound leaves room for a cold one.
INSTALL_TIMEOUT_S = 15 * 60.0
# Importing Feast alone takes ~3.5 s on this 2-core machine; apply adds little.
START_TIMEOUT_S = 180.0
REPLY_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 10.0


class FeastProbeError(MlscaleError):
    """The Feast probe failed to start, answered an error, died, or did not answer in
    time (then it was killed)."""


# -- the venv ----------------------------------------------------------------------------------


def feast_python(*, timeout_s: float = INSTALL_TIMEOUT_S) -> tuple[Path | None, str]:
    """The interpreter of a venv holding :data:`FEAST_REQUIREMENT` (``feast`` under the
    peers' venvs: :func:`~.peer_venv.peer_python`), or ``(None, why)``; ``timeout_s``
    bounds each install step (seconds)."""
    check = (
        "import feast, psycopg, redis, pandas; "
        f"raise SystemExit(feast.__version__ != {FEAST_VERSION!r})"
    )
    return peer_python("feast", [FEAST_REQUIREMENT], check, timeout_s=timeout_s)


# -- where Feast's online store lives ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgTarget:
    """The PostgreSQL server Feast's PostgreSQL online store writes to."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)

    def facts(self) -> dict[str, Any]:
        """What the probe's config may carry: everything but the password."""
        return {"host": self.host, "port": self.port, "dbname": self.dbname, "user": self.user}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """The Redis Feast's Redis online store writes to."""

    host: str
    port: int
    db: int = 0
    password: str | None = field(default=None, repr=False)

    def facts(self) -> dict[str, Any]:
        """What the probe's config may carry: everything but the password."""
        return {"host": self.host, "port": self.port, "db": self.db}


def _passfile_fields(line: str) -> list[str]:
    # libpq's format: five fields split on ':'; a backslash makes the next character
    # literal (an escaped ':' or backslash).
    fields: list[str] = []
    cur: list[str] = []
    escaped = False
    for ch in line:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    fields.append("".join(cur))
    return fields


def passfile_password(path: Path, node: Node) -> str | None:
    """The password libpq would take from passfile ``path`` for ``node`` (first line
    whose host, port, database and user match, ``*`` matching anything), or None."""
    want = (node.host, str(node.port), node.dbname, node.user)
    for raw in path.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        fields = _passfile_fields(raw)
        if len(fields) < 5:
            continue
        if all(f in ("*", w) for f, w in zip(fields[:4], want, strict=True)):
            return ":".join(fields[4:])
    return None


def pg_target(config: ClusterConfig, node: Node) -> PgTarget:
    """Where Feast's PostgreSQL store goes: ``node`` (a shard group's primary, say),
    with mlscale's password for it from ``auth.password_env`` or ``auth.passfile``."""
    auth = config.auth
    password: str | None = None
    if auth.password_env:
        password = os.environ.get(auth.password_env)
        if password is None:
            raise ConfigError(f"auth.password_env names ${auth.password_env}, which is not set")
    elif auth.passfile is not None:
        path = config.resolve(auth.passfile)
        try:
            password = passfile_password(path, node) if path else None
        except OSError as exc:
            raise ConfigError(f"auth.passfile {path}: cannot read ({exc.strerror})") from exc
    return PgTarget(node.host, node.port, node.dbname, node.user, password)


def redis_target(config: ClusterConfig) -> RedisTarget:
    """Where Feast's Redis store goes: the cluster's ``[redis]``, with its password."""
    if config.redis is None:
        raise ConfigError("the config has no [redis] section for Feast's Redis store")
    rc = config.redis
    return RedisTarget(rc.host, rc.port, rc.db, redis_password(config))


# -- the probe's answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FeastReady:
    """The probe is up: which Feast, and how long ``FeatureStore.apply`` took (s)."""

    feast_version: str
    apply_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """``load``: entities written, and seconds spent in ``write_to_online_store``."""

    loaded: int
    seconds: float

    @property
    def entities_per_s(self) -> float:
        """Entities written per second of Feast's write calls."""
        return self.loaded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "entities_per_s": self.entities_per_s}


@dataclass(frozen=True, slots=True)
class RoundResult:
    """``round``: ``get_online_features(...).to_dict()`` over batches, each call timed.
    ``seconds`` is the sum of the timed calls; latencies are nearest-rank percentiles
    in ms; every value read back was checked against the formula (``mismatches``)."""

    batches: int
    entities: int
    seconds: float
    p50_ms: float
    p99_ms: float
    entities_per_s: float
    values_checked: int
    mismatches: int
    mismatch_examples: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mismatch_examples"] = list(self.mismatch_examples)
        return out


@dataclass(frozen=True, slots=True)
class PgSize:
    """``size`` on the PostgreSQL store: bytes on disk (``pg_total_relation_size``,
    indexes and TOAST included) and rows (one per entity and feature) of the project's
    online tables."""

    bytes: int
    rows: int
    tables: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "rows": self.rows, "tables": list(self.tables)}


@dataclass(frozen=True, slots=True)
class RedisSize:
    """``size`` on the Redis store: the server's ``used_memory`` (bytes, all of it, not
    only Feast's: take a difference around a load), its key count, and the keys of the
    project (one hash per entity)."""

    used_memory: int
    dbsize: int
    project_keys: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- the probe process -----------------------------------------------------------------------


def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _drain(stream: IO[str], tail: deque[str]) -> None:
    # Drained all along, or a chatty Feast would fill the pipe and block the probe.
    for line in stream:
        tail.append(line.rstrip())


class FeastProbe:
    """The subprocess running :mod:`.feast_probe` under Feast's venv, over one online
    store (``"postgres"`` on ``pg``, or ``"redis"`` on ``redis``).

    Starting applies Entity ``entity_id`` and FeatureView ``fv`` of ``features``
    Float32 fields in project ``project`` (its tables or keys are the project's own:
    pick a fresh name per run, and :meth:`teardown` at the end). ``gc_freeze``
    freezes the probe's heap before each round (see :mod:`.feast_probe`): off, Feast
    is measured as shipped, full collections of its large heap included. The process is always
    stopped: by :meth:`close`, on leaving a ``with`` block, and by any command that
    fails (an error answer, a death, a timeout), so no failure leaves it running. Use
    after close raises :class:`FeastProbeError`."""

    def __init__(
        self,
        python: Path,
        *,
        store: Literal["postgres", "redis"],
        repo_dir: Path,
        project: str,
        pg: PgTarget | None = None,
        redis: RedisTarget | None = None,
        features: int = 50,
        gc_freeze: bool = False,
        start_timeout_s: float = START_TIMEOUT_S,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        target = pg if store == "postgres" else redis
        if target is None:
            raise FeastProbeError(f"a Feast {store} store needs its server ({store} target)")
        self.store = store
        self.reply_timeout_s = reply_timeout_s
        config = {
            "repo_dir": str(repo_dir),
            "store": store,
            "project": project,
            "features": features,
            "gc_freeze": gc_freeze,
            "pg": pg.facts() if pg else None,
            "redis": redis.facts() if redis else None,
        }
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for name in ("HOME", "TMPDIR", "LANG"):
            if name in os.environ:
                env[name] = os.environ[name]
        if pg is not None and pg.password is not None:
            env[PG_PASSWORD_ENV] = pg.password
        if redis is not None and redis.password is not None:
            env[REDIS_PASSWORD_ENV] = redis.password
        script = Path(__file__).with_name("feast_probe.py")
        repo_dir.mkdir(parents=True, exist_ok=True)
        self._closed = False
        self._stderr: deque[str] = deque(maxlen=40)
        self._lines: queue.Queue[str | None] = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                [str(python), str(script), json.dumps(config)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=env, cwd=str(repo_dir),
            )  # fmt: skip
        except OSError as exc:
            raise FeastProbeError(f"the Feast probe could not start: {exc}") from exc
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for target_fn, stream, sink in (
            (_pump, self.proc.stdout, self._lines),
            (_drain, self.proc.stderr, self._stderr),
        ):
            threading.Thread(target=target_fn, args=(stream, sink), daemon=True).start()
        try:
            got = self._answer("start", start_timeout_s)
            self.ready = FeastReady(str(got["feast"]), float(got["apply_s"]))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> FeastProbe:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- commands --

    def load(self, start: int, count: int, chunk: int = 1000, *,
             timeout_s: float | None = None) -> LoadResult:  # fmt: skip
        """Write entities ``start .. start+count-1`` (all features) to the online store
        with ``write_to_online_store``, ``chunk`` rows a call."""
        got = self.ask(f"load {int(start)} {int(count)} {int(chunk)}", timeout_s)
        return LoadResult(int(got["loaded"]), float(got["seconds"]))

    def round(self, ids: list[int], batch: int = 100, *,
              timeout_s: float | None = None) -> RoundResult:  # fmt: skip
        """Read ``ids`` in consecutive batches of ``batch`` with ``get_online_features``
        of all the view's features, each call timed."""
        if not ids:
            raise FeastProbeError("a round needs at least one entity id")
        got = self.ask(f"round {int(batch)} {','.join(str(int(i)) for i in ids)}", timeout_s)
        return RoundResult(
            batches=int(got["batches"]), entities=int(got["entities"]),
            seconds=float(got["seconds"]), p50_ms=float(got["p50_ms"]),
            p99_ms=float(got["p99_ms"]), entities_per_s=float(got["entities_per_s"]),
            values_checked=int(got["values_checked"]), mismatches=int(got["mismatches"]),
            mismatch_examples=tuple(got.get("mismatch_examples", ())),
        )  # fmt: skip

    def size(self, *, timeout_s: float | None = None) -> PgSize | RedisSize:
        """The online store's footprint: :class:`PgSize` or :class:`RedisSize`."""
        got = self.ask("size", timeout_s)
        if self.store == "postgres":
            return PgSize(int(got["bytes"]), int(got["rows"]), tuple(got["tables"]))
        return RedisSize(int(got["used_memory"]), int(got["dbsize"]), int(got["project_keys"]))

    def teardown(self, *, timeout_s: float | None = None) -> None:
        """``FeatureStore.teardown()``: drop the project's tables, or delete its keys."""
        self.ask("teardown", timeout_s)

    # -- the conversation --

    def ask(self, line: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Send one command; its JSON answer within ``timeout_s`` (default
        ``reply_timeout_s``), or :class:`FeastProbeError` (the probe is then stopped)."""
        if self._closed:
            raise FeastProbeError("the Feast probe is closed")
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # it died: the answer's absence says so, with its stderr
        try:
            return self._answer(line.split(" ", 1)[0], timeout_s)
        except BaseException:
            self.close()
            raise

    def _answer(self, what: str, timeout_s: float | None) -> dict[str, Any]:
        wait = self.reply_timeout_s if timeout_s is None else timeout_s
        try:
            line = self._lines.get(timeout=wait)
        except queue.Empty:
            self._kill()
            raise FeastProbeError(
                f"the Feast probe did not answer {what!r} within {wait:.0f} s, so it was "
                f"stopped{self._tail()}"
            ) from None
        if line is None:
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill()
            raise FeastProbeError(f"the Feast probe stopped during {what!r}{self._tail()}")
        try:
            got: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise FeastProbeError(f"the Feast probe answered {what!r} with {line[:200]!r}") from exc
        if "error" in got:
            raise FeastProbeError(f"Feast failed {what!r}: {got['error']}")
        return got

    def _tail(self) -> str:
        # Give a thread that is still draining stderr a moment to catch the last lines.
        time.sleep(0.1)
        lines = [ln for ln in list(self._stderr)[-3:] if ln.strip()]
        return f": {' | '.join(lines)[-400:]}" if lines else ""

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        """Ask the probe to quit; kill it if it has not within a few seconds."""
        if self._closed:
            return
        self._closed = True
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._kill()

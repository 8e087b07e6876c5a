"""MLflow's model registry, the peer ``mlscale bench registry`` is compared with.

MLflow cannot live in mlscale's venv (its pins are not ours), so it gets a venv of its
own, made on demand by :func:`mlflow_python`. :class:`MlflowServer` runs MLflow's
tracking server (``mlflow server``: FastAPI + uvicorn workers in front of its Flask
handlers and SQLAlchemy) from that venv on a free loopback port, its backend store a
PostgreSQL database of a local cluster (:func:`create_database` makes one on a node).
:class:`MlflowRest` talks to it over MLflow's REST API with httpx from mlscale's venv,
no MLflow client needed: create a registered model, versions, set an alias, read the
version at an alias (``GET /api/2.0/mlflow/registered-models/alias``).

The cluster's secret never reaches argv or the backend URI: the URI names host, port,
database and user only, and the server's environment carries libpq's own mechanism,
``PGPASSFILE`` (the cluster's passfile) or ``PGPASSWORD`` (from ``auth.password_env``),
which psycopg under SQLAlchemy reads. The URI itself goes by ``MLFLOW_BACKEND_STORE_URI``,
which ``mlflow server`` reads and hands to its workers by environment.

The server is started in a session of its own and always stopped by its PID (its
process group: uvicorn's workers included), by :meth:`MlflowServer.close`, on leaving a
``with`` block, or when it fails to come up. Errors::

    MlscaleError
    └── MlflowPeerError   the venv, the server or a REST call failed (with MLflow's words)
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg import sql

from ..engine.connect import connect
from ..errors import ConfigError, MlscaleError
from .peer_process import PeerProcess
from .peer_venv import peer_python

if TYPE_CHECKING:
    from ..config import ClusterConfig
    from ..core.topology import Node

__all__ = [
    "MLFLOW_REQUIREMENTS",
    "MLFLOW_VERSION",
    "MlflowDatabase",
    "MlflowPeerError",
    "MlflowRest",
    "MlflowServer",
    "MlflowVersion",
    "alias_lookup_url",
    "create_database",
    "drop_database",
    "libpq_secret_env",
    "mlflow_python",
]

# The newest 3.x whose whole release is on PyPI (3.18.0's mlflow-tracing was not yet);
# it installs and runs under Python 3.11 here. SQLAlchemy 2.1, which it brings, maps
# postgresql:// to psycopg 3, so the driver is psycopg[binary] and the URI says so.
MLFLOW_VERSION = "3.17.2"
MLFLOW_REQUIREMENTS = (f"mlflow=={MLFLOW_VERSION}", "psycopg[binary]>=3.2,<4")
# Measured here: 43 s from nothing (no pip cache) and 42 s with pip's cache warm --
# installing and byte-compiling the ~870 MB venv dominates, not downloading; 1.3 s to
# reuse it (the import check). The bound leaves room for a slow network.
INSTALL_TIMEOUT_S = 15 * 60.0
# `mlflow server` on an empty database: ~6 s here (imports, schema migrations, workers).
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0
API = "/api/2.0/mlflow"


class MlflowPeerError(MlscaleError):
    """MLflow's venv could not be made, its server did not start or stopped, or a REST
    call failed (the message carries MLflow's error code and words)."""


# -- the venv ----------------------------------------------------------------------------------


def mlflow_python(*, timeout_s: float = INSTALL_TIMEOUT_S) -> tuple[Path | None, str]:
    """The interpreter of a venv holding :data:`MLFLOW_REQUIREMENTS` (``mlflow`` under
    the peers' venvs: :func:`~.peer_venv.peer_python`), or ``(None, why)``;
    ``timeout_s`` bounds each install step (seconds)."""
    check = (
        "import mlflow, psycopg, uvicorn; "
        f"raise SystemExit(mlflow.__version__ != {MLFLOW_VERSION!r})"
    )
    return peer_python("mlflow", MLFLOW_REQUIREMENTS, check, timeout_s=timeout_s)


# -- its database ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MlflowDatabase:
    """A PostgreSQL database for MLflow's backend store; no secret in it."""

    host: str
    port: int
    dbname: str
    user: str

    @property
    def uri(self) -> str:
        """SQLAlchemy's URI for it (psycopg 3), without a password: libpq finds that."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.dbname}"


def libpq_secret_env(config: ClusterConfig) -> dict[str, str]:
    """How a libpq client (MLflow's psycopg) finds the cluster's password without it
    appearing in argv or a URI: ``PGPASSFILE`` for ``auth.passfile``, ``PGPASSWORD``
    for ``auth.password_env``; empty when neither is configured (trust or peer auth)."""
    auth = config.auth
    if auth.passfile is not None:
        return {"PGPASSFILE": str(config.resolve(auth.passfile))}
    if auth.password_env:
        password = os.environ.get(auth.password_env)
        if password is None:
            raise ConfigError(f"auth.password_env names ${auth.password_env}, which is not set")
        return {"PGPASSWORD": password}
    return {}


def create_database(config: ClusterConfig, node: Node, dbname: str) -> MlflowDatabase:
    """Make database ``dbname`` on ``node`` (a primary) for MLflow; an
    :class:`MlflowPeerError` if it exists already or cannot be made."""
    try:
        with connect(node, config) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except (psycopg.Error, MlscaleError) as exc:
        raise MlflowPeerError(f"cannot create database {dbname!r} on {node.name}: {exc}") from exc
    return MlflowDatabase(node.host, node.port, dbname, node.user)


def drop_database(config: ClusterConfig, node: Node, dbname: str) -> None:
    """Drop database ``dbname`` on ``node`` if it exists (its sessions closed first)."""
    with connect(node, config) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )


# -- the tracking server ---------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class MlflowServer:
    """``mlflow server`` from MLflow's venv ``python``, on ``db``, with ``workers``
    uvicorn worker processes, on a free port of 127.0.0.1 (or ``port``).

    ``secret_env`` (see :func:`libpq_secret_env`) reaches the server by environment
    only. MLflow's background job runner (GenAI scorers, not the registry) is turned
    off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): it starts seven consumer
    processes that would take CPU from the server being measured. Artifacts are not
    proxied (``--no-serve-artifacts``): the registry's lookups never touch them.

    Starting waits until ``GET /health`` answers 200 (``start_timeout_s``); a server
    that exits or does not answer in time is stopped and reported with the tail of
    its log (``workdir/mlflow-server.log``). Use after close raises."""

    def __init__(
        self,
        python: Path,
        *,
        db: MlflowDatabase,
        workdir: Path,
        workers: int = 2,
        secret_env: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.db = db
        self.workers = workers
        self.host = host
        self.port = port if port is not None else _free_port(host)
        self.url = f"http://{host}:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "mlflow-server.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for name in ("HOME", "TMPDIR", "LANG"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(secret_env or {})
        env["MLFLOW_BACKEND_STORE_URI"] = db.uri
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        argv = [
            str(python), "-m", "mlflow", "server", "--host", host, "--port", str(self.port),
            "--workers", str(workers), "--no-serve-artifacts",
            "--default-artifact-root", str(workdir / "artifacts"),
        ]  # fmt: skip
        self._server = PeerProcess("mlflow server", argv, env=env, cwd=workdir,
                                   log_path=self.log_path, error=MlflowPeerError)  # fmt: skip
        self.proc = self._server.proc
        self.pid = self._server.pid
        self.started_s = self._server.wait_ready(
            f"{self.url}/health", status=200, timeout_s=start_timeout_s
        )

    def log_tail(self, lines: int = 4) -> str:
        """The last lines of the server's log, for error messages (": a | b")."""
        return self._server.log_tail(lines)

    @property
    def running(self) -> bool:
        """Whether the server's first process is alive."""
        return self._server.running

    def rest(self, *, timeout_s: float = 30.0) -> MlflowRest:
        """A REST client of this server (close it, or use it in a ``with`` block)."""
        if not self._server.running:
            raise MlflowPeerError("the MLflow server is stopped")
        return MlflowRest(self.url, timeout_s=timeout_s)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after
        ``STOP_TIMEOUT_S`` to whatever of the group is left."""
        self._server.close(STOP_TIMEOUT_S)


# -- the REST API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MlflowVersion:
    """A model version as MLflow's REST API answers it (the fields the bench uses)."""

    name: str
    version: int
    source: str
    status: str
    aliases: tuple[str, ...]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> MlflowVersion:
        """From the ``model_version`` object of a REST answer."""
        return cls(
            name=str(doc["name"]), version=int(doc["version"]), source=str(doc.get("source", "")),
            status=str(doc.get("status", "")), aliases=tuple(doc.get("aliases", ())),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source,
                "status": self.status, "aliases": list(self.aliases)}  # fmt: skip


class MlflowRest:
    """MLflow's model registry over its REST API (2.0), with one keep-alive httpx client.

    Each call raises :class:`MlflowPeerError` with MLflow's ``error_code`` and message
    when the server refuses it, or with the transport's error when it cannot be sent."""

    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url + API, timeout=timeout_s)

    def __enter__(self) -> MlflowRest:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise MlflowPeerError(f"MLflow {method} {path}: {exc}") from exc
        try:
            doc: dict[str, Any] = r.json()
        except ValueError:
            doc = {}
        if r.status_code != 200:
            what = doc.get("error_code", f"HTTP {r.status_code}")
            raise MlflowPeerError(
                f"MLflow {method} {path}: {what}: {doc.get('message', r.text[:200])}"
            )
        return doc

    def create_model(self, name: str, *, description: str = "") -> None:
        """``POST registered-models/create``."""
        self._call("POST", "/registered-models/create",
                   json={"name": name, "description": description})  # fmt: skip

    def create_version(self, name: str, source: str) -> MlflowVersion:
        """``POST model-versions/create``: the next version of ``name`` at ``source``
        (a non-local URI such as ``s3://bucket/path``: MLflow refuses local paths
        without a run)."""
        doc = self._call("POST", "/model-versions/create", json={"name": name, "source": source})
        return MlflowVersion.of(doc["model_version"])

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """``POST registered-models/alias``: point ``alias`` at ``version``."""
        self._call("POST", "/registered-models/alias",
                   json={"name": name, "alias": alias, "version": str(version)})  # fmt: skip

    def get_by_alias(self, name: str, alias: str) -> MlflowVersion:
        """``GET registered-models/alias``: the version ``alias`` points at."""
        doc = self._call("GET", "/registered-models/alias", params={"name": name, "alias": alias})
        return MlflowVersion.of(doc["model_version"])

    def alias_url(self, name: str, alias: str) -> str:
        """The full URL of the alias lookup, for :func:`~.http_lookup.measure_lookups`."""
        return alias_lookup_url(self.url, name, alias)


def alias_lookup_url(server_url: str, name: str, alias: str) -> str:
    """The URL of MLflow's lookup by alias (``GET registered-models/alias``) on the
    server at ``server_url``."""
    query = httpx.QueryParams({"name": name, "alias": alias})
    return f"{server_url.rstrip('/')}{API}/registered-models/alias?{query}"

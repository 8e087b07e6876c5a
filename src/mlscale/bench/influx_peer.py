"""InfluxDB 1.x, the peer ``mlscale bench metrics`` is compared with.

Debian's ``influxdb`` package (1.6.7, apt-installed by ``scripts/setup.sh``) gives the
``influxd`` binary; its system-wide service stays disabled. :class:`InfluxServer` runs
an ``influxd`` of its own from a config file written into a work directory: meta, data
and WAL under that directory (no system directory is written), HTTP and the RPC service
(backup/restore) bound to free ports of 127.0.0.1, usage reporting off, the request log
and the query log off (a server answering many small requests should not spend its time
logging them), and the ``_internal`` monitor database off (it writes every 10 s). The
rest is InfluxDB's defaults, WAL fsync included. Starting waits until ``/ping``
answers 204; the server runs in a session of its own and is always stopped by its PID
(:meth:`InfluxServer.close`, on leaving a ``with`` block, or when it fails to come up).

:class:`InfluxHttp` speaks InfluxDB's HTTP API with httpx: ``/write`` of line protocol
and ``/query`` of InfluxQL, answers parsed from its JSON. Errors::

    MlscaleError
    └── InfluxPeerError   no influxd, the server did not start, or a call was refused
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ..errors import MlscaleError
from ..serve.process import free_port
from .peer_process import PeerProcess

__all__ = [
    "InfluxHttp",
    "InfluxPeerError",
    "InfluxSeries",
    "InfluxServer",
    "influxd_binary",
    "influxd_version",
]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
# A port picked free can be taken before influxd binds it: try again with new ones.
START_ATTEMPTS = 3


class InfluxPeerError(MlscaleError):
    """``influxd`` is missing, did not start, or refused a write or a query (with
    InfluxDB's words)."""


def influxd_binary() -> Path | None:
    """The ``influxd`` on PATH (Debian's ``/usr/bin/influxd``), or None."""
    found = shutil.which("influxd")
    if found is None and os.access("/usr/bin/influxd", os.X_OK):
        found = "/usr/bin/influxd"  # PATH without /usr/bin (a service's environment)
    return Path(found) if found else None


def influxd_version(binary: Path) -> str:
    """What ``influxd version`` says (e.g. ``InfluxDB v1.6.7~rc0 (git: unknown unknown)``)."""
    try:
        done = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfluxPeerError(f"{binary} version: {exc}") from exc
    return done.stdout.strip() or done.stderr.strip()


def _config(workdir: Path, http_port: int, rpc_port: int) -> str:
    return "\n".join([
        "reporting-disabled = true",
        f'bind-address = "127.0.0.1:{rpc_port}"',
        "[meta]",
        f'  dir = "{workdir / "meta"}"',
        "[data]",
        f'  dir = "{workdir / "data"}"',
        f'  wal-dir = "{workdir / "wal"}"',
        "  query-log-enabled = false",
        "[monitor]",
        "  store-enabled = false",
        "[http]",
        f'  bind-address = "127.0.0.1:{http_port}"',
        "  log-enabled = false",
        "[continuous_queries]",
        "  enabled = false",
        "",
    ])  # fmt: skip


class InfluxServer:
    """A local ``influxd`` (``binary``, default :func:`influxd_binary`) with its files
    under ``workdir``, HTTP and RPC on free ports of 127.0.0.1.

    ``url`` is its HTTP base URL. A server that exits or does not answer ``/ping``
    within ``start_timeout_s`` seconds is stopped and reported with the tail of its log
    (``workdir/influxd.log``). Stop it with :meth:`close` (or a ``with`` block)."""

    def __init__(
        self,
        workdir: Path,
        *,
        binary: Path | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        found = binary or influxd_binary()
        if found is None:
            raise InfluxPeerError(
                "influxd not found: install Debian's influxdb package (scripts/setup.sh does)"
            )
        self.binary = found
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "influxd.log"
        config = workdir / "influxdb.conf"
        # HOME in the work directory: nothing of influxd's lands in the caller's.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir)}
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port, self.rpc_port = free_port(), free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            config.write_text(_config(workdir, self.port, self.rpc_port))
            self._server = PeerProcess(
                "influxd", [str(found), "run", "-config", str(config)], env=env, cwd=workdir,
                log_path=self.log_path, error=InfluxPeerError,
            )  # fmt: skip
            self.pid = self._server.pid
            try:
                self.started_s = self._server.wait_ready(
                    f"{self.url}/ping", status=204, timeout_s=start_timeout_s
                )
                return
            except InfluxPeerError:
                if attempt == START_ATTEMPTS or "address already in use" not in self.log_tail(8):
                    raise

    @property
    def running(self) -> bool:
        """Whether the server runs."""
        return self._server.running

    def log_tail(self, lines: int = 4) -> str:
        """The last lines of the server's log, for error messages (": a | b")."""
        return self._server.log_tail(lines)

    def http(self, *, timeout_s: float = 60.0) -> InfluxHttp:
        """An HTTP client of this server (close it, or use it in a ``with`` block)."""
        if not self.running:
            raise InfluxPeerError("the InfluxDB server is stopped")
        return InfluxHttp(self.url, timeout_s=timeout_s)

    def close(self) -> None:
        """Stop the server by its PID (SIGTERM, influxd's clean stop; SIGKILL if it
        hangs); idempotent."""
        self._server.close(STOP_TIMEOUT_S)

    def __enter__(self) -> InfluxServer:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class InfluxSeries:
    """One series of a query's answer: its name, tags (of ``GROUP BY tag``), columns
    and rows (time first, as ``epoch`` asked)."""

    name: str
    tags: dict[str, str]
    columns: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "tags": self.tags, "columns": list(self.columns),
                "values": [list(v) for v in self.values]}  # fmt: skip


class InfluxHttp:
    """InfluxDB 1.x over HTTP, with one keep-alive httpx client (not shared between
    threads: make one per thread). Refused calls raise :class:`InfluxPeerError`."""

    def __init__(self, url: str, *, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> InfluxHttp:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise InfluxPeerError(f"InfluxDB {method} {path}: {exc}") from exc

    def write(self, db: str, body: str | bytes, *, precision: str = "ns") -> None:
        """``POST /write``: ``body`` in line protocol, timestamps in ``precision``
        (ns|u|ms|s); InfluxDB answers 204 once the points are in its WAL."""
        r = self._send("POST", "/write", params={"db": db, "precision": precision},
                       content=body.encode() if isinstance(body, str) else body)  # fmt: skip
        if r.status_code != 204:
            raise InfluxPeerError(f"InfluxDB /write: HTTP {r.status_code}: {r.text[:300]}")

    def query(
        self,
        q: str,
        *,
        db: str | None = None,
        params: Mapping[str, str | int | float] | None = None,
        epoch: str = "ns",
        post: bool = False,
    ) -> list[InfluxSeries]:
        """``/query`` of one InfluxQL statement (``post`` for those that change
        something), its ``$name`` placeholders bound to ``params`` by the server: the
        series of its answer, times as integers in ``epoch``."""
        args = {"q": q, "epoch": epoch}
        if db:
            args["db"] = db
        if params:
            args["params"] = json.dumps(dict(params))
        r = self._send("POST" if post else "GET", "/query", params=args)
        try:
            doc: dict[str, Any] = r.json()
        except ValueError:
            doc = {}
        if r.status_code != 200 or "error" in doc:
            raise InfluxPeerError(
                f"InfluxDB /query {q[:120]!r}: HTTP {r.status_code}: "
                f"{doc.get('error') or r.text[:300]}"
            )
        (result,) = doc.get("results", [{}])
        if "error" in result:
            raise InfluxPeerError(f"InfluxDB /query {q[:120]!r}: {result['error']}")
        return [
            InfluxSeries(
                name=str(s.get("name", "")),
                tags=dict(s.get("tags") or {}),
                columns=tuple(s.get("columns", ())),
                values=tuple(map(tuple, s.get("values", ()))),
            )
            for s in result.get("series", ())
        ]

    def recreate_database(self, db: str) -> None:
        """``DROP DATABASE`` then ``CREATE DATABASE`` (an empty one, default retention)."""
        self.query(f'DROP DATABASE "{_ident(db)}"', post=True)
        self.query(f'CREATE DATABASE "{_ident(db)}"', post=True)


def _ident(name: str) -> str:
    """``name`` for inside InfluxQL's double quotes."""
    return name.replace("\\", "\\\\").replace('"', '\\"')

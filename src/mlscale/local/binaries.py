"""Finding the PostgreSQL and Redis server binaries."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingBinaryError

__all__ = ["MIN_PG_VERSION", "PgBinaries", "find_postgres", "find_redis"]

MIN_PG_VERSION = 15
_PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
_INSTALL_HINT = "run scripts/setup.sh, or apt-get install postgresql-15"


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """A PostgreSQL server installation: its bin directory and major version."""

    bindir: Path
    version: int

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    @property
    def pkglibdir(self) -> Path | None:
        """Where extension libraries live (for pg_stat_statements), if pg_config says."""
        pg_config = self.bindir / "pg_config"
        if not pg_config.exists():
            return None
        out = subprocess.run(
            [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=False
        )
        return Path(out.stdout.strip()) if out.returncode == 0 else None

    def has_library(self, name: str) -> bool:
        libdir = self.pkglibdir
        return libdir is not None and (libdir / f"{name}.so").exists()


def _major(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    m = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    return int(m.group(1)) if m else None


def _complete(bindir: Path) -> bool:
    return all(os.access(bindir / t, os.X_OK) for t in _PG_TOOLS)


def _candidates() -> list[Path]:
    dirs: list[Path] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        dirs.append(Path(on_path).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            dirs.append(Path(out.stdout.strip()))

    def version_key(p: Path) -> int:
        name = p.parent.name
        return int(name) if name.isdigit() else 0

    dirs.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version_key, reverse=True))
    return dirs


def find_postgres(explicit: str | Path | None = None) -> PgBinaries:
    """The PostgreSQL >= 15 server binaries to run local nodes with.

    ``explicit`` (or ``$MLSCALE_PG_BINDIR``) names the bin directory; otherwise
    ``pg_ctl`` on PATH, ``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin``
    (newest first) are tried.
    """
    chosen = explicit or os.environ.get("MLSCALE_PG_BINDIR")
    if chosen:
        bindir = Path(chosen)
        missing = [t for t in _PG_TOOLS if not os.access(bindir / t, os.X_OK)]
        if missing:
            raise MissingBinaryError(
                f"PostgreSQL binaries {', '.join(missing)} not found in {bindir}; "
                f"point MLSCALE_PG_BINDIR at a PostgreSQL >= {MIN_PG_VERSION} bin directory "
                f"or {_INSTALL_HINT}"
            )
        candidates = [bindir]
    else:
        candidates = [d for d in _candidates() if _complete(d)]
    too_old: list[str] = []
    for bindir in candidates:
        version = _major(bindir)
        if version is not None and version >= MIN_PG_VERSION:
            return PgBinaries(bindir=bindir, version=version)
        too_old.append(f"{bindir} (version {version})")
    found = f"; found only {', '.join(too_old)}" if too_old else ""
    raise MissingBinaryError(
        f"PostgreSQL >= {MIN_PG_VERSION} server binaries (initdb, pg_ctl, postgres, "
        f"pg_basebackup) not found{found}; {_INSTALL_HINT}"
    )


def find_redis(explicit: str | Path | None = None) -> Path:
    """The ``redis-server`` binary: ``explicit``, ``$MLSCALE_REDIS_SERVER``, or PATH."""
    chosen = explicit or os.environ.get("MLSCALE_REDIS_SERVER")
    if chosen:
        path = Path(chosen)
        if os.access(path, os.X_OK) and path.is_file():
            return path
        raise MissingBinaryError(
            f"redis-server not found at {path}; point MLSCALE_REDIS_SERVER at it, "
            "run scripts/setup.sh, or use --no-redis"
        )
    for where in (shutil.which("redis-server"), "/usr/bin/redis-server"):
        if where and os.access(where, os.X_OK):
            return Path(where)
    raise MissingBinaryError(
        "redis-server not found on PATH; run scripts/setup.sh or apt-get install redis-server, "
        "or start the cluster with --no-redis"
    )

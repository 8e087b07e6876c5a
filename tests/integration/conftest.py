"""Real clusters for integration tests, always stopped.

Cluster directories live under /tmp in dirs of mode 0755: the servers run as
an unprivileged OS user that must reach them (pytest's own tmp dirs are 0700).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlscale import Cluster, LocalCluster
from mlscale.local.tempdirs import reachable_tempdir
from tests.integration.proxy import Proxy
from tests.integration.redis_servers import Server, cluster_server, standalone_server
from tests.integration.sharding_cleanup import restore_sharding


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
def sharding_restored(cluster: Cluster) -> Iterator[None]:
    """The session cluster's sharding catalog is put back as the test found it: the
    sharded tables it created are dropped, the key families and maps it published
    are forgotten (see sharding_cleanup.py)."""
    before = cluster.refresh_shards()
    try:
        yield
    finally:
        restore_sharding(cluster, before)


@pytest.fixture()
def scratch_dir() -> Iterator[Path]:
    base = reachable_tempdir("mlscale-scratch-")
    try:
        yield base
    finally:
        if (base / "c" / "mlscale.toml").exists():
            LocalCluster(base / "c").down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def tcp_proxy() -> Iterator[Callable[[str, int], Proxy]]:
    """Start a fault-injection proxy to ``host, port`` (see proxy.py): call it, point a
    config at the proxy's port, then pause, cut or slow it. Every proxy started is
    stopped at teardown, whatever state the test left it in."""
    started: list[Proxy] = []

    def start(host: str, port: int) -> Proxy:
        proxy = Proxy(host, port).start()
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A Redis for the cache tests: standalone, then a 3-master Redis Cluster."""
    base = reachable_tempdir("mlscale-cache-it-")
    srv: Server | None = None
    try:
        srv = standalone_server(base) if request.param == "standalone" else cluster_server(base)
        yield srv
    finally:
        try:
            if srv is not None:
                for c in srv.caches:
                    c.close()
                srv.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture()
def own_redis() -> Iterator[Server]:
    """A standalone Redis of this test only, to stop or freeze."""
    base = reachable_tempdir("mlscale-cache-fault-")
    srv: Server | None = None
    try:
        srv = standalone_server(base)
        yield srv
    finally:
        try:
            if srv is not None:
                pid = srv.pid()
                if pid is not None:
                    os.kill(pid, signal.SIGCONT)  # in case the test left it frozen
                for c in srv.caches:
                    c.close()
                srv.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)

"""Local clusters at their edges: two `up` at once, ports of stopped clusters, a broken
mlscale.toml, what `status` says of a stopped cluster, a demo on a cluster too small."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlscale import LocalCluster
from mlscale.core.topology import nodes_of
from mlscale.local.procs import pid_alive
from mlscale.local.tempdirs import reachable_tempdir
from tests.conftest import assert_one_line_error, run_cli


def ports_of(cluster: LocalCluster) -> set[int]:
    config = cluster.config()
    ports = {n.port for n in nodes_of(config)}
    return ports | ({config.redis.port} if config.redis else set())


@pytest.fixture()
def parents() -> Iterator[tuple[Path, Path]]:
    """Two parent directories; every cluster made in them is destroyed at the end."""
    made = (reachable_tempdir("mlscale-edges-"), reachable_tempdir("mlscale-edges-"))
    try:
        yield made
    finally:
        for parent in made:
            for child in parent.iterdir():
                if (child / "mlscale.toml").exists():
                    LocalCluster(child).destroy()
            shutil.rmtree(parent, ignore_errors=True)


def test_a_new_cluster_never_takes_the_ports_of_a_stopped_one(
    parents: tuple[Path, Path],
) -> None:
    first, elsewhere = parents
    a = LocalCluster(first / "a")
    a.up(shards=1, replicas=0, redis=False)
    a.down()
    # A sibling under the same parent, and a cluster elsewhere (the machine-wide
    # registry), both while `a` is stopped: neither may take its ports.
    b = LocalCluster(first / "b")
    b.up(shards=1, replicas=0, redis=False)
    c = LocalCluster(elsewhere / "c")
    c.up(shards=1, replicas=0, redis=False)
    assert ports_of(a).isdisjoint(ports_of(b) | ports_of(c)), (ports_of(a), ports_of(b))


def test_the_loser_of_two_ups_at_once_says_another_up_holds_the_directory(
    scratch_dir: Path,
) -> None:
    from mlscale.local.locks import cluster_lock

    d = scratch_dir / "c"
    with cluster_lock(d, "up"):
        line = assert_one_line_error(
            run_cli("up", "--dir", str(d), "--shards", "1", "--replicas", "0", "--no-redis"),
            "another `mlscale up`",
            str(d),
        )
        assert "destroy" not in line
        assert not d.exists()
        assert_one_line_error(run_cli("destroy", "--dir", str(d)), "another `mlscale up`")

    # Two real ones: one builds the cluster; the other waits for nothing and says why,
    # or (if it came after) finds the cluster running.
    results = []

    def up() -> None:
        results.append(
            run_cli("up", "--dir", str(d), "--shards", "1", "--replicas", "0", "--no-redis")
        )

    threads = [threading.Thread(target=up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(r.returncode for r in results)[0] == 0, [r.stderr for r in results]
    for r in results:
        assert r.returncode == 0 or "another `mlscale up`" in r.stderr, r.stderr
        assert "destroy" not in r.stderr, r.stderr
    assert LocalCluster(d).layout.is_complete()


def test_down_and_destroy_work_from_state_json_when_mlscale_toml_is_broken(
    scratch_dir: Path,
) -> None:
    d = scratch_dir / "c"
    made = run_cli("up", "--dir", str(d), "--shards", "1", "--replicas", "1", "--no-redis")
    assert made.returncode == 0, made.stderr
    cluster = LocalCluster(d)
    pids = [p for procs in cluster.processes().values() for p in procs[:1]]
    assert len(pids) == 3
    toml = cluster.layout.config
    toml.write_text(toml.read_text() + "\nthis is = not [valid toml\n")
    assert_one_line_error(run_cli("status", "--dir", str(d)), "not valid TOML")

    stopped = run_cli("down", "--dir", str(d))
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped control, g0-primary, g0-replica1" in stopped.stdout
    assert not any(pid_alive(p) for p in pids)
    toml.write_text("[control]\nport = 'not a number'\n")  # valid TOML, invalid config
    gone = run_cli("destroy", "--dir", str(d))
    assert gone.returncode == 0, gone.stderr
    assert not d.exists()


def test_status_shows_the_redis_pid_and_exits_3_when_every_node_is_down(
    scratch_dir: Path,
) -> None:
    d = str(scratch_dir / "c")
    assert run_cli("up", "--dir", d, "--shards", "1", "--replicas", "0").returncode == 0
    redis_pid = LocalCluster(d).processes()["redis"][0]
    shown = run_cli("status", "--dir", d)
    assert shown.returncode == 0, shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("redis"))
    assert row[3:5] == ["up", str(redis_pid)], row
    assert json.loads(run_cli("status", "--dir", d, "--json").stdout)["redis"]["pid"] == redis_pid

    assert run_cli("down", "--dir", d).returncode == 0
    down = run_cli("status", "--dir", d)
    assert down.returncode == 3, down.stdout + down.stderr
    assert "NODE" in down.stdout  # the table is still printed
    assert run_cli("status", "--dir", d, "--json").returncode == 3

    # One node up is not "every node down".
    LocalCluster(d).up()
    LocalCluster(d).down(["g0-primary", "redis"])
    assert run_cli("status", "--dir", d).returncode == 0


@pytest.mark.timeout(60)
def test_demo_on_a_cluster_too_small_for_a_chapter_checks_first_and_writes_nothing(
    scratch_dir: Path,
) -> None:
    d = scratch_dir / "c"
    out = scratch_dir / "results"
    assert run_cli("up", "--dir", str(d), "--shards", "1", "--replicas", "1").returncode == 0
    cluster = LocalCluster(d)
    running = cluster.processes()
    result = run_cli("demo", "--dir", str(d), "--quick", "--out", str(out), timeout=60)
    line = assert_one_line_error(result, "2 replicas", "2 shard groups", "nothing was written")
    assert "loading" not in result.stdout, result.stdout
    assert not out.exists()
    from mlscale import Cluster

    with Cluster.from_file(cluster.layout.config) as c:
        assert c.fetch_value("SELECT to_regnamespace('mlscale_demo')", consistency="strong") is None
        assert c.refresh_shards().maps == {}
    # The cluster was running before: the demo leaves it running, as it found it.
    assert cluster.processes().keys() == running.keys() and all(cluster.processes().values())
    assert line

"""What a local cluster records of itself and of its neighbours, checked without servers:
the ports stopped clusters want back, state.json, the options it was made with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w

from mlscale import ClusterError, LocalCluster, PortInUseError, parse_config
from mlscale.local import ports
from mlscale.local.state import read_record, record_of, write_record


def cluster_config(root: Path, base: int, *, redis: bool = True, **local: object) -> dict:  # type: ignore[type-arg]
    """The config `up` would write for 1 group of a primary and a replica at ``base``."""
    return {
        "name": root.name,
        "auth": {"passfile": "pgpass"},
        "control": {"port": base},
        "shard_groups": [
            {"name": "g0", "primary": {"port": base + 1}, "replicas": [{"port": base + 2}]}
        ],
        **({"redis": {"port": base + 3, "password_file": "secret"}} if redis else {}),
        "local": {"os_user": "mlscale", **local},
    }


def make_cluster_dir(root: Path, base: int, **kw: object) -> Path:
    root.mkdir(parents=True)
    data = cluster_config(root, base, **kw)
    (root / "mlscale.toml").write_text(tomli_w.dumps(data))
    write_record(root / "state.json", parse_config(data), 15)
    return root


@pytest.fixture()
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of this test's own (the machine's is left alone)."""
    monkeypatch.setenv("MLSCALE_PORTS_DIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp" / "mlscale-ports.json"


def test_ports_of_stopped_clusters_are_never_chosen(tmp_path: Path, registry: Path) -> None:
    free = ports.choose_ports(["a", "b", "c", "d", "e", "f", "g", "h"])
    # A sibling (same parent) and a cluster elsewhere known only to the registry.
    sibling = make_cluster_dir(tmp_path / "p" / "sibling", free[0])
    far = make_cluster_dir(tmp_path / "q" / "far", free[4])
    ports.record_ports(far, range(free[4], free[4] + 4))
    reserved = ports.reserved_ports(tmp_path / "p" / "new")
    assert reserved == {
        **dict.fromkeys(range(free[0], free[0] + 4), sibling),
        **dict.fromkeys(range(free[4], free[4] + 4), far),
    }
    chosen = ports.choose_ports(["x", "y"], reserved=reserved)
    assert not set(chosen) & set(reserved)
    with pytest.raises(PortInUseError, match=f"belongs to the cluster in {sibling}"):
        ports.choose_ports(["control"], base=free[0], reserved=reserved)
    # A cluster never sees its own ports as another's; a destroyed one is forgotten.
    assert not set(ports.reserved_ports(far)) & set(range(free[4], free[4] + 4))
    ports.forget_ports(far)
    assert json.loads(registry.read_text()) == {"clusters": {}}


def test_the_registry_drops_clusters_whose_directory_is_gone(
    tmp_path: Path, registry: Path
) -> None:
    ports.record_ports(tmp_path / "gone", [31001, 31002])
    registry.write_text(registry.read_text())  # as another process left it
    assert ports.reserved_ports(tmp_path / "new") == {}
    assert json.loads(registry.read_text()) == {"clusters": {}}
    registry.write_text("{not json")
    assert ports.reserved_ports(tmp_path / "new") == {}  # damaged: ignored, then rebuilt


def test_state_json_records_what_stopping_needs(tmp_path: Path) -> None:
    config = parse_config(cluster_config(tmp_path, 30000, node_cpu=0.25))
    write_record(tmp_path / "state.json", config, 15)
    assert read_record(tmp_path / "state.json") == record_of(config)
    assert record_of(config).ports == [30000, 30001, 30002, 30003]
    (tmp_path / "old.json").write_text('{"format": 1, "os_user": "mlscale"}')
    assert read_record(tmp_path / "old.json") is None  # from before: read the config
    assert read_record(tmp_path / "absent.json") is None


@pytest.mark.parametrize(
    ("made", "asked", "message"),
    [
        ({}, {"node_cpu": 0.5}, "was created without --node-cpu, not with --node-cpu 0.5"),
        ({"node_cpu": 0.25}, {"node_cpu": 0.5}, "with --node-cpu 0.25, not with --node-cpu 0.5"),
        ({"redis": False}, {"redis": True}, "was created with --no-redis, not with --redis"),
        ({}, {"sync_replication": True}, "with --async-replication, not with --sync-replication"),
        ({}, {"shards": 3}, "was created with --shards 1, not with --shards 3"),
    ],
)
def test_up_names_the_options_a_cluster_was_made_with(
    tmp_path: Path, made: dict[str, object], asked: dict[str, object], message: str
) -> None:
    root = make_cluster_dir(tmp_path / "c", 30000, **made)
    with pytest.raises(ClusterError, match=message) as info:
        LocalCluster(root).up(**asked)  # type: ignore[arg-type]
    assert "None" not in str(info.value)


def test_one_command_at_a_time_per_directory(tmp_path: Path) -> None:
    from mlscale.local.locks import cluster_lock

    with cluster_lock(tmp_path / "c", "up") as held:
        busy = r"another `mlscale up` \(pid \d+\) is working"
        with pytest.raises(ClusterError, match=busy), cluster_lock(tmp_path / "c", "destroy"):
            pass
        with cluster_lock(tmp_path / "other", "down"):  # another directory: its own lock
            pass
        held.remove()
    assert not held.path.exists()
    with cluster_lock(tmp_path / "c", "down") as again:  # released, made anew
        assert again.path.exists()


def test_the_registry_is_machine_wide_whatever_tmpdir_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process with its own TMPDIR (a test, a user's shell) still shares the
    registry and the lock with every other process on the machine."""
    monkeypatch.delenv("MLSCALE_PORTS_DIR", raising=False)
    before = ports._registry()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(ports.tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    assert ports.tempfile.gettempdir() == str(tmp_path)
    assert ports._registry() == before == Path("/tmp/mlscale-ports.json")


def test_claimed_ports_stay_reserved_while_their_directory_exists(
    tmp_path: Path, registry: Path
) -> None:
    # A lone server's ports (a test's Redis it kills and starts again) are skipped by
    # every later choice until its directory is gone, as a stopped cluster's are.
    lone = tmp_path / "lone-redis"
    lone.mkdir()
    (port,) = ports.claim_ports(lone, ["redis-test"])
    assert ports.reserved_ports(tmp_path / "new") == {port: lone}
    assert port not in ports.choose_ports(["a"], reserved=ports.reserved_ports(tmp_path / "x"))
    lone.rmdir()
    assert ports.reserved_ports(tmp_path / "new") == {}

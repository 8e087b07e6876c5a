"""Pure parts of CPU caps: quotas, mounts, /proc/PID/cgroup, cpu.max."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlscale.local.cgroups import (
    PERIOD_US,
    Cgroups,
    cluster_id,
    detect,
    parse_cpu_max,
    parse_mounts,
    parse_proc_cgroup,
    quota_us,
)

MOUNTS_V1 = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
MOUNTS_V1_JOINED = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
MOUNTS_V2 = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n"


def test_quota_over_a_10ms_period() -> None:
    assert PERIOD_US == 10_000
    assert quota_us(0.25) == 2_500
    assert quota_us(2) == 20_000
    assert quota_us(0.01) == 1_000  # the kernel's floor
    for bad in (0, -1, 65):
        with pytest.raises(ValueError):
            quota_us(bad)


def test_mounts() -> None:
    assert parse_mounts(MOUNTS_V1) == (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/unified"))
    assert parse_mounts(MOUNTS_V1_JOINED) == (Path("/sys/fs/cgroup/cpu,cpuacct"), None)
    assert parse_mounts(MOUNTS_V2) == (None, Path("/sys/fs/cgroup"))
    assert parse_mounts("") == (None, None)


def test_proc_cgroup() -> None:
    v1 = "4:memory:/x\n2:cpu,cpuacct:/mlscale/abc/g0-primary\n0::/\n"
    assert parse_proc_cgroup(v1) == ("/mlscale/abc/g0-primary", "/")
    assert parse_proc_cgroup("0::/mlscale/abc/control\n") == (None, "/mlscale/abc/control")


def test_cpu_max() -> None:
    assert parse_cpu_max("2500 10000\n") == 0.25
    assert parse_cpu_max("max 100000\n") is None


def test_v1_and_v2_files_in_a_fake_hierarchy(tmp_path: Path) -> None:
    v1 = Cgroups(1, tmp_path / "v1")
    node = v1.node_dir("c1", "g0-primary")
    v1.create(node, 0.25)
    assert (node / "cpu.cfs_period_us").read_text().strip() == "10000"
    assert (node / "cpu.cfs_quota_us").read_text().strip() == "2500"
    assert v1.cap(node) == 0.25

    root = tmp_path / "v2"
    root.mkdir()
    (root / "cgroup.subtree_control").write_text("")
    v2 = Cgroups(2, root)
    node = v2.node_dir("c1", "control")
    (root / "mlscale" / "c1").mkdir(parents=True)
    for d in (root / "mlscale", root / "mlscale" / "c1"):
        (d / "cgroup.subtree_control").write_text("")
    v2.create(node, 0.5)
    assert (node / "cpu.max").read_text() == "5000 10000\n"
    assert "+cpu" in (root / "cgroup.subtree_control").read_text()
    assert v2.cap(node) == 0.5


def test_detect_explains_why_there_are_no_caps(tmp_path: Path) -> None:
    assert detect("")[0] is None
    assert "no cgroup cpu controller" in detect("")[1]
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("memory pids\n")
    found, why = detect(f"cgroup2 {v2} cgroup2 rw 0 0\n")
    assert found is None and "offers no cpu controller" in why


def test_cluster_id_is_stable_and_short(tmp_path: Path) -> None:
    assert cluster_id(tmp_path) == cluster_id(tmp_path)
    assert len(cluster_id(tmp_path)) == 12
    assert cluster_id(tmp_path / "a") != cluster_id(tmp_path / "b")

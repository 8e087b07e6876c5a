"""CPU caps for local nodes, with cgroups (v1 ``cpu`` controller or v2 ``cpu.max``).

One 2-core machine can only show how throughput scales across several nodes
if each node gets a fixed share of CPU. Each capped PostgreSQL node gets its
own cgroup ``mlscale/<cluster id>/<node>`` with a CFS quota over a 10 ms
period (a small cap over the default 100 ms period would stall a query for
tens of ms at a time). The postmaster is started inside its cgroup, so every
backend it forks inherits the cap.

Where no cgroup CPU controller is writable (no root, a read-only mount), the
caller is told why and nodes run uncapped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PERIOD_US",
    "Cgroups",
    "cap_of_process",
    "cluster_id",
    "detect",
    "parse_cpu_max",
    "parse_mounts",
    "parse_proc_cgroup",
    "quota_us",
]

log = logging.getLogger(__name__)

PERIOD_US = 10_000
MIN_QUOTA_US = 1_000  # the kernel's floor for cfs_quota_us


def quota_us(fraction: float, period_us: int = PERIOD_US) -> int:
    """The CFS quota giving ``fraction`` of one CPU per ``period_us``."""
    if not 0 < fraction <= 64:
        raise ValueError(f"a CPU cap must be in (0, 64] CPUs, got {fraction}")
    return max(MIN_QUOTA_US, round(fraction * period_us))


def cluster_id(root: Path) -> str:
    """A short, stable name for a cluster directory's cgroups."""
    return hashlib.sha1(str(root.absolute()).encode()).hexdigest()[:12]


def parse_mounts(text: str) -> tuple[Path | None, Path | None]:
    """From /proc/mounts: (cgroup v1 hierarchy holding ``cpu``, cgroup v2 mount)."""
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        _, mountpoint, fstype, options = parts[:4]
        if fstype == "cgroup" and "cpu" in options.split(","):
            v1 = v1 or Path(mountpoint)
        elif fstype == "cgroup2":
            v2 = v2 or Path(mountpoint)
    return v1, v2


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """From /proc/PID/cgroup: (v1 path in the ``cpu`` hierarchy, v2 path)."""
    v1 = v2 = None
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":
            v2 = path
        elif "cpu" in controllers.split(","):
            v1 = path
    return v1, v2


def parse_cpu_max(text: str) -> float | None:
    """A v2 ``cpu.max`` ("quota period" or "max period") as CPUs; None if unlimited."""
    quota, _, period = text.strip().partition(" ")
    if quota == "max":
        return None
    return int(quota) / int(period or 100_000)


@dataclass(frozen=True, slots=True)
class Cgroups:
    """The writable cgroup hierarchy that caps CPU on this machine."""

    version: int
    root: Path

    def node_dir(self, cluster: str, node: str) -> Path:
        return self.root / "mlscale" / cluster / node

    def procs_file(self, path: Path) -> Path:
        return path / "cgroup.procs"

    def create(self, path: Path, fraction: float) -> None:
        """Make the cgroup ``path`` with a cap of ``fraction`` CPUs over a 10 ms period."""
        quota = quota_us(fraction)
        if self.version == 2:
            self._enable_cpu_below(path)
            path.mkdir(parents=True, exist_ok=True)
            (path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            return
        path.mkdir(parents=True, exist_ok=True)
        # Unlimit first, so a quota left from an earlier cap never conflicts with the period.
        (path / "cpu.cfs_quota_us").write_text("-1\n")
        (path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
        (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")

    def _enable_cpu_below(self, path: Path) -> None:
        # v2 only distributes cpu to a child if every ancestor enables it for its children.
        current = self.root
        for part in path.relative_to(self.root).parts[:-1]:
            control = current / "cgroup.subtree_control"
            if "cpu" not in control.read_text().split():
                control.write_text("+cpu\n")
            current = current / part
            current.mkdir(exist_ok=True)
        control = current / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu\n")

    def cap(self, path: Path) -> float | None:
        """The cap of cgroup ``path`` in CPUs (None: uncapped or absent)."""
        try:
            if self.version == 2:
                return parse_cpu_max((path / "cpu.max").read_text())
            quota = int((path / "cpu.cfs_quota_us").read_text())
            period = int((path / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            return None
        return None if quota < 0 else quota / period

    def remove(self, path: Path) -> None:
        """Remove cgroup ``path`` and its empty parents; keep it if processes remain."""
        for attempt in range(50):
            try:
                path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or attempt == 49:
                    log.warning("could not remove cgroup %s: %s", path, exc.strerror)
                    return
                time.sleep(0.02)  # exiting processes leave their cgroup a moment later
        for parent in (path.parent, path.parent.parent):
            try:
                parent.rmdir()
            except OSError:
                return


def _writable(path: Path) -> bool:
    probe = path / "mlscale"
    try:
        probe.mkdir(exist_ok=True)
    except OSError:
        return False
    return os.access(probe, os.W_OK)


def detect(mounts: str | None = None) -> tuple[Cgroups | None, str]:
    """The writable CPU cgroup hierarchy here, or None and the reason there is none."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError as exc:
            return None, f"cannot read /proc/mounts ({exc.strerror})"
    v1, v2 = parse_mounts(mounts)
    if v1 is not None and (v1 / "cpu.cfs_quota_us").exists():
        if _writable(v1):
            return Cgroups(1, v1), ""
        return None, f"cgroup v1 cpu controller at {v1} is not writable (run as root)"
    if v2 is not None:
        controllers = v2 / "cgroup.controllers"
        try:
            available = controllers.read_text().split()
        except OSError:
            available = []
        if "cpu" not in available:
            return None, f"cgroup v2 at {v2} offers no cpu controller"
        if _writable(v2):
            return Cgroups(2, v2), ""
        return None, f"cgroup v2 at {v2} is not writable (run as root)"
    return None, "no cgroup cpu controller is mounted"


def cap_of_process(pid: int) -> tuple[str | None, float | None]:
    """(cgroup path, cap in CPUs) of process ``pid``'s CPU cgroup; (None, None) if unknown."""
    try:
        proc = Path(f"/proc/{pid}/cgroup").read_text()
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return None, None
    v1_path, v2_path = parse_proc_cgroup(proc)
    v1, v2 = parse_mounts(mounts)
    if v1 is not None and v1_path is not None:
        return v1_path, Cgroups(1, v1).cap(v1 / v1_path.lstrip("/"))
    if v2 is not None and v2_path is not None:
        return v2_path, Cgroups(2, v2).cap(v2 / v2_path.lstrip("/"))
    return None, None

"""The unprivileged OS user that local servers run as.

PostgreSQL refuses to run as root. When mlscale is run as root it runs every
server as a dedicated system user (``mlscale`` unless configured), created on
first use; otherwise servers run as the calling user.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClusterDirError, ClusterError

__all__ = ["DEFAULT_OS_USER", "ServiceUser", "check_reachable", "resolve_service_user"]

DEFAULT_OS_USER = "mlscale"


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """Who the servers run as, and how to start a process as them."""

    name: str
    uid: int
    gid: int

    @property
    def is_caller(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``subprocess`` to run a command as this user."""
        if self.is_caller:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path) -> None:
        """Give ``path`` to this user (a no-op when it is the caller)."""
        if not self.is_caller:
            os.chown(path, self.uid, self.gid)


def resolve_service_user(name: str | None = None) -> ServiceUser:
    """The user servers run as, created (as a system user) if root needs one."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        if name and name != me.pw_name:
            raise ClusterError(
                f"cannot run servers as OS user {name!r} without root; "
                f"drop --os-user or run mlscale as root"
            )
        return ServiceUser(me.pw_name, me.pw_uid, me.pw_gid)
    name = name or DEFAULT_OS_USER
    if name == "root":
        raise ClusterError("PostgreSQL refuses to run as root; choose another --os-user")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        made = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode not in (0, 9):  # 9: created meanwhile by someone else
            raise ClusterError(
                f"could not create OS user {name!r} for the servers: {made.stderr.strip()}"
            ) from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise ClusterError(f"OS user {name!r} has uid 0; choose an unprivileged --os-user")
    return ServiceUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _can_search(st: os.stat_result, user: ServiceUser) -> bool:
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def check_reachable(path: Path, user: ServiceUser) -> None:
    """Raise :class:`ClusterDirError` unless ``user`` can traverse every existing parent.

    PostgreSQL running as ``user`` must reach its data directory; a parent such
    as ``/root`` (mode 0700) or pytest's private temp dirs would lock it out.
    """
    path = path.absolute()
    for parent in [*reversed(path.parents), path]:
        if not parent.exists():
            break
        st = parent.stat()
        if not stat.S_ISDIR(st.st_mode):
            raise ClusterDirError(
                f"cannot use cluster directory {path}: {parent} is not a directory"
            )
        if not _can_search(st, user):
            raise ClusterDirError(
                f"cluster directory {path} is not reachable by OS user {user.name!r}: "
                f"{parent} has mode {stat.S_IMODE(st.st_mode):04o}; choose a --dir outside it "
                "or make it searchable (chmod o+x)"
            )

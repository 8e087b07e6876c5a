"""Servers mlscale starts detached and tracks by files: a PID file and a log file.

Used by the etcd members and the Patroni agents of a local HA cluster. A server
runs in its own session (Ctrl-C of mlscale must not reach it) as the servers' OS
user, with nothing of the caller's environment but ``PATH`` (it may hold
secrets), files private (umask 077), output appended to its log (mode 0600). Its
PID file is trusted only while that process's command line still holds
``marker`` (a PID may be reused by another process), and it is stopped by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import NodeStartError
from . import procs
from .osuser import ServiceUser

__all__ = ["DaemonFiles"]


@dataclass(frozen=True, slots=True)
class DaemonFiles:
    """One detached server's PID file and log file; ``marker``: an argument of its
    command line that tells its process from another that took the PID."""

    pid_file: Path
    log_file: Path
    marker: str
    user: ServiceUser

    def pid(self) -> int | None:
        """The server's PID if it runs (checked against its command line)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if procs.pid_alive(pid) and self.marker in procs.cmdline(pid):
            return pid
        return None

    def start(self, argv: Sequence[str], *, cwd: Path, locale: str, what: str) -> int:
        """Run ``argv`` detached in ``cwd`` with ``LC_ALL=locale``, its output appended to
        the log; its PID, written to the PID file. ``what`` names it in errors."""
        fd = os.open(self.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if not self.user.is_caller:
                os.fchown(fd, self.user.uid, self.user.gid)
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": locale},
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
                umask=0o077,
                **self.user.popen_kwargs(),
            )
        except OSError as exc:
            raise NodeStartError(f"{what} could not run: {exc}") from exc
        finally:
            os.close(fd)
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, timeout: float) -> int | None:
        """Stop the server by PID (SIGTERM, SIGKILL after ``timeout`` seconds) and drop
        its PID file; the PID it had, or None if it was not running."""
        pid = self.pid()
        if pid is None:
            return None
        procs.terminate(pid, signal.SIGTERM, timeout)
        self.pid_file.unlink(missing_ok=True)
        return pid

"""One local PostgreSQL server: initdb, configure, base backup, start, stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from ..core.topology import Node
from ..errors import NodeStartError
from . import procs
from .binaries import PgBinaries
from .osuser import ServiceUser
from .settings import HBA, conf_text

__all__ = ["PgNode"]

log = logging.getLogger(__name__)

_INCLUDE = "include_if_exists = 'mlscale.conf'"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


class PgNode:
    """A PostgreSQL data directory on this machine and the server running on it."""

    def __init__(
        self,
        node: Node,
        data_dir: Path,
        log_file: Path,
        bins: PgBinaries | None,
        user: ServiceUser,
    ) -> None:
        self.node = node
        self.data_dir = data_dir
        self.log_file = log_file
        self.bins = bins
        self.user = user

    @property
    def name(self) -> str:
        return self.node.name

    def _tool(self, name: str) -> str:
        if self.bins is None:
            raise NodeStartError(f"node {self.name}: no PostgreSQL binaries were given")
        return self.bins.tool(name)

    # -- running commands as the service user ---------------------------------

    def _run(
        self,
        args: list[str],
        what: str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 300.0,
        cgroup_procs: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", **(env or {})}
        user_kwargs = self.user.popen_kwargs()
        if cgroup_procs is not None:
            # Enter the cgroup first (as the caller, who may write it), then drop to
            # the service user and exec: everything the command forks inherits the cap.
            drop = []
            if not self.user.is_caller:
                drop = [
                    "setpriv",
                    f"--reuid={self.user.uid}",
                    f"--regid={self.user.gid}",
                    "--clear-groups",
                    "--",
                ]
            args = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup_procs), *drop, *args]
            user_kwargs = {}
        try:
            done = subprocess.run(
                args,
                cwd=self.data_dir.parent,
                env=full_env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
                umask=0o077,  # data, logs and sockets private to the service user
                **user_kwargs,
            )
        except subprocess.TimeoutExpired as exc:
            raise NodeStartError(
                f"node {self.name}: {what} timed out after {timeout:.0f} s"
            ) from exc
        except OSError as exc:
            raise NodeStartError(f"node {self.name}: {what} could not run: {exc}") from exc
        if done.returncode != 0:
            raise NodeStartError(
                f"node {self.name}: {what} failed: {_last_line(done.stderr or done.stdout)}"
                f" (log: {self.log_file})"
            )
        return done

    # -- lifecycle --------------------------------------------------------------

    def initdb(self, pwfile: Path) -> None:
        """Create the data directory: C collation, UTF-8, scram-sha-256, our superuser."""
        self._run(
            [
                self._tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.node.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--locale=C",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            "initdb",
        )

    def configure(self, settings: Mapping[str, str]) -> None:
        """Write ``mlscale.conf`` (included by postgresql.conf) and pg_hba.conf."""
        conf = self.data_dir / "postgresql.conf"
        text = conf.read_text()
        if _INCLUDE not in text:
            conf.write_text(text.rstrip("\n") + "\n\n" + _INCLUDE + "\n")
        for path, body in (
            (self.data_dir / "mlscale.conf", conf_text(settings)),
            (self.data_dir / "pg_hba.conf", HBA),
        ):
            path.write_text(body)
            os.chmod(path, 0o600)
            self.user.own(path)

    def make_standby(self) -> None:
        signal_file = self.data_dir / "standby.signal"
        signal_file.touch()
        self.user.own(signal_file)

    def basebackup(self, primary: Node, slot: str, passfile: Path) -> None:
        """Clone ``primary`` into this (absent) data directory, streaming WAL via ``slot``."""
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.user.own(self.data_dir.parent)
        self._run(
            [
                self._tool("pg_basebackup"),
                "-h",
                primary.host,
                "-p",
                str(primary.port),
                "-U",
                primary.user,
                "-D",
                str(self.data_dir),
                "-X",
                "stream",
                "-S",
                slot,
                "-c",
                "fast",
                "--no-password",
            ],
            f"pg_basebackup from {primary.name}",
            env={"PGPASSFILE": str(passfile)},
        )

    def pid(self) -> int | None:
        """The postmaster's PID if it runs on this data directory, else None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        # Guard against PID reuse: the process must be a postgres on our directory.
        argv = procs.cmdline(pid)
        if procs.pid_alive(pid) and str(self.data_dir) in argv:
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def processes(self) -> list[int]:
        """The postmaster and every process it forked."""
        pid = self.pid()
        return [pid, *procs.children(pid)] if pid else []

    def start(
        self, timeout: float = 60.0, attempts: int = 3, cgroup_procs: Path | None = None
    ) -> int:
        """Start the server and wait until it accepts connections; its PID.

        With ``cgroup_procs`` (a cgroup's ``cgroup.procs`` file) the postmaster
        is started inside that cgroup. After a ``kill -9`` of a postmaster its
        backends take a moment to notice and exit, and PostgreSQL refuses to
        start while they hold shared memory, so a failed start is retried.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._run(
                    [
                        self._tool("pg_ctl"),
                        "start",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        str(int(timeout)),
                        "-s",
                    ],
                    "start",
                    timeout=timeout + 10,
                    cgroup_procs=cgroup_procs,
                )
            except NodeStartError:
                if attempt == attempts:
                    raise NodeStartError(
                        f"node {self.name} did not start on port {self.node.port}: "
                        f"{self._log_tail()} (log: {self.log_file})"
                    ) from None
                time.sleep(1.0)
                continue
            pid = self.pid()
            if pid is not None:
                log.info("started %s on port %s (pid %s)", self.name, self.node.port, pid)
                return pid
        raise NodeStartError(f"node {self.name} started but left no postmaster.pid")

    def stop(self, timeout: float = 60.0) -> None:
        """Stop by PID, needing no binaries: SIGINT (PostgreSQL's fast shutdown), then
        SIGQUIT (immediate shutdown) if it hangs, then SIGKILL."""
        pid = self.pid()
        if pid is None:
            return
        children = procs.children(pid)
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        if not procs.wait_dead(pid, timeout):
            log.warning("node %s ignored fast shutdown; sending SIGQUIT to %s", self.name, pid)
            procs.terminate(pid, signal.SIGQUIT, 10.0)
        for child in children:
            procs.wait_dead(child, 5.0)
        log.info("stopped %s (pid %s)", self.name, pid)

    def reload(self) -> None:
        self._run([self._tool("pg_ctl"), "reload", "-D", str(self.data_dir), "-s"], "reload")

    def _log_tail(self) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "no log"
        for line in reversed(text.strip().splitlines()):
            if "FATAL" in line or "ERROR" in line or "PANIC" in line:
                return line.strip()
        return _last_line(text)

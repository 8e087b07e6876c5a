"""One local Redis server, run as the service user, found again by its pid file."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from ..errors import NodeStartError
from . import procs
from .binaries import find_redis
from .osuser import ServiceUser
from .settings import redis_conf_text

__all__ = ["RedisNode", "redis_pid"]

log = logging.getLogger(__name__)


def redis_pid(workdir: Path, port: int) -> int | None:
    """The PID of the redis-server whose pid file is in ``workdir``, if it runs and
    listens on ``port`` (a pid file can outlive its server, and the PID be reused)."""
    try:
        pid = int((workdir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    argv = " ".join(procs.cmdline(pid))
    if procs.pid_alive(pid) and "redis-server" in argv and f":{port}" in argv:
        return pid
    return None


class RedisNode:
    """A Redis server in ``workdir`` listening on 127.0.0.1:``port``."""

    name = "redis"

    def __init__(self, binary: Path | None, workdir: Path, port: int, user: ServiceUser) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = port
        self.user = user

    @property
    def conf(self) -> Path:
        return self.workdir / "redis.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "redis.log"

    def write_conf(self, password: str, appendfsync: str = "everysec") -> None:
        """Write redis.conf; ``appendfsync`` as in :func:`.settings.redis_conf_text`."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.workdir)
        fd = os.open(self.conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(
                redis_conf_text(
                    port=self.port, workdir=self.workdir, password=password, appendfsync=appendfsync
                )
            )
        self.user.own(self.conf)

    def pid(self) -> int | None:
        return redis_pid(self.workdir, self.port)

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, password: str, timeout: float = 30.0) -> int:
        """Start the daemon and wait until it answers PING; its PID."""
        binary = self.binary or find_redis()
        stale = self.workdir / "redis.pid"
        if stale.exists() and self.pid() is None:
            stale.unlink()
        done = subprocess.run(
            [str(binary), str(self.conf)],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
            # Nothing of the caller's environment (it may hold secrets), files private.
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            umask=0o077,
            **self.user.popen_kwargs(),
        )
        if done.returncode != 0:
            raise NodeStartError(
                f"redis did not start on port {self.port}: "
                f"{(done.stderr or done.stdout).strip()[-200:] or 'no output'} "
                f"(log: {self.log_file})"
            )
        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=password,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
        )
        deadline = time.monotonic() + timeout
        try:
            while True:
                pid = self.pid()
                try:
                    if pid is not None and client.ping():
                        log.info("started redis on port %s (pid %s)", self.port, pid)
                        return pid
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise NodeStartError(
                        f"redis did not answer on port {self.port} within {timeout:.0f} s "
                        f"(log: {self.log_file})"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self, timeout: float = 30.0) -> None:
        pid = self.pid()
        if pid is None:
            return
        procs.terminate(pid, signal.SIGTERM, timeout)
        log.info("stopped redis (pid %s)", pid)

"""``mlscale serve`` as a child process: started, waited for, stopped gracefully.
What the benchmark and the tests use to run the service the way users do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from ..errors import MlscaleError

__all__ = ["ServiceProcess", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class ServiceProcess:
    """``python -m mlscale serve --config CONFIG --port P --workers W [extra]``.

    :meth:`start` returns once ``/readyz`` answers 200 (every worker shares the port,
    so this says one is ready; the others follow within their startup).
    :meth:`stop` sends SIGTERM, uvicorn's graceful stop, and waits for the exit
    (SIGKILL after ``timeout_s``). Output goes to ``log_path``.
    """

    def __init__(
        self,
        config: str | Path,
        *,
        workers: int = 1,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = str(config)
        self.workers = workers
        self.port = port or free_port()
        self.extra = extra
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServiceProcess:
        """Start the service and wait until it is ready."""
        args = [
            sys.executable,
            "-m",
            "mlscale",
            "serve",
            "--config",
            self.config,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            *self.extra,
        ]
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(self.env or {})},
            )
        finally:
            if self.log_path:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MlscaleError(
                    f"mlscale serve exited with {self.proc.returncode} at startup{self._see()}"
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise MlscaleError(f"mlscale serve was not ready after {timeout_s:g} s{self._see()}")

    def _see(self) -> str:
        return f" (see {self.log_path})" if self.log_path else ""

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, wait; the exit code (None if it was never started)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

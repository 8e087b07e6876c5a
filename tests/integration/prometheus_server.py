"""A real Prometheus (Debian's binary) for tests: started on a free loopback port with its
storage in a temp dir, scraping given targets every second, queried over its HTTP API,
stopped by PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    """A running Prometheus: ``api`` is ``http://127.0.0.1:PORT/api/v1``; ``job`` the
    scrape job's name."""

    api: str
    job: str

    def query(self, promql: str) -> Any:
        url = f"{self.api}/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query (None: no series)."""
        result = self.query(promql)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def scraped_after(self, t: float, timeout_s: float = 10.0) -> None:
        """Wait until every target has been scraped after wall time ``t``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = self.query(f'timestamp(up{{job="{self.job}"}} == 1)')["result"]
            if result and min(float(r["value"][1]) for r in result) > t:
                return
            time.sleep(0.2)
        raise AssertionError(f"no scrape after {t} within {timeout_s} s")


@contextmanager
def prometheus(targets: Sequence[str], job: str = "mlscale") -> Iterator[Prometheus]:
    """Prometheus scraping ``targets`` (``host:port``, path ``/metrics``) every second."""
    base = Path(tempfile.mkdtemp(prefix="mlscale-prom-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = free_port()
        listed = ", ".join(f"'{t}'" for t in targets)
        (base / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"scrape_configs:\n  - job_name: {job}\n    static_configs:\n"
            f"      - targets: [{listed}]\n"
        )
        with open(base / "prometheus.log", "wb") as log:
            proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={base / 'prometheus.yml'}",
                 f"--storage.tsdb.path={base / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT, cwd=base,
            )  # fmt: skip
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{api}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "prometheus.log").read_text()[-2000:])
            time.sleep(0.1)
        yield Prometheus(f"{api}/api/v1", job)
    finally:
        if proc is not None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(base, ignore_errors=True)

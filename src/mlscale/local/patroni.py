"""Patroni agents of a local HA cluster: their configuration (pure) and their processes.

One agent per PostgreSQL node; each shard group and the control database is one
Patroni scope. Patroni owns the PostgreSQL it manages: it runs initdb (on the
node that bootstraps the scope) or pg_basebackup (on the others), writes the
server's configuration from what is given here, starts, stops, promotes and
rewinds it. The agent's file holds the cluster's password, so it is written with
mode 0600 for the servers' OS user, never passed on a command line.

The file is YAML written as JSON (a JSON document is a YAML document), so mlscale
needs no YAML library; Patroni reads it with its own.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .daemons import DaemonFiles
from .osuser import ServiceUser

__all__ = [
    "HA_TIMING",
    "PatroniAgent",
    "SyncMode",
    "patroni_config",
    "patroni_parameters",
    "patroni_yaml",
]

log = logging.getLogger(__name__)

SyncMode = Literal["off", "on", "strict"]

# Measured here (issue 17): with these a PostgreSQL crash or a switchover gives a new
# writable leader in ~2.6 s; Patroni refuses a ttl below 20 s, so losing a whole node
# takes ~20 s. primary_start_timeout 0: fail over at once rather than wait for a
# crashed primary to restart.
HA_TIMING: Mapping[str, int] = {
    "ttl": 20,
    "loop_wait": 1,
    "retry_timeout": 3,
    "primary_start_timeout": 0,
}

# Settings Patroni manages itself from its own configuration (listen, connect_address).
_PATRONI_OWNED = frozenset({"listen_addresses", "port"})


def _unquote(value: str) -> str:
    """A postgresql.conf literal (as :func:`settings.quote_conf` writes it) as plain text:
    Patroni quotes parameter values itself."""
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'").replace("\\\\", "\\")
    return value


def patroni_parameters(settings: Mapping[str, str]) -> dict[str, str]:
    """The PostgreSQL settings mlscale's nodes need (:func:`settings.postgres_settings`),
    as Patroni's ``parameters`` (unquoted, without what Patroni sets itself), plus the
    logging collector so each node logs to its own ``postgres.log``."""
    out = {k: _unquote(v) for k, v in settings.items() if k not in _PATRONI_OWNED}
    out["logging_collector"] = "on"
    return out


def patroni_config(
    *,
    scope: str,
    name: str,
    rest_port: int,
    pg_port: int,
    node_dir: Path,
    data_dir: Path,
    bin_dir: Path,
    etcd_hosts: Sequence[str],
    user: str,
    secret: str,
    sync: SyncMode,
    parameters: Mapping[str, str],
    hba: Sequence[str],
    watchdog: bool,
) -> dict[str, Any]:
    """One agent's Patroni configuration (a mapping to dump as YAML).

    ``parameters`` go to the DCS at bootstrap (every member of the scope shares
    them); the log location is per node. Superuser, replication and rewind all
    authenticate as ``user`` with ``secret`` (scram-sha-256), and the REST API's
    unsafe endpoints (switchover, failover, restart) ask for the same credentials.
    """
    if sync not in ("off", "on", "strict"):
        raise ValueError(f"sync must be off, on or strict, not {sync!r}")
    credentials = {"username": user, "password": secret}
    return {
        "scope": scope,
        "namespace": "/mlscale/",
        "name": name,
        "restapi": {
            "listen": f"127.0.0.1:{rest_port}",
            "connect_address": f"127.0.0.1:{rest_port}",
            "authentication": dict(credentials),
        },
        "etcd3": {"hosts": list(etcd_hosts)},
        "bootstrap": {
            "dcs": {
                **HA_TIMING,
                "maximum_lag_on_failover": 16 * 1024 * 1024,
                "synchronous_mode": sync != "off",
                "synchronous_mode_strict": sync == "strict",
                "postgresql": {
                    "use_pg_rewind": True,
                    "use_slots": True,
                    "parameters": dict(parameters),
                },
            },
            "initdb": [
                {"encoding": "UTF8"},
                {"locale": "C"},
                {"auth": "scram-sha-256"},
                "data-checksums",
            ],
        },
        "postgresql": {
            "listen": f"127.0.0.1:{pg_port}",
            "connect_address": f"127.0.0.1:{pg_port}",
            "data_dir": str(data_dir),
            "bin_dir": str(bin_dir),
            "pgpass": str(node_dir / "patroni.pgpass"),
            "authentication": {
                "superuser": dict(credentials),
                "replication": dict(credentials),
                "rewind": dict(credentials),
            },
            "parameters": {
                "log_directory": str(node_dir),
                "log_filename": "postgres.log",
            },
            "pg_hba": list(hba),
            "basebackup": [{"checkpoint": "fast"}],
            # A node whose rewind fails, or whose timeline diverged, is cloned afresh
            # rather than left out of its scope.
            "remove_data_directory_on_rewind_failure": True,
            "remove_data_directory_on_diverged_timelines": True,
        },
        "watchdog": {"mode": "automatic", "device": "/dev/watchdog"}
        if watchdog
        else {"mode": "off"},
        "tags": {},
    }


def patroni_yaml(config: Mapping[str, Any]) -> str:
    """The configuration as a Patroni config file (YAML, written as JSON)."""
    return "# written by mlscale up --ha; holds the cluster's password (mode 0600)\n" + (
        json.dumps(config, indent=2, sort_keys=False) + "\n"
    )


@dataclass(frozen=True, slots=True)
class PatroniAgent:
    """The Patroni agent of one node: its files under ``nodes/NAME`` and its process."""

    name: str
    node_dir: Path
    user: ServiceUser

    @property
    def config_file(self) -> Path:
        return self.node_dir / "patroni.yml"

    @property
    def pid_file(self) -> Path:
        return self.node_dir / "patroni.pid"

    @property
    def log_file(self) -> Path:
        return self.node_dir / "patroni.log"

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the agent's file, mode 0600, owned by the servers' OS user."""
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.user.own(self.node_dir)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(patroni_yaml(config))
        os.chmod(self.config_file, 0o600)
        self.user.own(self.config_file)

    @property
    def files(self) -> DaemonFiles:
        """The agent's PID and log files (its config file marks its command line)."""
        return DaemonFiles(self.pid_file, self.log_file, str(self.config_file), self.user)

    def pid(self) -> int | None:
        """The agent's PID if it runs (checked against its command line)."""
        return self.files.pid()

    def start(self, binary: Path) -> int:
        """Start the agent detached (its own session); its PID."""
        pid = self.files.start(
            [str(binary), str(self.config_file)],
            cwd=self.node_dir,
            locale="C.UTF-8",
            what=f"{self.name}: patroni",
        )
        log.info("started patroni of %s (pid %s)", self.name, pid)
        return pid

    def stop(self, timeout: float = 60.0) -> bool:
        """Stop the agent by PID: SIGTERM makes Patroni shut its PostgreSQL down (fast)
        and exit; SIGKILL if it hangs. Whether it was running."""
        pid = self.files.stop(timeout)
        if pid is None:
            return False
        log.info("stopped patroni of %s (pid %s)", self.name, pid)
        return True

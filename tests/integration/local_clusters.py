"""Local clusters a test module makes for itself: in a fresh temp dir the servers' OS
user can enter, always destroyed after (if one was made) and the dir removed, also on
failure; and the skip of HA tests where Patroni or etcd is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlscale import LocalCluster
from mlscale.errors import MissingBinaryError
from mlscale.local.binaries import find_patroni
from mlscale.local.etcd import find_etcd
from mlscale.local.tempdirs import reachable_tempdir

__all__ = ["require_ha", "throwaway_cluster", "throwaway_dir"]


def require_ha() -> None:
    """Skip the calling test (or fixture) unless Patroni and etcd are installed."""
    try:
        find_patroni()
        find_etcd()
    except MissingBinaryError as exc:
        pytest.skip(f"HA needs Patroni and etcd (scripts/setup.sh): {exc}")


@contextmanager
def throwaway_dir(prefix: str) -> Iterator[Path]:
    """A cluster directory (``<fresh temp dir>/c``) for the caller to make a cluster
    in; whatever cluster is there after is destroyed, and the temp dir removed."""
    base = reachable_tempdir(prefix)
    root = base / "c"
    try:
        yield root
    finally:
        try:
            if (root / "mlscale.toml").exists():
                LocalCluster(root).destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def throwaway_cluster(prefix: str, **up: Any) -> Iterator[LocalCluster]:
    """A local cluster started with ``LocalCluster.up(**up)`` in a
    :func:`throwaway_dir`."""
    with throwaway_dir(prefix) as root:
        local = LocalCluster(root)
        local.up(**up)
        yield local

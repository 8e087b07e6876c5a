"""Temporary directories the servers' unprivileged OS user can enter."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["reachable_tempdir"]


def reachable_tempdir(prefix: str, parent: str | Path | None = None) -> Path:
    """A new directory (mode 0755) under ``parent`` or the system temp dir.

    ``mkdtemp`` makes 0700 directories, and pytest's are inside 0700 parents:
    a server running as another user could not reach a cluster placed there.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, 0o755)
    return path

"""One lifecycle command at a time on a cluster directory.

Two ``mlscale up`` on one new directory used to race: the loser found a config
but no ``state.json`` and advised ``destroy`` on a cluster still being built.
``up``, ``down`` and ``destroy`` now hold the directory's lock while they work;
one that finds it held says which command holds it, and does nothing.

The lock is an ``flock`` on a file named for the directory's absolute path, in a
directory of the system temp dir every user may write (the cluster directory
itself may not exist yet, and must stay empty until ``up`` claims it). The kernel
releases it when its holder exits, however it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ClusterError

__all__ = ["cluster_lock"]


def _lock_file(root: Path) -> Path:
    folder = Path(tempfile.gettempdir()) / "mlscale-locks"
    if not folder.is_dir():
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o1777)  # every user's commands, each its own files
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:24]
    return folder / f"cluster-{digest}.lock"


def _holder(fd: int) -> str:
    """``mlscale COMMAND`` (pid N) as the holder wrote it, or words for not knowing."""
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"`mlscale {doc['command']}` (pid {int(doc['pid'])})"
    except (OSError, ValueError, KeyError, TypeError):
        return "mlscale command"


class Held:
    """A held directory lock; :meth:`remove` says its file is to go at release."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.removed = False

    def remove(self) -> None:
        """Delete the lock file at release (the directory was destroyed). A command
        that opened it before then still finds it held; one after makes a new one."""
        self.removed = True


@contextlib.contextmanager
def cluster_lock(root: str | Path, command: str) -> Iterator[Held]:
    """Hold the lock of cluster directory ``root`` while ``command`` (``up``, ``down``,
    ``destroy``) works on it; a :class:`ClusterError` naming the holder if another
    process holds it. Not reentrant: take it once per command."""
    root = Path(root).absolute()
    held = Held(_lock_file(root))
    fd = os.open(held.path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)  # whoever made it, every user may take turns
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterError(
                f"another {_holder(fd)} is working on the cluster in {root}; "
                f"wait for it to finish, then run `mlscale {command}` again"
            ) from None
        note = json.dumps({"command": command, "pid": os.getpid(), "root": str(root)})
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode(), 0)
        yield held
        if held.removed:
            held.path.unlink(missing_ok=True)  # while still held: no one else had it
    finally:
        os.close(fd)  # closing releases the lock

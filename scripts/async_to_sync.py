"""Generate engine/cluster_sync.py from engine/cluster_async.py (the one written by hand).

The transformation is textual, so comments and docstrings are translated too:
it drops ``async`` and ``await`` and renames async names to their sync twins.
The async source avoids those words where the sync text must differ.
The result is formatted with ruff. ``--check`` fails if the checked-in file
differs from what would be generated (run in the test suite).

Usage: .venv/bin/python scripts/async_to_sync.py [--check]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src/mlscale/engine/cluster_async.py"
TARGET = ROOT / "src/mlscale/engine/cluster_sync.py"

RENAMES = {
    "AsyncCluster": "Cluster",
    "AsyncScope": "Scope",
    "AsyncSession": "Session",
    "AsyncTransaction": "Transaction",
    "_AsyncRunner": "_Runner",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnection": "Connection",
    "AsyncIterator": "Iterator",
    "asynccontextmanager": "contextmanager",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
}

HEADER = (
    "# Generated from cluster_async.py by scripts/async_to_sync.py: do not edit.\n"
    "# Change cluster_async.py and run the script again.\n"
)


def transform(source: str) -> str:
    """The sync twin of ``source``: docstrings and comments are translated too."""
    text = re.sub(r"\basync (def|with|for)\b", r"\1", source)
    text = re.sub(r"\bawait ", "", text)
    text = re.sub(r"\[row async for ", "[row for ", text)
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return HEADER + text


def formatted(text: str) -> str:
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    fixed = subprocess.run(
        [str(ruff), "check", "--fix", "--select", "I,F401", "--stdin-filename", str(TARGET), "-"],
        input=done.stdout,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(TARGET), "-"],
        input=fixed.stdout or done.stdout,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main(argv: list[str]) -> int:
    generated = formatted(transform(SOURCE.read_text()))
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != generated:
            print(f"{TARGET} is stale: run scripts/async_to_sync.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(generated)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Generate the sync twins (engine/*_sync.py) from their async sources (written by hand).

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
ENGINE = ROOT / "src/mlscale/engine"
# Folders whose *_async.py sources get generated twins.
FOLDERS = [
    ENGINE,
    ROOT / "src/mlscale/stores",
    ROOT / "src/mlscale/stores/features",
    ROOT / "src/mlscale/stores/predictions",
    ROOT / "src/mlscale/stores/training",
    ROOT / "src/mlscale/stores/registry",
    ROOT / "src/mlscale/stores/experiments",
    ROOT / "src/mlscale/stores/vectors",
    ROOT / "src/mlscale/stores/metrics",
]
# concurrency_async.py and concurrency_sync.py are the two worlds' primitives,
# each written by hand, as are the prediction writer's two front ends (threads,
# tasks: stores/predictions/writer_*.py) and the training reader's prefetchers
# (stores/training/prefetch_*.py); every other *_async.py has a generated twin.
HAND_WRITTEN = {"concurrency_async.py", "writer_async.py", "prefetch_async.py"}
PAIRS = [
    (source, source.with_name(source.name.replace("_async.py", "_sync.py")))
    for folder in FOLDERS
    for source in sorted(folder.glob("*_async.py"))
    if source.name not in HAND_WRITTEN
]

RENAMES = {
    "AsyncAdmin": "Admin",
    "AsyncCatalogWatch": "CatalogWatch",
    "AsyncCluster": "Cluster",
    "AsyncDirectory": "Directory",
    "AsyncFanout": "Fanout",
    "AsyncFollower": "Follower",
    "AsyncLazyTables": "LazyTables",
    "AsyncClient": "Client",
    "AsyncMonitor": "Monitor",
    "AsyncNodePool": "NodePool",
    "AsyncNodes": "Nodes",
    "AsyncRooms": "Rooms",
    "AsyncRouter": "Router",
    "AsyncRunner": "Runner",
    "AsyncScatter": "Scatter",
    "AsyncScope": "Scope",
    "AsyncSession": "Session",
    "AsyncTransaction": "Transaction",
    "AsyncFeatureStore": "FeatureStore",
    "AsyncOnlineReader": "OnlineReader",
    "AsyncRegistry": "Registry",
    "AsyncViews": "Views",
    "AsyncWriter": "Writer",
    "AsyncPredictionTables": "PredictionTables",
    "AsyncPredictionStore": "PredictionStore",
    "AsyncPredictionWriter": "PredictionWriter",
    "AsyncLabels": "Labels",
    "AsyncPredictionQueries": "PredictionQueries",
    "AsyncTrainingReader": "TrainingReader",
    "AsyncModelRegistry": "ModelRegistry",
    "AsyncRegistryTables": "RegistryTables",
    "AsyncExperimentStore": "ExperimentStore",
    "AsyncExperimentTables": "ExperimentTables",
    "AsyncVectorStore": "VectorStore",
    "AsyncVectorCollection": "VectorCollection",
    "AsyncMetricStore": "MetricStore",
    "AsyncMetricTables": "MetricTables",
    "AsyncMetricWrites": "MetricWrites",
    "AsyncMetricQueries": "MetricQueries",
    "AsyncMetricMaintenance": "MetricMaintenance",
    "AsyncDayPartitions": "DayPartitions",
    "AsyncVectorWrites": "VectorWrites",
    "AsyncVectorQueries": "VectorQueries",
    "AsyncCache": "Cache",
    "tiered_async": "tiered",
    "AsyncConnectionPool": "ConnectionPool",
    "AsyncConnection": "Connection",
    "AsyncCopy": "Copy",
    "AsyncCursor": "Cursor",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "asynccontextmanager": "contextmanager",
    "aclosing": "closing",
    "AsyncExitStack": "ExitStack",
    "enter_async_context": "enter_context",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "__aiter__": "__iter__",
}
# Module names: x_async -> x_sync for every async source (and the primitives).
RENAMES.update(
    {
        source.stem: source.stem.replace("_async", "_sync")
        for folder in FOLDERS
        for source in sorted(folder.glob("*_async.py"))
    }
)

HEADER = (
    "# Generated from {source} by scripts/async_to_sync.py: do not edit.\n"
    "# Change {source} and run the script again.\n"
)


def transform(source: str, name: str) -> str:
    """The sync twin of ``source``: docstrings and comments are translated too."""
    text = re.sub(r"\basync (def|with|for)\b", r"\1", source)
    text = re.sub(r"\bawait ", "", text)
    text = re.sub(r"\[row async for ", "[row for ", text)
    text = re.sub(r"\bAwaitable\[([^\]]*)\]", r"\1", text)
    for old, new in RENAMES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    return HEADER.format(source=name) + text


def formatted(text: str, target: Path) -> str:
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(target), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    fixed = subprocess.run(
        [str(ruff), "check", "--fix", "--select", "I,F401", "--stdin-filename", str(target), "-"],
        input=done.stdout,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    return subprocess.run(
        [str(ruff), "format", "--stdin-filename", str(target), "-"],
        input=fixed.stdout or done.stdout,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main(argv: list[str]) -> int:
    stale = []
    for source, target in PAIRS:
        generated = formatted(transform(source.read_text(), source.name), target)
        if "--check" in argv:
            if not target.exists() or target.read_text() != generated:
                stale.append(target)
            continue
        target.write_text(generated)
        print(f"wrote {target}")
    for target in stale:
        print(f"{target} is stale: run scripts/async_to_sync.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

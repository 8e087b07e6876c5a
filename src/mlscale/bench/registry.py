"""The benchmarks ``mlscale bench NAME`` knows, and how one is run.

Each benchmark is a module with a ``BENCHMARK`` object; modules are imported
only when their benchmark runs, so the CLI starts fast.
"""

from __future__ import annotations

import importlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import MlscaleError
from ..local.tempdirs import reachable_tempdir
from .results import BenchResult, machine_facts

__all__ = ["BENCHMARKS", "BenchContext", "Benchmark", "run_benchmark"]

# name -> module defining BENCHMARK
BENCHMARKS: dict[str, str] = {
    "cache": "mlscale.bench.cache",
    "checkpoints": "mlscale.bench.checkpoints",
    "experiments": "mlscale.bench.experiments",
    "failover": "mlscale.bench.failover",
    "features": "mlscale.bench.features",
    "metrics": "mlscale.bench.metrics",
    "node-cap": "mlscale.bench.node_cap",
    "placement": "mlscale.bench.placement",
    "predictions": "mlscale.bench.predictions",
    "registry": "mlscale.bench.model_registry",
    "replicas": "mlscale.bench.replicas",
    "scatter": "mlscale.bench.scatter",
    "serve": "mlscale.bench.serve",
    "training-read": "mlscale.bench.training",
    "vectors": "mlscale.bench.vectors",
}


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What a benchmark run gets: its size and a directory for the clusters it starts."""

    quick: bool
    workdir: Path
    quiet: bool = False


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    title: str
    run: Callable[[BenchContext], BenchResult]


def load(name: str) -> Benchmark:
    """The benchmark called ``name``; a clear error listing the known ones otherwise."""
    module = BENCHMARKS.get(name)
    if module is None:
        raise MlscaleError(f"no benchmark named {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    bench: Benchmark = importlib.import_module(module).BENCHMARK
    return bench


@contextmanager
def _workdir() -> Iterator[Path]:
    # Servers run as an unprivileged OS user, which must reach the directory.
    path = reachable_tempdir("mlscale-bench-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_benchmark(
    name: str, *, quick: bool, out: str | Path, quiet: bool = False
) -> tuple[BenchResult, Path]:
    """Run benchmark ``name``; write ``out/NAME.json``. (result, its path)."""
    bench = load(name)
    started = time.perf_counter()
    with _workdir() as workdir:
        result = bench.run(BenchContext(quick=quick, workdir=workdir, quiet=quiet))
    result.duration_s = time.perf_counter() - started
    result.quick = quick
    result.machine = {**machine_facts(), **result.machine}
    return result, result.write(out)

"""The data of ``mlscale bench metrics``: training and system metrics of R runs over 24
hours, as InfluxDB line protocol batches both sides are sent byte for byte, and the
same rows as binary COPY payloads for the machine's ceiling.

Every ``interval_s`` seconds each run writes two lines (tags sorted, as InfluxDB's
clients write them; timestamps in nanoseconds, whole seconds)::

    train,host=gpu-03,run=run011 loss=0.8731...,acc=0.4120...,step=1234i 1765065600000000000
    system,host=gpu-03,run=run011 gpu_util=87.51...,mem_gb=31.20... 1765065600000000000

Lines go in time order, all runs at one instant before the next (what a fleet of
writers flushing every few seconds sends), cut into batches of ``batch_lines`` lines,
one HTTP request or ``write_lines`` call each. Floats are printed with ``repr`` (17
significant digits at most), so every parser reads back exactly the values made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from ..core.copybinary import CopyColumn, PgType, encode_copy

__all__ = ["CEILING_COLUMNS", "MetricsData", "Shape"]

HOSTS = 8
TRAIN = "train"
SYSTEM = "system"
# The ceiling's one table: a line a row, the fields a line lacks NULL.
CEILING_COLUMNS: tuple[tuple[str, PgType], ...] = (
    ("time", PgType.TIMESTAMPTZ),
    ("measurement", PgType.TEXT),
    ("run", PgType.TEXT),
    ("host", PgType.TEXT),
    ("loss", PgType.FLOAT8),
    ("acc", PgType.FLOAT8),
    ("step", PgType.INT8),
    ("gpu_util", PgType.FLOAT8),
    ("mem_gb", PgType.FLOAT8),
)


@dataclass(frozen=True, slots=True)
class Shape:
    """How much data: ``runs`` series per measurement, a line per run and measurement
    every ``interval_s`` seconds over ``hours`` hours ending at ``end``, in batches of
    ``batch_lines`` lines."""

    runs: int
    interval_s: int
    hours: int
    batch_lines: int
    end: datetime

    @property
    def start(self) -> datetime:
        return self.end - timedelta(hours=self.hours)

    @property
    def instants(self) -> int:
        return self.hours * 3600 // self.interval_s

    @property
    def lines(self) -> int:
        """Lines (points) in all: two measurements, each ``runs`` series."""
        return 2 * self.runs * self.instants


def run_name(i: int) -> str:
    """The ``run`` tag of run ``i``."""
    return f"run{i:03d}"


def host_name(i: int) -> str:
    """The ``host`` tag of run ``i`` (runs share 8 hosts)."""
    return f"gpu-{i % HOSTS:02d}"


@dataclass(frozen=True, slots=True)
class MetricsData:
    """The batches (line protocol text), and per batch the same rows as a binary COPY
    payload of :data:`CEILING_COLUMNS`."""

    shape: Shape
    batches: tuple[str, ...]
    payloads: tuple[bytes, ...]
    bytes_total: int

    @property
    def lines(self) -> int:
        return self.shape.lines

    @property
    def field_values(self) -> int:
        """Field values in all: 3 a train line, 2 a system line."""
        return 5 * self.shape.runs * self.shape.instants

    @classmethod
    def make(cls, shape: Shape, *, seed: int = 20261207) -> MetricsData:
        """Generate the data (deterministic for a seed)."""
        rng = np.random.default_rng(seed)
        runs, n_t = shape.runs, shape.instants
        t_s = int(shape.start.timestamp()) + np.arange(n_t, dtype=np.int64) * shape.interval_s
        step = np.arange(n_t, dtype=np.int64)[:, None] * np.ones(runs, dtype=np.int64)
        # Curves that look like training: loss decays with noise, accuracy rises.
        decay = np.exp(-step / (n_t / 3.0)) * rng.uniform(0.5, 2.0, runs)
        loss = decay + rng.normal(0.0, 0.02, (n_t, runs)) + 0.05
        acc = np.clip(1.0 - decay / 2.5 + rng.normal(0.0, 0.01, (n_t, runs)), 0.0, 1.0)
        gpu = np.clip(rng.normal(85.0, 8.0, (n_t, runs)), 0.0, 100.0)
        mem = rng.uniform(20.0, 70.0, runs) + rng.normal(0.0, 0.5, (n_t, runs))
        tags = [f"host={host_name(r)},run={run_name(r)}" for r in range(runs)]
        lines: list[str] = []
        for ti in range(n_t):
            ts = f"{int(t_s[ti]) * 1_000_000_000}"
            lo, ac, st = loss[ti].tolist(), acc[ti].tolist(), step[ti].tolist()
            gu, me = gpu[ti].tolist(), mem[ti].tolist()
            for r in range(runs):
                lines.append(f"{TRAIN},{tags[r]} loss={lo[r]!r},acc={ac[r]!r},step={st[r]}i {ts}")
                lines.append(f"{SYSTEM},{tags[r]} gpu_util={gu[r]!r},mem_gb={me[r]!r} {ts}")
        b = shape.batch_lines
        batches = tuple("\n".join(lines[i : i + b]) + "\n" for i in range(0, len(lines), b))
        # The same rows in the same order, as columns: row 2k is a train line, 2k+1 a system.
        n = len(lines)
        is_train = np.zeros(n, dtype=bool)
        is_train[0::2] = True
        columns = {
            "time": np.repeat(t_s * 1_000_000, 2 * runs),
            "measurement": np.where(is_train, TRAIN, SYSTEM).astype(object),
            "run": np.tile(np.repeat(np.array(list(map(run_name, range(runs))), object), 2), n_t),
            "host": np.tile(np.repeat(np.array(list(map(host_name, range(runs))), object), 2), n_t),
            "loss": _interleave(loss, 0, n),
            "acc": _interleave(acc, 0, n),
            "step": _interleave(step, 0, n),
            "gpu_util": _interleave(gpu, 1, n),
            "mem_gb": _interleave(mem, 1, n),
        }
        cols = CEILING_COLUMNS
        valid = {"loss": is_train, "acc": is_train, "step": is_train,
                 "gpu_util": ~is_train, "mem_gb": ~is_train}  # fmt: skip
        payloads = tuple(
            encode_copy([_column(t, columns[name], valid.get(name), i, i + b) for name, t in cols])
            for i in range(0, n, b)
        )
        return cls(shape, batches, payloads, sum(len(x) for x in batches))


def _column(
    t: PgType, values: npt.NDArray[Any], valid: npt.NDArray[np.bool_] | None, lo: int, hi: int
) -> CopyColumn:
    return CopyColumn(t, values[lo:hi], None if valid is None else valid[lo:hi])


def _interleave(values: npt.NDArray[np.generic], offset: int, n: int) -> npt.NDArray[np.generic]:
    """(instants, runs) values put at rows ``2k + offset`` of an ``n``-row column
    (zero elsewhere: those rows are NULL by their mask)."""
    out = np.zeros(n, dtype=values.dtype)
    out[offset::2] = values.reshape(-1)
    return out

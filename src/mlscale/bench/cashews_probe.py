"""The cashews side of ``mlscale bench cache``, run in cashews' own venv (not mlscale's).

Self-contained on purpose: it runs under another interpreter, where only the
standard library, cashews and redis are installed, so it imports nothing of
mlscale (its percentile rule is the same nearest-rank rule as :mod:`.cache`'s).

Usage: ``python cashews_probe.py HOST PORT ROWS_JSON`` with the Redis password in
``$MLSCALE_BENCH_REDIS_PASSWORD``. Then, one command a line on stdin, one JSON line
on stdout each:

- ``load``: ``cache.set`` every row of ROWS_JSON (``{id: row}``) under
  ``cashews:item:ID`` -> ``{"loaded": n}``;
- ``round ID,ID,...``: ``await cache.get`` of each key in turn, each timed ->
  ``{"p50_us", "p99_us", "ops_per_s", "ops", "misses"}``;
- ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from typing import Any

PREFIX = "cashews:item:"


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of an ascending list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def main() -> None:
    from cashews import cache  # type: ignore[import-not-found]

    host, port, rows_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    password = os.environ.get("MLSCALE_BENCH_REDIS_PASSWORD", "")
    # The library's defaults (its own serializer); no client-side cache, as the L2
    # hit it is compared with goes to Redis every time.
    cache.setup(f"redis://:{password}@{host}:{port}/0", client_side=False)
    rows: dict[str, Any] = json.loads(open(rows_path).read())  # noqa: SIM115
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "load":
            for key, row in rows.items():
                await cache.set(PREFIX + key, row, expire=3600)
            out: dict[str, Any] = {"loaded": len(rows)}
        elif cmd == "round":
            keys = [PREFIX + k for k in arg.split(",")]
            lat: list[float] = []
            misses = 0
            perf = time.perf_counter
            t0 = perf()
            for key in keys:
                s = perf()
                value = await cache.get(key)
                lat.append(perf() - s)
                misses += value is None
            wall = perf() - t0
            lat.sort()
            out = {
                "p50_us": percentile(lat, 50) * 1e6,
                "p99_us": percentile(lat, 99) * 1e6,
                "ops_per_s": len(keys) / wall,
                "ops": len(keys),
                "misses": misses,
            }
        else:
            return
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())

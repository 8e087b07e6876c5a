"""The closed-loop load of k-nearest queries the ``vectors`` benchmark puts on every side
(mlscale, one node, milvus-lite): the same code for all, so it imports only the
standard library and numpy -- milvus-lite's worker runs it in its own venv, which has
no mlscale (:mod:`.milvus_lite_worker` imports this file by path).

``clients`` threads each send one query at a time for ``seconds``, taking the query
vectors in turn; every call is timed (perf_counter) and its ids checked against the
exact answer, so the rate is measured at the recall it reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["closed_loop", "recall_of"]

Search = Callable[[npt.NDArray[np.float32]], Sequence[Any]]
SearchMany = Callable[[npt.NDArray[np.float32]], Sequence[Sequence[Any]]]


def recall_of(got: Sequence[Any], truth: npt.NDArray[np.int64]) -> float:
    """The fraction of the exact k nearest ids (``truth``) found in ``got``."""
    want = set(truth.tolist())
    return len(want & {int(i) for i in got}) / max(1, len(want))


def closed_loop(
    search: Search,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    *,
    seconds: float,
    clients: int,
    batch: int = 1,
    search_many: SearchMany | None = None,
) -> dict[str, Any]:
    """Run the load (see the module docstring); plain data: ``queries`` answered,
    ``elapsed_s``, ``per_s`` (queries per second), latency of a call ``p50_ms`` /
    ``p99_ms`` / ``max_ms`` (with ``batch`` > 1 each call is ``search_many`` of
    ``batch`` query vectors at once: its latency is the batch's), mean
    ``recall``, ``errors`` (the first one's text in ``first_error``), and the client's CPU
    (``client_cpu_cores``: this process's CPU seconds per wall second)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    recalls: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = threading.Event()
    start_gate = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        n = len(queries)
        i = c * 7919 % n
        mine, hits = latencies[c], recalls[c]
        start_gate.wait()
        while not stop.is_set():
            rows = [(i + j) % n for j in range(batch)]
            t0 = time.perf_counter()
            try:
                if batch == 1:
                    answers: Sequence[Sequence[Any]] = [search(queries[i])]
                else:
                    assert search_many is not None, "batch > 1 needs search_many"
                    answers = search_many(queries[rows])
            except Exception as exc:  # a failed call is counted and shown, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                if len(errors) > 100:
                    return
                continue
            mine.append(time.perf_counter() - t0)
            hits.extend(recall_of(ids, truth[r]) for ids, r in zip(answers, rows, strict=True))
            i = (i + batch) % n

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    cpu0, t0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=60.0)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    lat = np.array([x for per in latencies for x in per], dtype=np.float64) * 1e3
    rec = [x for per in recalls for x in per]
    done = len(rec)
    return {
        "queries": done,
        "calls": int(lat.size),
        "batch": batch,
        "elapsed_s": elapsed,
        "per_s": done / elapsed if elapsed > 0 else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan"),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
        "recall": float(np.mean(rec)) if rec else float("nan"),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "client_cpu_cores": cpu / elapsed if elapsed > 0 else 0.0,
    }

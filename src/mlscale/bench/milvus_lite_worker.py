"""milvus-lite's side of the ``vectors`` benchmark, run by the Python of milvus-lite's own
venv (``python milvus_lite_worker.py DB DATA QUERIES TRUTH``): it has pymilvus and
numpy, not mlscale, so it imports nothing of mlscale but :mod:`vector_load` (by path).

It reads the same vectors (``.npy`` files the benchmark wrote), then answers one JSON
command a line on stdin with one JSON line on stdout:

- ``{"op": "load", "index": "HNSW", "m": 16, "ef_construction": 64, "batch": 5000}``:
  a collection (int64 id, float vector, L2) filled by inserts and flushed, the index
  built and loaded; answers the seconds each took and the index milvus-lite reports;
- ``{"op": "recall", "ef": 40, "k": 10, "queries": 200}``: recall@k of the first
  queries at that ef;
- ``{"op": "run", "ef": 40, "k": 10, "seconds": 3, "clients": 8, "batch": 1}``: the
  closed-loop load of :func:`vector_load.closed_loop` (``batch`` > 1: one search call
  of that many vectors at a time);
- ``{"op": "quit"}``.

Errors answer ``{"error": "..."}``; the benchmark reports them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vector_load import closed_loop, recall_of  # type: ignore[import-not-found]  # by path

COLLECTION = "bench_vectors"


def main() -> None:
    from pymilvus import DataType, MilvusClient  # type: ignore[import-not-found]  # its venv

    db, data_path, queries_path, truth_path = sys.argv[1:5]
    data = np.load(data_path)
    queries = np.load(queries_path)
    truth = np.load(truth_path)
    client = MilvusClient(db)

    def search(q: Any, ef: int, k: int) -> list[int]:
        hits = client.search(
            COLLECTION,
            [q.tolist()],
            limit=k,
            output_fields=["id"],
            search_params={"metric_type": "L2", "params": {"ef": ef, "nprobe": ef}},
        )
        return [int(h["id"]) for h in hits[0]]

    def search_many(qs: Any, ef: int, k: int) -> list[list[int]]:
        hits = client.search(
            COLLECTION,
            qs.tolist(),
            limit=k,
            output_fields=["id"],
            search_params={"metric_type": "L2", "params": {"ef": ef, "nprobe": ef}},
        )
        return [[int(h["id"]) for h in hit] for hit in hits]

    def load(cmd: dict[str, Any]) -> dict[str, Any]:
        if client.has_collection(COLLECTION):
            client.drop_collection(COLLECTION)
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=int(data.shape[1]))
        client.create_collection(COLLECTION, schema=schema)
        t0 = time.perf_counter()
        batch = int(cmd.get("batch", 5000))
        for lo in range(0, len(data), batch):
            rows = [{"id": i, "v": data[i].tolist()} for i in range(lo, min(lo + batch, len(data)))]
            client.insert(COLLECTION, rows)
        # Sealed segments are what the index covers: without a flush milvus-lite searches
        # its growing segment row by row (measured: 1.4 s a query at 100,000 x 128, 35 ms
        # after a flush and an HNSW build).
        client.flush(COLLECTION)
        load_s = time.perf_counter() - t0
        params = client.prepare_index_params()
        kind = cmd.get("index", "HNSW")
        knobs = {"M": cmd.get("m", 16), "efConstruction": cmd.get("ef_construction", 64)}
        params.add_index("v", index_type=kind, metric_type="L2", params=knobs)
        t0 = time.perf_counter()
        client.create_index(COLLECTION, params)
        client.load_collection(COLLECTION)
        index_s = time.perf_counter() - t0
        described = client.describe_index(COLLECTION, "v")
        return {"load_s": load_s, "index_s": index_s, "index": dict(described)}

    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.get("op")
        try:
            if op == "quit":
                break
            if op == "load":
                out = load(cmd)
            elif op == "recall":
                ef, k, n = int(cmd["ef"]), int(cmd["k"]), int(cmd["queries"])
                scores = [recall_of(search(queries[i], ef, k), truth[i]) for i in range(n)]
                out = {"recall": float(np.mean(scores))}
            elif op == "run":
                ef, k = int(cmd["ef"]), int(cmd["k"])
                out = closed_loop(
                    lambda q, ef=ef, k=k: search(q, ef, k),
                    queries,
                    truth,
                    seconds=float(cmd["seconds"]),
                    clients=int(cmd["clients"]),
                    batch=int(cmd.get("batch", 1)),
                    search_many=lambda qs, ef=ef, k=k: search_many(qs, ef, k),
                )
            else:
                out = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # told to the benchmark, which reports it
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
    client.close()


if __name__ == "__main__":
    main()

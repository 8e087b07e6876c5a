"""The Feast side of ``mlscale bench features``, run in Feast's own venv (not mlscale's).

Self-contained on purpose: it runs under another interpreter, where only the
standard library, Feast and Feast's dependencies (psycopg, redis, pandas, yaml) are
installed, so it imports nothing of mlscale (its percentile rule is the same
nearest-rank rule as :mod:`.cache`'s).

Usage: ``python feast_probe.py CONFIG_JSON`` where CONFIG_JSON is a JSON object::

    {"repo_dir": "/tmp/x", "store": "postgres" | "redis", "project": "mlscale_bench",
     "features": 50, "gc_freeze": false,
     "pg": {"host": ..., "port": ..., "dbname": ..., "user": ...},
     "redis": {"host": ..., "port": ..., "db": 0}}

Passwords never travel in argv: they are read from ``$MLSCALE_BENCH_PG_PASSWORD``
and ``$MLSCALE_BENCH_REDIS_PASSWORD``. The feature_store.yaml written to repo_dir
names those variables (Feast expands ``${VAR}`` when it reads the file), so no
secret is written to disk either.

At start the probe applies Entity ``entity_id`` (Int64 join key) and FeatureView
``fv`` (F Float32 fields ``f0..f{F-1}``, no TTL) through the Python SDK, then
answers ``{"ready": true, "feast": version, "apply_s": s}``. Then, one command a
line on stdin, one JSON line on stdout each (``{"error": why}`` if one fails):

- ``load START COUNT CHUNK``: ``write_to_online_store("fv", df)`` of entities
  START..START+COUNT-1, CHUNK rows a call -> ``{"loaded", "seconds"}`` (seconds spent
  in Feast's writes only, not building the frames);
- ``round B ID,ID,...``: ``get_online_features(...).to_dict()`` of consecutive
  batches of B ids, each call timed -> ``{"batches", "entities", "seconds",
  "p50_ms", "p99_ms", "entities_per_s", "values_checked", "mismatches"}``
  (seconds is the sum of the timed calls; every returned value is checked against
  the formula afterwards, outside the timing). With ``gc_freeze`` the heap is
  collected and frozen (``gc.freeze()``) first, a common serving tweak that takes
  most full collections out of the latencies; Feast as shipped does not do it;
- ``size``: postgres: ``{"bytes", "rows", "tables"}`` of the project's online
  tables; redis: ``{"used_memory", "dbsize", "project_keys"}``;
- ``teardown``: ``FeatureStore.teardown()`` (drops the tables or deletes the keys)
  -> ``{"torn_down": true}``;
- ``quit`` (or end of input).

Value of feature j for entity e: ``((e * 31 + j * 17) % 1000) / 8.0``, exact in
float32, so the values read back must equal it exactly.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PG_PASSWORD_ENV = "MLSCALE_BENCH_PG_PASSWORD"
REDIS_PASSWORD_ENV = "MLSCALE_BENCH_REDIS_PASSWORD"
EVENT_TS = datetime(2026, 1, 1, tzinfo=UTC)
FV = "fv"
ENTITY = "entity_id"
_REPLIES: Any = sys.stdout  # see main()


def value_of(entity: int, feature: int) -> float:
    """The value of feature ``feature`` for entity ``entity``: a multiple of 1/8 below
    125, exact in float32."""
    return float(((entity * 31 + feature * 17) % 1000) / 8.0)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..100) of an ascending list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _yaml_str(text: str) -> str:
    # JSON strings are valid YAML double-quoted scalars.
    return json.dumps(text)


def feature_store_yaml(cfg: dict[str, Any], repo: Path) -> str:
    """The feature_store.yaml of this probe: a local file registry, the local provider,
    the file offline store, and a postgres or redis online store whose password is a
    ``${VAR}`` reference, not the secret."""
    lines = [
        f"project: {cfg['project']}",
        f"registry: {_yaml_str(str(repo / 'registry.db'))}",
        "provider: local",
        "offline_store:",
        "  type: file",
        "entity_key_serialization_version: 3",
        "online_store:",
    ]
    if cfg["store"] == "postgres":
        pg = cfg["pg"]
        lines += [
            "  type: postgres",
            f"  host: {_yaml_str(pg['host'])}",
            f"  port: {int(pg['port'])}",
            f"  database: {_yaml_str(pg['dbname'])}",
            f"  user: {_yaml_str(pg['user'])}",
            f'  password: "${{{PG_PASSWORD_ENV}}}"',
            # Loopback servers of the bench have no TLS; Feast's default is "require".
            f"  sslmode: {_yaml_str(pg.get('sslmode', 'disable'))}",
        ]
    elif cfg["store"] == "redis":
        rd = cfg["redis"]
        conn = f"{rd['host']}:{int(rd['port'])},db={int(rd.get('db', 0))}"
        lines += [
            "  type: redis",
            f'  connection_string: "{conn},password=${{{REDIS_PASSWORD_ENV}}}"',
        ]
    else:
        raise ValueError(f"store must be postgres or redis, not {cfg['store']!r}")
    return "\n".join(lines) + "\n"


def _check_secrets(store: str) -> None:
    """Refuse, in words, a password Feast's config cannot carry unchanged."""
    if store == "postgres":
        secret = os.environ.get(PG_PASSWORD_ENV, "")
        if '"' in secret or "\\" in secret or "\n" in secret:
            raise ValueError(f"${PG_PASSWORD_ENV} holds a quote, backslash or newline, "
                             "which the YAML Feast reads cannot carry as written")  # fmt: skip
        return
    secret = os.environ.get(REDIS_PASSWORD_ENV, "")
    # Feast splits the connection string on commas and JSON-decodes each value.
    try:
        decoded: Any = json.loads(secret)
    except ValueError:
        decoded = secret
    if not secret or "," in secret or '"' in secret or "\\" in secret or decoded != secret:
        raise ValueError(
            f"${REDIS_PASSWORD_ENV} is empty or cannot pass through Feast's Redis "
            "connection string unchanged (comma, quote, or JSON literal)"
        )


class Probe:
    """One FeatureStore over one online store, and the commands run on it."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
        from feast import (  # type: ignore[import-not-found,unused-ignore]
            Entity,
            FeatureStore,
            FeatureView,
            Field,
            FileSource,
            ValueType,
        )
        from feast.types import Float32  # type: ignore[import-not-found,unused-ignore]

        self.pd = pd
        self.cfg = cfg
        self.store_kind: str = cfg["store"]
        self.project: str = cfg["project"]
        self.features = int(cfg.get("features", 50))
        self.gc_freeze = bool(cfg.get("gc_freeze", False))
        self.names = [f"f{j}" for j in range(self.features)]
        self.refs = [f"{FV}:{n}" for n in self.names]
        repo = Path(cfg["repo_dir"])
        repo.mkdir(parents=True, exist_ok=True)
        _check_secrets(self.store_kind)
        (repo / "feature_store.yaml").write_text(feature_store_yaml(cfg, repo))
        # One row so the file source exists should Feast look at it; online writes
        # and reads never read it.
        source_path = repo / "fv_source.parquet"
        self._frame(0, 1).to_parquet(source_path)
        self.fs = FeatureStore(repo_path=str(repo))
        entity = Entity(name=ENTITY, join_keys=[ENTITY], value_type=ValueType.INT64)
        view = FeatureView(
            name=FV,
            entities=[entity],
            # ttl 0 is Feast's "never expires": the online read then skips its age
            # check, so the 2026-01-01 rows stay served whatever the clock says.
            ttl=timedelta(0),
            schema=[Field(name=n, dtype=Float32) for n in self.names],
            online=True,
            source=FileSource(
                path=str(source_path),
                timestamp_field="event_timestamp",
                created_timestamp_column="created",
            ),
        )
        t0 = time.perf_counter()
        self.fs.apply([entity, view])
        self.apply_s = time.perf_counter() - t0

    def _frame(self, start: int, count: int) -> Any:
        import numpy as np  # type: ignore[import-not-found,unused-ignore]

        ids = np.arange(start, start + count, dtype=np.int64)
        cols: dict[str, Any] = {ENTITY: ids}
        for j in range(self.features):
            cols[f"f{j}"] = (((ids * 31 + j * 17) % 1000) / 8.0).astype(np.float32)
        cols["event_timestamp"] = self.pd.Series([EVENT_TS] * count)
        cols["created"] = self.pd.Series([EVENT_TS] * count)
        return self.pd.DataFrame(cols)

    def load(self, start: int, count: int, chunk: int) -> dict[str, Any]:
        spent = 0.0
        done = 0
        while done < count:
            n = min(chunk, count - done)
            df = self._frame(start + done, n)
            t0 = time.perf_counter()
            self.fs.write_to_online_store(FV, df)
            spent += time.perf_counter() - t0
            done += n
        return {"loaded": done, "seconds": spent}

    def round(self, batch: int, ids: list[int]) -> dict[str, Any]:
        if self.gc_freeze:
            # Feast's heap (pandas, pyarrow, protobuf, the registry) makes each full
            # collection cost ~70 ms here; frozen objects are not scanned again.
            gc.collect()
            gc.freeze()
        perf = time.perf_counter
        lat: list[float] = []
        replies: list[tuple[list[int], dict[str, Any]]] = []
        for i in range(0, len(ids), batch):
            chunk = ids[i : i + batch]
            rows = [{ENTITY: e} for e in chunk]
            s = perf()
            got = self.fs.get_online_features(features=self.refs, entity_rows=rows).to_dict()
            lat.append(perf() - s)
            replies.append((chunk, got))
        checked = mismatches = 0
        examples: list[str] = []
        for chunk, got in replies:
            if got.get(ENTITY) != chunk:
                mismatches += len(chunk)
                examples.append(f"entity ids came back as {str(got.get(ENTITY))[:80]}")
                continue
            for j, name in enumerate(self.names):
                column = got.get(name) or [None] * len(chunk)
                for e, v in zip(chunk, column, strict=False):
                    checked += 1
                    if v != value_of(e, j):
                        mismatches += 1
                        if len(examples) < 3:
                            examples.append(f"entity {e} {name}: {v!r} != {value_of(e, j)!r}")
        total = sum(lat)
        lat.sort()
        out: dict[str, Any] = {
            "batches": len(lat),
            "entities": len(ids),
            "seconds": total,
            "p50_ms": percentile(lat, 50) * 1e3 if lat else 0.0,
            "p99_ms": percentile(lat, 99) * 1e3 if lat else 0.0,
            "entities_per_s": len(ids) / total if total > 0 else 0.0,
            "values_checked": checked,
            "mismatches": mismatches,
        }
        if examples:
            out["mismatch_examples"] = examples
        return out

    def size(self) -> dict[str, Any]:
        if self.store_kind == "postgres":
            return self._pg_size()
        return self._redis_size()

    def _pg_size(self) -> dict[str, Any]:
        import psycopg  # type: ignore[import-not-found,unused-ignore]
        from psycopg import sql  # type: ignore[import-not-found,unused-ignore]

        pg = self.cfg["pg"]
        with psycopg.connect(
            host=pg["host"], port=int(pg["port"]), dbname=pg["dbname"], user=pg["user"],
            password=os.environ.get(PG_PASSWORD_ENV) or None,
            sslmode=pg.get("sslmode", "disable"), connect_timeout=10,
        ) as conn:  # fmt: skip
            # Feast names each view's table "<project>_<view>" in schema public.
            found = conn.execute(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind = 'r'"
                " AND left(c.relname, length(%s)) = %s ORDER BY 1",
                (self.project + "_", self.project + "_"),
            ).fetchall()
            tables = [name for name, _ in found]
            size = sum(int(n) for _, n in found)
            rows = 0
            for t in tables:
                counted = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", t))
                ).fetchone()
                rows += int(counted[0]) if counted else 0
        return {"bytes": size, "rows": rows, "tables": tables}

    def _redis_size(self) -> dict[str, Any]:
        import redis  # type: ignore[import-not-found,unused-ignore]

        rd = self.cfg["redis"]
        client = redis.Redis(
            host=rd["host"], port=int(rd["port"]), db=int(rd.get("db", 0)),
            password=os.environ.get(REDIS_PASSWORD_ENV) or None, socket_timeout=30,
        )  # fmt: skip
        try:
            used = int(client.info("memory")["used_memory"])
            keys = int(client.dbsize())
            # Feast's key is the serialized entity key followed by the project's name.
            mine = sum(1 for _ in client.scan_iter(match=f"*{self.project}", count=1000))
        finally:
            client.close()
        return {"used_memory": used, "dbsize": keys, "project_keys": mine}

    def teardown(self) -> dict[str, Any]:
        self.fs.teardown()
        return {"torn_down": True}


def _reply(out: dict[str, Any]) -> None:
    _REPLIES.write(json.dumps(out) + "\n")
    _REPLIES.flush()


def _error(exc: BaseException) -> dict[str, Any]:
    traceback.print_exc(file=sys.stderr)
    return {"error": f"{type(exc).__name__}: {exc}"[:500]}


def main() -> int:
    global _REPLIES
    # The replies' channel is fd 1 as the probe found it; anything else that writes
    # to stdout (a print in Feast, a C extension) goes to stderr instead, so it
    # cannot break the one-JSON-line-a-reply protocol.
    _REPLIES = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        cfg = json.loads(sys.argv[1])
        import feast  # type: ignore[import-not-found,unused-ignore]

        probe = Probe(cfg)
    except Exception as exc:  # told to the parent, which decides
        _reply(_error(exc))
        return 1
    _reply({"ready": True, "feast": feast.__version__, "apply_s": probe.apply_s})
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd, *args = line.split()
        if cmd == "quit":
            return 0
        try:
            if cmd == "load":
                out = probe.load(int(args[0]), int(args[1]), int(args[2]))
            elif cmd == "round":
                ids = [int(x) for x in args[1].split(",")] if len(args) > 1 else []
                out = probe.round(int(args[0]), ids)
            elif cmd == "size":
                out = probe.size()
            elif cmd == "teardown":
                out = probe.teardown()
            else:
                out = {"error": f"unknown command {cmd!r}"}
        except Exception as exc:  # one failed command: the probe goes on
            out = _error(exc)
        _reply(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

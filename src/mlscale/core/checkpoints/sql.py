"""The checkpoint store's tables and statements (text only; the store runs them).

- ``mlscale_ckpt_chunks`` (sharded by ``digest``, family :data:`CHUNK_FAMILY`): one
  row per distinct chunk. ``data`` is stored EXTERNAL (out of line, uncompressed:
  weights do not compress, and pglz's attempt is wasted CPU). ``touched_at`` is
  refreshed whenever a save finds the chunk present or names it in a manifest about
  to commit: garbage collection spares chunks touched within its grace period, which
  is what keeps a chunk an upload has counted on from vanishing under it.
- ``mlscale_ckpt_manifests`` (sharded by ``run``, family :data:`RUN_FAMILY`): one row
  per committed checkpoint; ``digests`` lists its distinct chunks for the collector.
- ``mlscale_ckpt_uploads`` (same family): one row per save in progress, deleted in
  the manifest's transaction; a save of the same (run, step) resumes its session.

No foreign keys: chunks and manifests live on different groups.
"""

from __future__ import annotations

__all__ = [
    "CHUNKS",
    "CHUNK_DDL",
    "CHUNK_FAMILY",
    "COPY_CHUNK",
    "DELETE_MANIFEST",
    "EXTERNAL_STORAGE",
    "FORGET_UPLOADS",
    "INSERT_CHUNK",
    "INSERT_MANIFEST",
    "LIST_ALL",
    "LIST_RUN",
    "LIST_UPLOADS",
    "MANIFEST",
    "MANIFESTS",
    "NOW_MINUS",
    "PRESENT",
    "REFERENCED",
    "RUN_DDL",
    "RUN_FAMILY",
    "STEPS_OF_RUN",
    "SWEEP",
    "SWEEP_ALL",
    "UPLOADS",
    "UPLOAD_DONE",
    "UPLOAD_START",
]

CHUNK_FAMILY = "checkpoint_chunks"
RUN_FAMILY = "checkpoint_runs"
CHUNKS = "mlscale_ckpt_chunks"
MANIFESTS = "mlscale_ckpt_manifests"
UPLOADS = "mlscale_ckpt_uploads"

CHUNK_DDL = {
    CHUNKS: (
        "CREATE TABLE mlscale_ckpt_chunks (digest text NOT NULL PRIMARY KEY, "
        "size int NOT NULL, data bytea NOT NULL, "
        "created_at timestamptz NOT NULL DEFAULT now(), "
        "touched_at timestamptz NOT NULL DEFAULT now())"
    ),
}
RUN_DDL = {
    MANIFESTS: (
        "CREATE TABLE mlscale_ckpt_manifests (run text NOT NULL, step bigint NOT NULL, "
        "session text NOT NULL, files jsonb NOT NULL, digests text[] NOT NULL, "
        "total_bytes bigint NOT NULL, chunk_size int NOT NULL, "
        "metadata jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (run, step))"
    ),
    UPLOADS: (
        "CREATE TABLE mlscale_ckpt_uploads (run text NOT NULL, step bigint NOT NULL, "
        "session text NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), "
        "updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run, step))"
    ),
}
# PostgreSQL 15 has no STORAGE clause in CREATE TABLE (16 does): set it after.
EXTERNAL_STORAGE = "ALTER TABLE mlscale_ckpt_chunks ALTER COLUMN data SET STORAGE EXTERNAL"

# Which of a batch's chunks a group holds, refreshing their touched_at: one statement
# per group per batch, and a chunk found present is protected from gc from then on.
PRESENT = (
    "UPDATE mlscale_ckpt_chunks SET touched_at = now() WHERE digest = ANY(%s) RETURNING digest"
)
# A large parameter sent in binary (bytes bind as bytea in binary format): as fast as a
# binary COPY of one 8 MB row here (measured), and it can say ON CONFLICT, which a COPY
# cannot (two saves of the same chunk at once).
INSERT_CHUNK = (
    "INSERT INTO mlscale_ckpt_chunks (digest, size, data) VALUES (%s, %s, %s) "
    "ON CONFLICT (digest) DO UPDATE SET touched_at = now()"
)
# A load's read of one chunk (see core/checkpoints/wire.py for why a COPY): COPY takes
# no bound parameters, so the digest is composed in as a quoted literal
# (``psycopg.sql.Literal``) in place of ``{}``.
COPY_CHUNK = (
    "COPY (SELECT data FROM mlscale_ckpt_chunks WHERE digest = {}) TO STDOUT (FORMAT binary)"
)

UPLOAD_START = (
    "INSERT INTO mlscale_ckpt_uploads (run, step, session) VALUES (%s, %s, %s) "
    "ON CONFLICT (run, step) DO UPDATE SET updated_at = now() RETURNING session"
)
UPLOAD_DONE = "DELETE FROM mlscale_ckpt_uploads WHERE run = %s AND step = %s"
LIST_UPLOADS = (
    "SELECT run, step, session, started_at, updated_at FROM mlscale_ckpt_uploads ORDER BY run, step"
)
FORGET_UPLOADS = (
    "DELETE FROM mlscale_ckpt_uploads WHERE updated_at < now() - make_interval(secs => %s)"
)
INSERT_MANIFEST = (
    "INSERT INTO mlscale_ckpt_manifests (run, step, session, files, digests, total_bytes, "
    "chunk_size, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (run, step) DO NOTHING RETURNING created_at"
)
_HEAD = "run, step, session, files, total_bytes, chunk_size, metadata, created_at"
MANIFEST = (
    f"SELECT {_HEAD} FROM mlscale_ckpt_manifests "  # noqa: S608
    "WHERE run = %s AND (%s::bigint IS NULL OR step = %s) ORDER BY step DESC LIMIT 1"
)
_SUMMARY = (
    "SELECT run, step, jsonb_array_length(files), "
    "(SELECT coalesce(sum(jsonb_array_length(f->'chunks')), 0) "
    "FROM jsonb_array_elements(files) f), "
    "total_bytes, metadata, created_at FROM mlscale_ckpt_manifests"
)
LIST_RUN = f"{_SUMMARY} WHERE run = %s ORDER BY step"
LIST_ALL = f"{_SUMMARY} ORDER BY run, step"
STEPS_OF_RUN = "SELECT step FROM mlscale_ckpt_manifests WHERE run = %s ORDER BY step FOR UPDATE"
DELETE_MANIFEST = (
    "DELETE FROM mlscale_ckpt_manifests WHERE run = %s AND step = ANY(%s) RETURNING digests"
)
REFERENCED = "SELECT DISTINCT unnest(digests) FROM mlscale_ckpt_manifests"
NOW_MINUS = "SELECT now() - make_interval(secs => %s)"
# Chunks no manifest names and untouched since the cutoff; an anti-join against the
# referenced list (a hash join: `<> ALL(array)` would compare every row with every
# element). SWEEP looks only at the candidates given (a retention's), SWEEP_ALL at all.
_SWEEP_TAIL = (
    "c.touched_at < %s AND NOT EXISTS (SELECT 1 FROM unnest(%s::text[]) AS r(d) "
    "WHERE r.d = c.digest) RETURNING c.size) SELECT count(*), coalesce(sum(size), 0) FROM gone"
)
SWEEP = (
    "WITH gone AS (DELETE FROM mlscale_ckpt_chunks c WHERE c.digest = ANY(%s) AND "  # noqa: S608
    + _SWEEP_TAIL
)
SWEEP_ALL = "WITH gone AS (DELETE FROM mlscale_ckpt_chunks c WHERE " + _SWEEP_TAIL  # noqa: S608

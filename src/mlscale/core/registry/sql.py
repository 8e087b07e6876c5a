"""The registry's tables and statements (text only; the store runs them).

Four tables, each sharded on ``model`` by key family :data:`FAMILY` (text keys), so
every row of one model sits on one shard group: a registration or a transition is one
transaction on that group's primary, and a lookup one statement on one of its
replicas. No foreign keys: rows of a family move between groups table by table when
resharding; the store's transactions keep the tables consistent instead.
"""

from __future__ import annotations

__all__ = [
    "ALIASES",
    "ALIAS_STATE",
    "BY_ALIAS",
    "DDL",
    "FAMILY",
    "HISTORY",
    "HISTORY_OF",
    "LIST_MODELS",
    "LOCK_ALIAS",
    "MODEL",
    "MODELS",
    "NEXT_VERSION",
    "VERSION",
    "VERSIONS",
    "VERSIONS_OF",
]

FAMILY = "models"
MODELS = "mlscale_models"
VERSIONS = "mlscale_model_versions"
ALIASES = "mlscale_model_aliases"
HISTORY = "mlscale_model_transitions"

DDL = {
    MODELS: (
        "CREATE TABLE mlscale_models (model text NOT NULL PRIMARY KEY, "
        "description text NOT NULL DEFAULT '', tags jsonb NOT NULL DEFAULT '{}', "
        "last_version int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now(), "
        "created_by text NOT NULL)"
    ),
    VERSIONS: (
        "CREATE TABLE mlscale_model_versions (model text NOT NULL, version int NOT NULL, "
        "artifact_uri text NOT NULL, run_id text, metadata jsonb NOT NULL DEFAULT '{}', "
        "metrics jsonb NOT NULL DEFAULT '{}', feature_views text[] NOT NULL DEFAULT '{}', "
        "status text NOT NULL DEFAULT 'ready', created_at timestamptz NOT NULL DEFAULT now(), "
        "created_by text NOT NULL, PRIMARY KEY (model, version))"
    ),
    ALIASES: (
        "CREATE TABLE mlscale_model_aliases (model text NOT NULL, alias text NOT NULL, "
        "version int, revision bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
        "updated_by text NOT NULL, PRIMARY KEY (model, alias))"
    ),
    HISTORY: (
        "CREATE TABLE mlscale_model_transitions (model text NOT NULL, alias text NOT NULL, "
        "revision bigint NOT NULL, from_version int, to_version int, actor text NOT NULL, "
        "reason text NOT NULL DEFAULT '', at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (model, alias, revision))"
    ),
}

# A version's columns, with the aliases pointing at it (the names ModelVersion.from_row reads).
_VERSION_COLUMNS = (
    "v.model, v.version, v.artifact_uri, v.metadata, v.metrics, v.feature_views, v.run_id, "
    "v.status, v.created_at, v.created_by, "
    "ARRAY(SELECT a2.alias FROM mlscale_model_aliases a2 WHERE a2.model = v.model "
    "AND a2.version = v.version ORDER BY a2.alias) AS aliases"
)

MODEL = (
    "SELECT m.model, m.description, m.tags, m.last_version, m.created_at, m.created_by, "
    "COALESCE((SELECT jsonb_object_agg(a.alias, a.version) FROM mlscale_model_aliases a "
    "WHERE a.model = m.model AND a.version IS NOT NULL), '{}') AS aliases "
    "FROM mlscale_models m WHERE m.model = %s"
)
LIST_MODELS = (
    "SELECT m.model, m.description, m.tags, m.last_version, m.created_at, m.created_by, "
    "COALESCE((SELECT jsonb_object_agg(a.alias, a.version) FROM mlscale_model_aliases a "
    "WHERE a.model = m.model AND a.version IS NOT NULL), '{}') AS aliases "
    "FROM mlscale_models m ORDER BY m.model"
)
NEXT_VERSION = (
    "UPDATE mlscale_models SET last_version = last_version + 1 WHERE model = %s "
    "RETURNING last_version"
)
VERSION = (
    f"SELECT {_VERSION_COLUMNS} FROM mlscale_model_versions v "  # noqa: S608
    "WHERE v.model = %s AND v.version = %s"
)
VERSIONS_OF = (
    f"SELECT {_VERSION_COLUMNS} FROM mlscale_model_versions v "  # noqa: S608
    "WHERE v.model = %s ORDER BY v.version"
)
BY_ALIAS = (
    f"SELECT {_VERSION_COLUMNS}, a.revision FROM mlscale_model_aliases a "  # noqa: S608
    "JOIN mlscale_model_versions v ON v.model = a.model AND v.version = a.version "
    "WHERE a.model = %s AND a.alias = %s"
)
ALIAS_STATE = (
    "SELECT version, revision, updated_at, updated_by FROM mlscale_model_aliases "
    "WHERE model = %s AND alias = %s"
)
LOCK_ALIAS = (
    "SELECT version, revision FROM mlscale_model_aliases WHERE model = %s AND alias = %s FOR UPDATE"
)
HISTORY_OF = (
    "SELECT model, alias, revision, from_version, to_version, actor, reason, at "
    "FROM mlscale_model_transitions WHERE model = %s AND (%s::text IS NULL OR alias = %s) "
    "ORDER BY at, alias, revision"
)

"""Where a view is stored and the SQL texts that read and write it."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from mlscale.core.features.layout import Layout, month_bounds, online_statement
from mlscale.core.features.spec import Entity, Feature, FeatureType, FeatureView
from mlscale.core.slots import KeyType

MIXED = FeatureView(
    "user_stats",
    entities=(Entity("user_id", KeyType.INT8),),
    features=(
        Feature("ctr"),
        Feature("clicks", FeatureType.INT),
        Feature("vip", FeatureType.BOOL),
        Feature("spend"),
        Feature("country", FeatureType.TEXT),
        Feature("emb", FeatureType.EMBEDDING, dim=4),
        Feature("visits", FeatureType.INT),
    ),
    ttl_s=3600.0,
    version=2,
)
COMPOSITE = FeatureView(
    "pairs",
    entities=(Entity("user_id", KeyType.INT4), Entity("item", KeyType.UUID)),
    features=(Feature("score"),),
)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_names() -> None:
    layout = Layout.of(MIXED)
    assert layout.online == "fv_user_stats_v2"
    assert layout.history == "fvh_user_stats_v2"
    assert layout.partition(dt.date(2024, 3, 17)) == "fvh_user_stats_v2_p202403"
    assert layout.keys == ("user_id",)
    # The longest names fit PostgreSQL's 63 bytes.
    longest = FeatureView("a" * 40, entities=(Entity("k"),), features=(Feature("x"),), version=9999)
    assert len(Layout.of(longest).partition(dt.date(2024, 12, 1))) <= 63


def test_columns_pack_floats_and_ints_in_declared_order() -> None:
    layout = Layout.of(MIXED)
    assert [(c.name, c.sql_type, c.features) for c in layout.columns] == [
        ("f4", "float4[]", (0, 3)),
        ("i8", "int8[]", (1, 6)),
        ("b_vip", "boolean", (2,)),
        ("t_country", "text", (4,)),
        ("e_emb", "float4[]", (5,)),
    ]
    assert [c.packed for c in layout.columns] == [True, True, False, False, False]
    assert layout.stored == (
        "user_id", "event_ts", "f4", "i8", "b_vip", "t_country", "e_emb"
    )  # fmt: skip
    assert layout.column_of(3).name == "f4"
    assert layout.column_of(6).name == "i8"
    assert layout.column_of(5).name == "e_emb"
    with pytest.raises(KeyError):
        layout.column_of(99)


def test_no_f4_without_floats() -> None:
    v = FeatureView("v", entities=(Entity("k"),), features=(Feature("n", FeatureType.INT),))
    assert [c.name for c in Layout.of(v).columns] == ["i8"]


def test_online_ddl() -> None:
    ddl = Layout.of(MIXED).online_ddl()
    assert ddl.startswith('CREATE TABLE "fv_user_stats_v2" (')
    assert '"user_id" bigint NOT NULL' in ddl
    assert "event_ts timestamptz NOT NULL" in ddl
    assert "created_ts timestamptz NOT NULL DEFAULT now()" in ddl
    assert '"f4" float4[] NOT NULL' in ddl and '"i8" int8[] NOT NULL' in ddl
    assert '"b_vip" boolean,' in ddl and '"t_country" text,' in ddl
    assert '"e_emb" float4[],' in ddl  # a missing embedding is a NULL
    assert ddl.endswith('PRIMARY KEY ("user_id"))')
    assert "PARTITION" not in ddl


def test_history_ddl_is_partitioned_by_event_time() -> None:
    ddl = Layout.of(COMPOSITE).history_ddl()
    assert ddl.startswith('CREATE TABLE "fvh_pairs_v1" (')
    assert '"user_id" integer NOT NULL' in ddl and '"item" uuid NOT NULL' in ddl
    assert ddl.endswith(
        'PRIMARY KEY ("user_id", "item", "event_ts")) PARTITION BY RANGE (event_ts)'
    )
    assert Layout.of(COMPOSITE).online_ddl().endswith('PRIMARY KEY ("user_id", "item"))')


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        (dt.date(2024, 3, 17), "2024-03-01T00:00:00+00:00", "2024-04-01T00:00:00+00:00"),
        (dt.date(2024, 12, 31), "2024-12-01T00:00:00+00:00", "2025-01-01T00:00:00+00:00"),
        (dt.date(2025, 1, 1), "2025-01-01T00:00:00+00:00", "2025-02-01T00:00:00+00:00"),
    ],
)
def test_month_partitions(day: dt.date, start: str, end: str) -> None:
    lo, hi = month_bounds(day)
    assert (lo.isoformat(), hi.isoformat()) == (start, end)
    ddl = Layout.of(MIXED).partition_ddl(day)
    part = f"fvh_user_stats_v2_p{day.year:04d}{day.month:02d}"
    assert ddl == (
        f'CREATE TABLE IF NOT EXISTS "{part}" PARTITION OF "fvh_user_stats_v2" '
        f"FOR VALUES FROM ('{start}') TO ('{end}')"
    )


def test_staging_and_copy() -> None:
    layout = Layout.of(COMPOSITE)
    assert layout.stage_ddl() == (
        'CREATE TEMP TABLE mlscale_stage ON COMMIT DROP AS SELECT "user_id", "item", '
        '"event_ts", "f4" FROM "fv_pairs_v1" WITH NO DATA'
    )
    assert layout.copy_sql() == (
        'COPY mlscale_stage ("user_id", "item", "event_ts", "f4") FROM STDIN (FORMAT binary)'
    )


def test_upsert_never_lets_an_older_event_win() -> None:
    up = squash(Layout.of(COMPOSITE).upsert_sql())
    assert up.startswith('INSERT INTO "fv_pairs_v1" AS cur ("user_id", "item", "event_ts", "f4"')
    # Newest event per entity among the staged rows ...
    assert 'SELECT DISTINCT ON ("user_id", "item")' in up
    assert 'ORDER BY "user_id", "item", event_ts DESC' in up
    # ... replaces the stored row only if at least as new.
    assert 'ON CONFLICT ("user_id", "item") DO UPDATE SET' in up
    assert up.endswith("WHERE cur.event_ts <= EXCLUDED.event_ts")
    for col in ("event_ts", "created_ts", "f4"):
        assert f'"{col}" = EXCLUDED."{col}"' in up


def test_history_insert_replaces_a_corrected_event() -> None:
    hist = squash(Layout.of(MIXED).history_sql())
    assert hist.startswith('INSERT INTO "fvh_user_stats_v2" (')
    assert 'ON CONFLICT ("user_id", "event_ts") DO UPDATE SET' in hist
    assert '"e_emb" = EXCLUDED."e_emb"' in hist
    assert "WHERE" not in hist  # no event-time guard: same key and time is a correction


def test_online_read_with_ttl_and_statement() -> None:
    layout = Layout.of(MIXED)
    part = layout.online_read([layout.columns[0], layout.columns[3]]).as_string(None)
    assert 'unnest(%s::bigint[]) WITH ORDINALITY AS q("k0", i)' in part
    assert 'JOIN "fv_user_stats_v2" AS v ON "v"."user_id" = q."k0"' in part
    assert "array_send(array_agg(q.i::int4))" in part
    assert 'array_send(array_agg("v"."f4"))' in part
    assert 'array_send(array_agg("v"."t_country"))' in part
    assert '"i8"' not in part
    assert part.endswith("WHERE v.event_ts >= now() - %s * interval '1 second')")
    assert part.count("%s") == 2  # the keys, the TTL
    statement = online_statement([layout.online_read(layout.columns[:1])] * 2)
    assert statement.startswith("SELECT * FROM (SELECT ")
    assert ') AS "v0", (SELECT ' in statement and statement.endswith(') AS "v1"')


def test_online_read_without_ttl_has_one_param_per_key() -> None:
    layout = Layout.of(COMPOSITE)
    part = layout.online_read(layout.columns).as_string(None)
    assert "unnest(%s::integer[], %s::uuid[])" in part
    assert '"v"."user_id" = q."k0" AND "v"."item" = q."k1"' in part
    assert "interval" not in part and part.count("%s") == 2


def test_historical_read() -> None:
    layout = Layout.of(MIXED)
    text = squash(layout.historical_read(layout.columns[:1]))
    assert "unnest(%s::bigint[], %s::timestamptz[]) WITH ORDINALITY" in text
    assert 'CROSS JOIN LATERAL (SELECT h.event_ts, h."f4" FROM "fvh_user_stats_v2" AS h' in text
    assert "h.event_ts <= q.ts AND h.event_ts >= q.ts - 3600.0 * interval '1 second'" in text
    assert text.endswith("ORDER BY h.event_ts DESC LIMIT 1) AS h")
    no_ttl = Layout.of(COMPOSITE).historical_read(Layout.of(COMPOSITE).columns)
    assert "interval" not in no_ttl and no_ttl.count("%s") == 3

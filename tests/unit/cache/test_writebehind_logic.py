"""Pure logic of write-behind: versions from stream IDs, durability from CONFIG GET
values, newest-per-key batching, the upsert's text and parameters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from psycopg import sql

from mlscale.cache.journal import (
    Append,
    Durability,
    DurabilityMode,
    JournalCorrupt,
    JournalEntry,
    next_id,
    version_of,
)
from mlscale.cache.writebehind import Target, newest_per_key
from mlscale.local.settings import redis_conf_text


def test_versions_follow_stream_ids() -> None:
    ids = ["1700000000000-0", "1700000000000-1", "1700000000000-99999", "1700000000001-0"]
    versions = [version_of(i) for i in ids]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert version_of(b"1700000000000-5") == (1700000000000 << 20) + 5
    assert version_of("8796093022207-0") < 2**63  # ms < 2**43 (year 2248) fits a bigint
    with pytest.raises(ValueError, match="sequence"):
        version_of(f"1-{2**20}")
    assert next_id("5-7") == "5-8"


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "mode", "window"),
    [
        ("yes", "always", DurabilityMode.FSYNC_ALWAYS, 0.0),
        ("yes", "everysec", DurabilityMode.FSYNC_EVERYSEC, 2.0),
        ("yes", "no", DurabilityMode.FSYNC_OS, 30.0),
        ("no", "always", DurabilityMode.NO_AOF, math.inf),
        (None, None, DurabilityMode.UNKNOWN, math.inf),
    ],
)
def test_durability_states_a_loss_window(
    appendonly: str | None, appendfsync: str | None, mode: DurabilityMode, window: float
) -> None:
    d = Durability.of(appendonly, appendfsync)
    assert (d.mode, d.loss_window_s, d.durable) == (mode, window, window == 0.0)


def test_a_cluster_is_as_durable_as_its_weakest_primary() -> None:
    nodes = [Durability.of("yes", "always"), Durability.of("yes", "everysec")]
    assert Durability.weakest(nodes).mode is DurabilityMode.FSYNC_EVERYSEC


def _entry(i: int, table: str, key: object, version: int) -> JournalEntry:
    return JournalEntry(f"1-{i}", table, key, {"v": i}, version)


def test_a_batch_keeps_the_newest_version_of_each_key() -> None:
    batch = [
        _entry(0, "a", 1, 10),
        _entry(1, "a", 1, 30),
        _entry(2, "a", 1, 20),  # older than the one before it: loses
        _entry(3, "b", 1, 5),  # same key, other table
        _entry(4, "a", [2, 3], 7),
        _entry(5, "a", (2, 3), 7),  # equal version: the later entry wins
    ]
    out = newest_per_key(batch)
    assert sorted(e.id for e in out["a"]) == ["1-1", "1-5"]
    assert [e.id for e in out["b"]] == ["1-3"]


def test_journal_entries_round_trip_and_refuse_foreign_data() -> None:
    fields = Append("t", (1, "x"), {"a": 1.5}).fields()
    e = JournalEntry.parse(b"1700000000000-3", fields)
    assert (e.table, e.key, e.row, e.version) == (
        "t",
        (1, "x"),
        {"a": 1.5},
        version_of("1700000000000-3"),
    )
    assert JournalEntry.parse("9-9", Append("t", 1, {}, version=4).fields()).version == 4
    with pytest.raises(JournalCorrupt):
        JournalEntry.parse("9-9", {b"t": b"t", b"k": b"{}", b"r": b"not ours"})


def test_upsert_quotes_identifiers_binds_values_and_guards_the_version() -> None:
    t = Target('we"ird', key=("k1", "k2"), columns=("score",), version="ver", schema="s")
    text = t.upsert(2).as_string()
    assert text == (
        'INSERT INTO "s"."we""ird" AS cur ("k1", "k2", "score", "ver") '
        "VALUES (%s, %s, %s, %s), (%s, %s, %s, %s) "
        'ON CONFLICT ("k1", "k2") DO UPDATE SET "score" = EXCLUDED."score", '
        '"ver" = EXCLUDED."ver" WHERE EXCLUDED."ver" > cur."ver"'
    )
    rows = [JournalEntry("1-0", t.table, (1, 2), {"score": 0.5}, 9)]
    assert t.params(rows) == [1, 2, 0.5, 9]
    with pytest.raises(JournalCorrupt):
        t.params([JournalEntry("1-1", t.table, 1, {"score": 0.5}, 9)])  # key not a pair
    with pytest.raises(ValueError, match="score"):
        t.check_row({"other": 1})
    assert isinstance(t.upsert(1), sql.Composed)


def test_redis_conf_appendfsync_option() -> None:
    conf = redis_conf_text(port=1, workdir=Path("/r"), password="p", appendfsync="always")
    assert "appendfsync always" in conf and "appendonly yes" in conf
    assert "appendfsync everysec" in redis_conf_text(port=1, workdir=Path("/r"), password="p")
    with pytest.raises(ValueError, match="appendfsync"):
        redis_conf_text(port=1, workdir=Path("/r"), password="p", appendfsync="sometimes")

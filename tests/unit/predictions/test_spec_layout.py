"""A prediction log's definition and layout: checks, names, DDL and statements."""

from __future__ import annotations

import datetime as dt

import pytest

from mlscale.core.predictions.layout import PredictionLayout, day_of_partition
from mlscale.core.predictions.spec import PredictionLog
from mlscale.core.slots import KeyType
from mlscale.errors import PredictionError


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"name": "Bad"}, "not a valid name"),
        ({"name": "x" * 31}, "at most 30"),
        ({"entity": "ts"}, "reserved"),
        ({"entity": "1x"}, "not a valid name"),
        ({"key_type": "float8"}, "not one of"),
        ({"retention_days": 0}, "retention_days"),
        ({"retention_days": True}, "retention_days"),
        ({"days_ahead": 61}, "days_ahead"),
        ({"family": "A"}, "not a valid name"),
    ],
)
def test_bad_definitions_are_refused(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(PredictionError, match=words):
        PredictionLog(**kwargs)  # type: ignore[arg-type]


def test_spec_round_trips_and_defaults() -> None:
    log = PredictionLog("clicks", entity="user_id", key_type="text", retention_days=30)  # type: ignore[arg-type]
    assert log.key_type is KeyType.TEXT and log.family == "clicks"
    assert (log.labels, log.unmatched) == ("clicks_labels", "clicks_unmatched")
    assert PredictionLog.from_spec(log.to_spec()) == log
    with pytest.raises(PredictionError, match="malformed"):
        PredictionLog.from_spec({"name": "x"})


def test_partitions_are_named_and_bounded_by_utc_day() -> None:
    layout = PredictionLayout(PredictionLog("p", entity="user_id"))
    day = dt.date(2026, 12, 31)
    assert layout.partition("p", day) == "p_d20261231"
    ddl = layout.partition_ddl("p_labels", day)
    assert '"p_labels_d20261231" PARTITION OF "p_labels"' in ddl
    assert "'2026-12-31 00:00:00+00'" in ddl and "'2027-01-01 00:00:00+00'" in ddl
    assert day_of_partition("p_labels_d20261231") == day
    assert day_of_partition("p_labels_d20261331") is None
    assert day_of_partition("p_labels") is None


def test_tables_hold_the_partition_and_shard_keys_in_their_primary_keys() -> None:
    layout = PredictionLayout(PredictionLog("p", entity="user_id", key_type=KeyType.UUID))
    assert 'PRIMARY KEY ("user_id", ts, prediction_id)) PARTITION BY RANGE (ts)' in (
        layout.predictions_ddl()
    )
    assert '"user_id" uuid NOT NULL' in layout.predictions_ddl()
    assert 'PRIMARY KEY ("user_id", ts, prediction_id)) PARTITION BY RANGE (ts)' in (
        layout.labels_ddl()
    )
    assert 'PRIMARY KEY ("user_id", prediction_id, label_ts))' in layout.unmatched_ddl()
    assert layout.copy_columns[0] == "user_id"
    assert "ON CONFLICT DO NOTHING" in layout.insert_new_sql()


def test_labels_never_replace_a_newer_label() -> None:
    sql = PredictionLayout(PredictionLog("p")).labels_sql()
    assert "WHERE cur.label_ts <= EXCLUDED.label_ts" in sql
    assert 'DISTINCT ON (s."entity_id", s.prediction_id)' in sql
    assert 'ORDER BY s."entity_id", s.prediction_id, s.label_ts DESC' in sql

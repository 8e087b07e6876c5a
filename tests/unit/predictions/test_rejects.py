"""Rows the server refuses for good, the pure half: what log/log_many refuse at once
(text PostgreSQL cannot store, times out of range), which server errors are
permanent, payloads taken apart by row, refused rows read back, and the sifting of a
part against a fake server that refuses some rows."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from mlscale.core.copybinary import row_spans, rows_payload
from mlscale.core.predictions.queueing import WriterOptions, WriterState
from mlscale.core.predictions.rejects import copy_line, is_permanent, rejected_from_copy
from mlscale.core.predictions.rows import check_prediction, predictions_from_rows, to_predictions
from mlscale.core.predictions.spec import PredictionLog
from mlscale.core.slots import KeyType
from mlscale.errors import (
    IntegrityViolation,
    NodeUnavailableError,
    PredictionError,
    QueryError,
    TransactionConflict,
)
from mlscale.stores.predictions.flush_sync import PartWritten, sift

LOG = PredictionLog(name="rj")
TEXT_LOG = PredictionLog(name="rjt", key_type=KeyType.TEXT)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"predicted": "a\x00b"}, "predicted holds a NUL character"),
        ({"predicted": "\ud800"}, "predicted holds a lone surrogate"),
        ({"model": "m\udfff"}, "model holds a lone surrogate"),
        ({"extra": {"k": "v\x00"}}, "extra holds a NUL character"),
        ({"extra": {"k\x00": 1}}, "extra holds a NUL character"),
        ({"extra": ["\ud83d"]}, "extra holds a lone surrogate"),
        ({"ts": np.datetime64("-5000-01-01", "us")}, "ts out of range"),
    ],
)
def test_one_row_that_postgresql_cannot_store_is_refused(
    kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {"model": "m", "model_version": "v", "score": 0.5, **kwargs}
    with pytest.raises(PredictionError, match=match):
        check_prediction(LOG, 1, args.pop("model"), args.pop("model_version"), **args)


def test_text_that_only_looks_like_an_escape_is_stored() -> None:
    row = check_prediction(LOG, 1, "m", "v", 0.5, extra={"k": "\\u0000", "é": "☃"})
    assert row[-1] == '{"k":"\\\\u0000","é":"☃"}'
    with pytest.raises(PredictionError, match="text entity holds a lone surrogate"):
        check_prediction(TEXT_LOG, "\ud800", "m", "v", 0.5)


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("predicted", ["a", "b\x00", "a"], r"NUL character, .* in row\(s\) 1 "),
        ("predicted", ["a", "\ud800", None], r"lone surrogate .* in row\(s\) 1 "),
        ("model_version", ["v", "v", "\udc00"], r"row\(s\) 2 "),
        ("extra", [None, {"a": 1}, {"b": "\x00"}], "row 2: extra holds a NUL"),
        ("extra", [{"a": "\ud800"}, None, None], "row 0: extra holds a lone surrogate"),
    ],
)
def test_a_batch_names_the_rows_postgresql_cannot_store(
    column: str, values: list[Any], match: str
) -> None:
    frame = pd.DataFrame({"entity_id": [1, 2, 3], "model": "m", "model_version": "v", "score": 0.5})
    frame[column] = pd.Series(values, dtype=object)
    with pytest.raises(PredictionError, match=match):
        to_predictions(LOG, frame)


def test_a_batch_with_a_time_out_of_range_is_refused() -> None:
    frame = pd.DataFrame({"entity_id": [1], "model": "m", "model_version": "v", "score": 0.5})
    frame["ts"] = pd.Series([pd.Timestamp("2026-01-01", tz="UTC")])
    assert to_predictions(LOG, frame).size == 1
    ok = check_prediction(LOG, 1, "m", "v", 0.5, ts=dt.datetime(9999, 12, 31, 23, 59))
    assert ok[2] > 0


def _err(sqlstate: str | None, text: str = "refused") -> QueryError:
    cls = IntegrityViolation if sqlstate and sqlstate.startswith("23") else QueryError
    return cls(f"{text} (node g0-primary, SQLSTATE {sqlstate})", sqlstate=sqlstate)


@pytest.mark.parametrize(
    ("exc", "permanent"),
    [
        (_err("22P05"), True),  # untranslatable character (a \u0000 in jsonb)
        (_err("22003"), True),  # numeric value out of range
        (_err("22008"), True),  # datetime field overflow
        (_err("23502"), True),  # not null
        (_err("23514", 'new row violates check constraint "c"'), True),
        (_err("23514", 'no partition of relation "p" found for row'), False),
        (_err("23503"), True),
        (_err("54000"), True),
        (_err("23505"), False),  # unique: the staging path's business
        (_err("40001"), False),
        (TransactionConflict("deadlock", sqlstate="40P01"), False),
        (_err("53100"), False),  # disk full
        (_err("57P01"), False),  # admin shutdown
        (_err("08006"), False),
        (_err("42P01"), False),  # no such table: not one row's fault, retried
        (_err(None), False),
        (NodeUnavailableError("down"), False),
        (ValueError("x"), False),
    ],
)
def test_which_errors_are_permanent(exc: BaseException, permanent: bool) -> None:
    assert is_permanent(exc) is permanent


def test_the_copy_line_hint_is_read_from_the_drivers_diagnostics() -> None:
    class Diag:
        context = 'COPY rj, line 37, column score: "x"'

    class Cause(psycopg.Error):
        @property
        def diag(self) -> Any:  # type: ignore[override]
            return Diag()

    exc = _err("23514", "check")
    assert copy_line(exc) is None
    exc.__cause__ = Cause("x")
    assert copy_line(exc) == 37


def _batch(n: int) -> Any:
    rows = [
        check_prediction(
            LOG, k, "m", "v", float(k), predicted=None if k % 2 else "c", extra={"k": k},
            prediction_id=uuid.UUID(int=k + 1), ts=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
        )
        for k in range(n)
    ]  # fmt: skip
    return predictions_from_rows(LOG, rows)


def test_payloads_taken_apart_by_row_and_rows_read_back() -> None:
    batch = _batch(7)
    data = batch.copy_payload()
    spans = row_spans(data)
    assert len(spans) == 8
    assert rows_payload(data, spans, 0, 7) == data
    rows = [
        rejected_from_copy(KeyType.INT8, data[spans[i] : spans[i + 1]], "g1", _err("23514", "c"))
        for i in range(7)
    ]
    assert sorted(r.entity for r in rows) == list(range(7))  # grouped by width, not in order
    row = next(r for r in rows if r.entity == 3)
    assert row.prediction_id == uuid.UUID(int=4)
    assert row.score == 3.0 and row.predicted is None and row.extra == '{"k":3}'
    assert row.ts == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert (row.model, row.model_version, row.group, row.sqlstate) == ("m", "v", "g1", "23514")
    assert row.to_dict()["prediction_id"] == str(uuid.UUID(int=4))


class FakeServer:
    """Refuses any piece holding a bad entity (by its score), and says at which COPY
    line when ``hint``; counts the transactions."""

    def __init__(self, bad: set[int], hint: bool) -> None:
        self.bad = bad
        self.hint = hint
        self.calls = 0
        self.stored: list[int] = []

    def attempt(self, data: bytes, rows: int, staged: bool) -> PartWritten | QueryError | None:
        self.calls += 1
        spans = row_spans(data)
        keys = [
            rejected_from_copy(KeyType.INT8, data[spans[i] : spans[i + 1]], "g0", _err("x")).entity
            for i in range(rows)
        ]
        for line, k in enumerate(keys, 1):
            if k in self.bad:
                exc = _err("23514", 'new row violates check constraint "c"')
                if self.hint:

                    class Cause(psycopg.Error):
                        diag = type("D", (), {"context": f"COPY rj, line {line}"})()

                    exc.__cause__ = Cause("x")
                return exc
        self.stored.extend(keys)
        return PartWritten("g0", rows, rows, staged, _token())


def _token() -> Any:
    from mlscale.core.causal import CausalToken

    return CausalToken()


@pytest.mark.parametrize("hint", [False, True])
@pytest.mark.parametrize("bad", [set(), {0}, {63}, {5, 6, 40}, set(range(64))])
def test_sifting_writes_every_good_row_once_and_refuses_only_bad_ones(
    bad: set[int], hint: bool
) -> None:
    n = 64
    data = _batch(n).copy_payload()
    server = FakeServer(bad, hint)
    first = server.attempt(data, n, False)
    if not bad:
        assert isinstance(first, PartWritten)
        return
    assert isinstance(first, QueryError)
    sifted = sift(server.attempt, data, n, False, first)
    assert sifted.complete
    spans = row_spans(data)
    order = [  # the payload's row order (the encoder groups rows by width)
        rejected_from_copy(KeyType.INT8, data[spans[i] : spans[i + 1]], "g0", first).entity
        for i in range(n)
    ]
    assert server.stored == [k for k in order if k not in bad]  # each once, in order
    assert sorted(i for i, _, _ in sifted.refused) == sorted(order.index(k) for k in bad)
    assert sum(p.sent for p in sifted.written) == n - len(bad)
    if hint and len(bad) <= 3:
        assert server.calls <= 1 + 3 * len(bad)


def test_a_writer_giving_up_midway_stops_the_sifting() -> None:
    data = _batch(8).copy_payload()
    sifted = sift(lambda d, n, s: None, data, 8, False, _err("22001"))
    assert not sifted.complete and not sifted.written and not sifted.refused


def test_refused_rows_are_counted_apart_and_kept_bounded() -> None:
    s = WriterState(WriterOptions(batch_rows=10, queue_rows=10))
    s.take(10, 0.0)
    ticket = s.open_batch(10, {"g0"}, 0.0, None)
    s.part_written(ticket, "g0", 10, 7, 1.0, refused=2)
    data = _batch(2).copy_payload()
    spans = row_spans(data)
    s.set_aside(
        [rejected_from_copy(KeyType.INT8, data[spans[i] : spans[i + 1]], "g0", _err("22001"))
         for i in range(2)]
    )  # fmt: skip
    stats = s.stats(2.0)
    assert (stats.written, stats.duplicates, stats.rejected_rows, stats.queued) == (7, 1, 2, 0)
    assert stats.rejected_error is not None and "g0" in stats.rejected_error
    assert s.pop_since() == (7, 1, {"g0": 10}, 2)
    assert len(s.pop_rejects(clear=True)) == 2 and s.pop_rejects(clear=False) == []
